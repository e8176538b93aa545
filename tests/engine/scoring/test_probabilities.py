"""The scoring path's probabilities, recomputed independently: bare forwards over the cache."""

import csv
import shutil

import numpy as np
import pytest
import torch

from mammography.data.augment import normalize, to_float
from mammography.data.cache import ImageCache
from mammography.data.unlabelled import load_unlabelled
from mammography.engine.batches import prepare_batch
from mammography.engine.checkpoint import model_from_best
from mammography.engine.predict.members import members_from_runs as _members_from_runs
from mammography.engine.scoring.onnx import network_input, softmax
from mammography.engine.scoring.probabilities import member_probabilities, score_members
from mammography.record.reporter import CollectingReporter
from tests.engine.model_runs import write_cv_parent

CPU = torch.device("cpu")


def members_from_runs(paths):
    """Model runs written without digests: they load with an 'unverified' warning each."""
    return _members_from_runs(paths, CollectingReporter())


@pytest.fixture
def scored(synthetic_dataset, tmp_path, cache_dir):
    """A 2-fold CV parent, and a few exams to score through one cache."""
    with (synthetic_dataset / "classificacao.csv").open() as handle:
        exams = [row["AccessionNumber"] for row in csv.DictReader(handle)][:2]
    todo = tmp_path / "todo.csv"
    todo.write_text("AccessionNumber\n" + "\n".join(exams) + "\n")
    out = CollectingReporter()
    table = load_unlabelled(todo, synthetic_dataset / "archive", out=out)
    parent = write_cv_parent(tmp_path / "cv", folds=2)
    members = members_from_runs([parent])
    cache = ImageCache(members[0].preprocess, cache_dir)
    cache.build([r.path for r in table.images], workers=1, progress=False)
    return {"table": table, "members": members, "caches": {members[0].preprocess.key(): cache},
            "cache": cache, "parent": parent, "out": out}


def _bare(run_dir, table, cache, flip=False):
    """softmax(model(x)) by hand: the fold's checkpoint, the cached images, no predict code."""
    model, _ = model_from_best(run_dir / "best_model.pt")
    x = torch.stack([torch.from_numpy(cache.load(r.path).copy())[None] for r in table.images])
    x = normalize(to_float(x))
    with torch.no_grad():
        return torch.softmax(model(x.flip(-2) if flip else x), dim=1).numpy()


def _score(scored, tta=False):
    return score_members(scored["members"], scored["table"], scored["caches"], batch_size=4,
                         num_workers=0, device=CPU, amp=False, tta=tta, out=scored["out"],
                         progress=False)


def test_the_cv_ensemble_is_the_mean_of_its_folds(scored):
    result = _score(scored)
    folds = [_bare(scored["parent"] / f"fold_{k}" / "results", scored["table"], scored["cache"])
             for k in (1, 2)]
    assert len(result.per_member) == 2
    for mine, bare in zip(result.per_member, folds, strict=True):
        np.testing.assert_allclose(mine, bare, atol=1e-6)
    np.testing.assert_allclose(result.probs, np.mean(folds, axis=0), atol=1e-6)
    assert not np.allclose(folds[0], folds[1], atol=1e-4)  # two different models were averaged
    assert result.probs.shape == (len(scored["table"].images), 4)
    np.testing.assert_allclose(result.probs.sum(axis=1), 1.0, atol=1e-5)
    assert result.images_per_second > 0


def test_tta_is_the_mean_of_upright_and_upside_down(scored):
    plain, tta = _score(scored).probs, _score(scored, tta=True).probs
    folds = [0.5 * (_bare(d, scored["table"], scored["cache"])
                    + _bare(d, scored["table"], scored["cache"], flip=True))
             for d in (m.run_dir for m in scored["members"])]
    np.testing.assert_allclose(tta, np.mean(folds, axis=0), atol=1e-6)
    assert np.abs(tta - plain).max() > 1e-5


def test_member_order_does_not_depend_on_the_batch_size(scored):
    member, table, cache = scored["members"][0], scored["table"], scored["cache"]
    one = member_probabilities(member, table, cache, batch_size=1, num_workers=0, device=CPU,
                               amp=False, tta=False, out=scored["out"])
    many = member_probabilities(member, table, cache, batch_size=5, num_workers=0, device=CPU,
                                amp=False, tta=False, out=scored["out"])
    np.testing.assert_allclose(one, many, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8])
def test_the_onnx_input_is_the_inference_loops_input(dtype):
    images = np.random.default_rng(0).integers(0, np.iinfo(dtype).max, (3, 1, 8, 6),
                                               dtype=dtype)
    ours = network_input(images, 0.449, 0.226)
    loop = prepare_batch(torch.from_numpy(images), CPU).numpy()
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, loop, rtol=0, atol=1e-6)
    logits = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32) * 20
    np.testing.assert_allclose(softmax(logits), torch.softmax(torch.from_numpy(logits), 1),
                               atol=1e-6)


@pytest.mark.parametrize("mode", ["disk", "off"])
def test_each_preprocessing_gets_its_cache_and_what_one_cannot_decode_is_out(
        synthetic_dataset, tmp_path, cache_dir, mode):
    import pydicom

    from mammography.config.predict import PredictConfig
    from mammography.engine.scoring.caches import prepare_images
    from tests.engine.model_runs import write_model_run

    folder = tmp_path / "images"
    folder.mkdir()
    exam = sorted((synthetic_dataset / "archive").iterdir())[0]
    for image in sorted(exam.glob("*.dcm"))[:2]:
        shutil.copyfile(image, folder / image.name)
    blank = pydicom.dcmread(folder / image.name)
    blank.PixelData = bytes(len(blank.PixelData))  # a readable header, an all-black image
    blank.save_as(folder / "blank.dcm")
    out = CollectingReporter()
    table = load_unlabelled(None, folder, max_bad_fraction=0.5, out=out)
    assert len(table.images) == 3
    runs = [write_model_run(tmp_path / "a", img_size=48),
            write_model_run(tmp_path / "b", img_size=64, seed=1)]
    members = members_from_runs(runs)
    cfg = PredictConfig(run=runs, dicom_root=folder, cache_dir=cache_dir, workers=1,
                        max_bad_fraction=0.5, cache=mode)
    images = prepare_images(members, table, cfg, out)
    caches, reports = images.caches, images.reports
    assert sorted(c.settings.img_size for c in caches.values()) == [48, 64]
    assert [r["built"] for r in reports] == [2, 2] and [r["failed"] for r in reports] == [1, 1]
    assert [r.path.name for r in table.images] == sorted(p.name for p in exam.glob("*.dcm"))[:2]
    (excluded,) = [e for e in table.exclusions if e["path"].endswith("blank.dcm")]
    assert "blank" in excluded["reason"] or "constant" in excluded["reason"]
    result = score_members(members, table, caches, batch_size=2, num_workers=0, device=CPU,
                           amp=False, tta=False, out=out, progress=False)
    bare = [_bare(m.run_dir, table, caches[m.preprocess.key()]) for m in members]
    np.testing.assert_allclose(result.probs, np.mean(bare, axis=0), atol=1e-6)


def test_a_fusion_model_gets_each_images_embedding(scored, tmp_path):
    from mammography.engine.fusion import METADATA_COLUMNS, load_embedding_run
    from tests.engine.model_runs import write_model_run

    table = scored["table"]
    emb = tmp_path / "emb"
    emb.mkdir()
    features = np.random.default_rng(0).normal(size=(len(table.images) + 2, 8))
    np.save(emb / "features.npy", features.astype(np.float32))
    with (emb / "metadata.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(METADATA_COLUMNS)
        rows = [str(r.path) for r in reversed(table.images)] + ["/else/a.dcm", "/else/b.dcm"]
        writer.writerows([path, "", "", "", "", "", ""] for path in rows)
    run = write_model_run(tmp_path / "fusion", embedding_dim=8,
                          extra={"embeddings_run_dir": str(emb)})
    (member,) = members_from_runs([run])
    probs = member_probabilities(member, table, scored["cache"], batch_size=2, num_workers=0,
                                 device=CPU, amp=False, tta=False, out=scored["out"])
    standardised = load_embedding_run(emb, CollectingReporter())
    order = [standardised.paths.index(str(r.path)) for r in table.images]
    model, _ = model_from_best(run / "best_model.pt")
    x = torch.stack([torch.from_numpy(scored["cache"].load(r.path).copy())[None]
                     for r in table.images])
    with torch.no_grad():
        bare = torch.softmax(model(normalize(to_float(x)),
                                   torch.from_numpy(standardised.features[order])), 1).numpy()
    np.testing.assert_allclose(probs, bare, atol=1e-6)
    assert any(line.startswith("Loading embeddings from") for line in scored["out"].lines)
