"""embed/predict tasks of a cluster, run here in-process: the weights they receive, the cache
they read, and shards of whole batches merged in order = the one-machine results, bit for bit.

(The same functions on the two-node Ray cluster: ``test_cli.py``.)
"""

import csv

import numpy as np
import pytest
import torch

from mammography.config.embed import EmbedConfig
from mammography.config.predict import PredictConfig
from mammography.data.cache import ImageCache
from mammography.data.cluster.shards import aligned, plan_shards
from mammography.data.dataset import CachedImageDataset
from mammography.data.loading import make_loader
from mammography.data.preprocess import PreprocessSettings
from mammography.data.unlabelled import load_unlabelled
from mammography.engine.cluster.embed import EmbedShard, features_of
from mammography.engine.cluster.scoring import ScoreShard, members_of
from mammography.engine.cluster.tasks import items_of, node_cache
from mammography.engine.cluster.weights import (
    BACKBONE,
    DENSITY,
    ShippedWeights,
    WeightsMismatch,
)
from mammography.engine.device import select_precision
from mammography.engine.inference import extract_features
from mammography.engine.predict.members import members_from_runs
from mammography.engine.scoring.probabilities import score_members
from mammography.models.factory import create_backbone
from mammography.record.reporter import CollectingReporter
from tests.engine.model_runs import write_cv_parent

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")
BATCH = 5


@pytest.fixture(scope="module")
def images(synthetic_dataset, tmp_path_factory):
    """Three exams" images (a last batch shorter than the others) in a built 64 px cache."""
    root = tmp_path_factory.mktemp("tasks")
    with (synthetic_dataset / "classificacao.csv").open() as handle:
        exams = [row["AccessionNumber"] for row in csv.DictReader(handle)][:3]
    todo = root / "todo.csv"
    todo.write_text("AccessionNumber\n" + "\n".join(exams) + "\n")
    table = load_unlabelled(todo, synthetic_dataset / "archive", out=CollectingReporter())
    cache = ImageCache(PreprocessSettings(img_size=64), root / "cache")
    cache.build([r.path for r in table.images], workers=1, progress=False)
    return table, cache, root


def _shards(items):
    """The items as map_shards cuts them: shards of whole batches (two each)."""
    return [items[s.start:s.stop] for s in plan_shards(len(items), aligned(7, BATCH))]


def test_weights_arrive_as_shipped_or_the_task_refuses_them():
    torch.manual_seed(0)
    backbone = create_backbone("test_efficientnet").eval()
    shipped = ShippedWeights.of(backbone, BACKBONE, "test_efficientnet")
    rebuilt = shipped.load()
    assert not rebuilt.training
    state = backbone.state_dict()
    assert all(torch.equal(state[k], v) for k, v in rebuilt.state_dict().items())
    assert shipped.record()["sha256"] == shipped.sha256 and shipped.record()["bytes"] > 0
    data = bytearray(shipped.data)
    data[len(data) // 2] ^= 1  # one bit changed on the way
    altered = ShippedWeights(**{**shipped.__dict__, "data": bytes(data)})
    with pytest.raises(WeightsMismatch, match="sha256"):
        altered.load()


def test_a_task_reads_the_entries_keyed_with_the_drivers_device(images, monkeypatch):
    table, cache, _ = images
    items, sizes = items_of([r.path for r in table.images])
    assert [size for _, size in sizes] == [r.path.stat().st_size for r in table.images]

    def no_decoding(*args, **kwargs):
        raise AssertionError("the entry was not found: the task decoded the image again")

    view = node_cache(cache, items)
    monkeypatch.setattr(view.cache, "compute_with_info", no_decoding)
    first = table.images[0].path
    np.testing.assert_array_equal(view.load(first), cache.load(first))


def test_embedding_shards_merged_in_order_are_the_one_machine_features(images):
    table, cache, _ = images
    torch.manual_seed(0)
    backbone = create_backbone("test_efficientnet").eval()
    paths = [r.path for r in table.images]
    loader = make_loader(CachedImageDataset(paths, [0] * len(paths), cache),
                         batch_size=BATCH, device=CPU, num_workers=0)
    local = extract_features(backbone, loader, device=CPU,
                             precision=select_precision(CPU, False), channels_last=False)
    task = EmbedShard(ShippedWeights.of(backbone, BACKBONE, "test_efficientnet"), cache,
                      BATCH, torch.get_num_threads())
    items, _ = items_of(paths)
    rows = [row for shard in _shards(items) for row in task(shard)]
    merged = features_of(rows)
    assert len(paths) % BATCH and len(_shards(items)) > 1
    assert merged.dtype == local.dtype and merged.shape == local.shape
    assert merged.tobytes() == local.tobytes()


def test_scoring_shards_merged_in_order_are_the_one_machine_ensemble(images):
    table, cache, root = images
    members = members_from_runs([write_cv_parent(root / "cv", folds=2, img_size=64)],
                                CollectingReporter())
    caches = {members[0].preprocess.key(): cache}
    local = score_members(members, table, caches, batch_size=BATCH, num_workers=0,
                          device=CPU, amp=False, tta=True, out=CollectingReporter(),
                          progress=False)
    task = ScoreShard([ShippedWeights.of(m.model, DENSITY, m.arch, 0) for m in members],
                      [cache, cache], BATCH, torch.get_num_threads(), tta=True)
    located, _ = items_of([r.path for r in table.images])
    items = [(path, device, (None, None)) for path, device in located]
    rows = [row for shard in _shards(items) for row in task(shard)]
    per_member = members_of(rows, len(members))
    for mine, theirs in zip(per_member, local.per_member, strict=True):
        assert mine.tobytes() == theirs.tobytes()
    assert np.mean(np.stack(per_member), axis=0).astype(np.float32).tobytes() == \
        local.probs.tobytes()


@pytest.mark.parametrize(("config", "expected"), [
    (EmbedConfig, "--ray-address with --cache memory: the cluster's tasks read"),
    (PredictConfig, "--ray-address with --cache memory: the cluster's tasks read"),
])
def test_a_cluster_without_the_shared_disk_cache_is_refused(config, expected, tmp_path):
    (tmp_path / "a.csv").write_text("AccessionNumber,Classification\n")
    cfg = config(csv=[tmp_path / "a.csv"], cache="memory", ray_address="127.0.0.1:1",
                 device="cuda", num_workers=4,
                 **({"run": [tmp_path]} if config is PredictConfig else {}))
    found = cfg.problems()
    assert any(expected in p for p in found)
    assert any("--ray-address with --device cuda" in p for p in found)
    assert any("--ray-address with --num-workers 4: each cluster task" in p for p in found)
    assert not [p for p in config(csv=[tmp_path / "a.csv"], ray_address="auto", num_workers=0,
                                  **({"run": [tmp_path]} if config is PredictConfig else {})
                                  ).problems() if "--ray-address" in p]


def test_predict_refuses_an_onnx_model_on_the_cluster(tmp_path):
    cfg = PredictConfig(model=[tmp_path / "model.onnx"], dicom_root=tmp_path,
                        ray_address="auto")
    assert any("--ray-address with --model" in p for p in cfg.problems())


def test_a_fusion_member_gets_each_images_embedding_with_its_item(images):
    from mammography.engine.checkpoint import model_from_best
    from mammography.engine.scoring.model import paths_probabilities
    from tests.engine.model_runs import write_model_run

    table, cache, root = images
    run = write_model_run(root / "fusion", img_size=64, embedding_dim=8)
    model, _ = model_from_best(run / "best_model.pt")
    paths = [r.path for r in table.images]
    embeddings = np.random.default_rng(0).normal(size=(len(paths), 8)).astype(np.float32)
    local = paths_probabilities(model, paths, cache, batch_size=BATCH, num_workers=0,
                                device=CPU, amp=False, embeddings=embeddings)
    task = ScoreShard([ShippedWeights.of(model, DENSITY, "test_efficientnet", 8)], [cache],
                      BATCH, torch.get_num_threads(), tta=False)
    located, _ = items_of(paths)
    items = [(path, device, (embeddings[row],)) for row, (path, device) in enumerate(located)]
    (merged,) = members_of([row for shard in _shards(items) for row in task(shard)], 1)
    assert merged.tobytes() == local.tobytes()
    shuffled = [(path, device, (embeddings[::-1][row],))
                for row, (path, device) in enumerate(located)]
    (other,) = members_of(task(shuffled), 1)
    assert not np.array_equal(other, merged)  # the embeddings do reach the model
