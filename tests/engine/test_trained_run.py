"""TrainedRun: a train-density run read once -- its models, folds (own or reused), split,
training data -- and what --resume, eval-export and predict take from it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mammography.data.table.records import ImageRecord
from mammography.engine.cv.resume import resume_plan
from mammography.engine.train.resume import (
    check_not_running,
    check_same_data,
    load_checkpoint,
    recorded_split,
    resume_link,
)
from mammography.engine.trained_run import TrainedRun, checkpoint_preprocessing, open_models
from mammography.errors import DataError, InputError
from mammography.record import contract, view
from mammography.record.contract import CV_SUMMARY_FILE, fold_dir
from mammography.record.reporter import CollectingReporter
from tests.engine.model_runs import write_cv_parent, write_model_run, write_summary
from tests.helpers import RecordingRun

FINGERPRINT = {"fingerprint_version": 1, "images": 4, "images_without_header": 0,
               "manufacturer": {"SYNTH-A": 4}}


@pytest.fixture
def reads(monkeypatch):
    """The summary.json files read from now on (every reader goes through read_summary)."""
    seen: list[Path] = []
    original = contract.read_summary

    def counting(run_dir):
        seen.append(Path(run_dir))
        return original(run_dir)

    monkeypatch.setattr(contract, "read_summary", counting)
    monkeypatch.setattr(view, "read_summary", counting)
    return seen


def test_a_run_stands_for_its_own_model(tmp_path):
    run = TrainedRun.open(write_model_run(tmp_path / "run"))
    assert (run.label, run.run_id, run.run_dir) == ("results_1", "results_1", tmp_path / "run")
    assert run.models() == [run] and run.folds == ()
    model, payload = run.load_model(CollectingReporter())
    assert payload["arch"] == "test_efficientnet" and not model.training
    assert checkpoint_preprocessing(payload["preprocess"], run.best_model).img_size == 48
    assert TrainedRun.open(write_model_run(tmp_path / "fold", cv_fold=2)).label == \
        "results_1-fold_2"


def test_a_cv_parent_opens_each_fold_once_and_stands_for_them(tmp_path, reads):
    parent = write_cv_parent(tmp_path / "cv", folds=3)
    (parent / CV_SUMMARY_FILE).write_text("{}")
    run = TrainedRun.open(parent)
    assert reads == [parent, *(fold_dir(parent, k) for k in (1, 2, 3))]
    models = run.models()
    assert [m.label for m in models] == ["results_1-fold_1", "results_1-fold_2",
                                         "results_1-fold_3"]
    assert [m.run_dir for m in models] == [fold_dir(parent, k) for k in (1, 2, 3)]
    assert not any(f.reused for f in run.folds) and len(reads) == 4  # nothing read again


def _resumed_parent(root: Path) -> tuple[Path, Path]:
    """results_1 (a CV whose fold 1 completed) continued as results_2: fold 1 reused,
    folds 2 and 3 trained there; both finished with cv_summary.json."""
    first = write_summary(root / "results_1", results={"num_folds": 3})
    write_model_run(fold_dir(first, 1), seed=1, cv_fold=1)
    second = write_summary(root / "results_2", run_id="results_2", results={"num_folds": 3},
                           cross_validation={"num_folds": 3, "resumed_from": str(first),
                                             "folds": [
        {"fold": 1, "origin": "reused", "path": "../results_1/fold_1/results",
         "run_dir": str(fold_dir(first, 1)), "run_id": "results_1"},
        {"fold": 2, "origin": "trained", "path": "fold_2/results"},
        {"fold": 3, "origin": "trained", "path": "fold_3/results"}]})
    for k in (2, 3):
        write_model_run(fold_dir(second, k), seed=k, cv_fold=k)
    (second / CV_SUMMARY_FILE).write_text("{}")
    return first, second


def test_a_resumed_cv_parent_stands_for_the_folds_it_reused(tmp_path):
    first, second = _resumed_parent(tmp_path)
    run = TrainedRun.open(second)
    assert [(f.number, f.reused, f.where) for f in run.folds] == [
        (1, True, fold_dir(first, 1)), (2, False, fold_dir(second, 2)),
        (3, False, fold_dir(second, 3))]
    assert [m.label for m in run.models()] == ["results_2-fold_1", "results_2-fold_2",
                                               "results_2-fold_3"]
    # gone: refused as a whole, not evaluated as a 2-fold cross-validation
    shutil.rmtree(first)
    with pytest.raises(InputError, match="the runs of folds 1 are gone"):
        TrainedRun.open(second).models()


def test_a_cross_validation_that_did_not_finish_has_no_models_of_its_own(tmp_path):
    parent = write_cv_parent(tmp_path / "cv", folds=2)
    (parent / CV_SUMMARY_FILE).unlink()
    with pytest.raises(InputError, match="has no best_model.pt"):
        TrainedRun.open(parent).models()


def test_unreadable_summaries_are_refused_with_the_option_named(tmp_path):
    with pytest.raises(InputError, match="--run .* is not a run directory"):
        TrainedRun.open(tmp_path / "nowhere")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "summary.json").write_text("{oops")
    with pytest.raises(InputError, match="--resume .*: summary.json is not valid JSON"):
        TrainedRun.open(bad, option="--resume")


def test_a_fold_whose_summary_is_unreadable(tmp_path):
    parent = write_cv_parent(tmp_path / "cv", folds=2)
    (fold_dir(parent, 2) / "summary.json").write_text("[]")
    run = TrainedRun.open(parent)
    broken = run.fold(2)
    assert broken.run is None and broken.where == fold_dir(parent, 2)
    assert "not a JSON object" in broken.problem
    with pytest.raises(InputError, match="fold 2.*cannot be read"):
        run.models()


def test_open_models_labels_each_model_once_and_refuses_what_is_no_model(tmp_path):
    a = write_model_run(tmp_path / "a" / "results_1")
    b = write_model_run(tmp_path / "b" / "results_1", seed=1)
    out = CollectingReporter()
    assert [m.label for m in open_models([a, b], out)] == ["a-results_1", "b-results_1"]
    assert [m.label for m in open_models([a, a], out)] == ["results_1", "results_1-2"]
    tune = write_summary(tmp_path / "tune", experiment_type="hyperparameter_search",
                         command="tune")
    with pytest.raises(InputError, match="is a tune run"):
        open_models([tune], CollectingReporter(), command="predict")
    with pytest.raises(InputError, match="predict takes train-density runs"):
        open_models([write_summary(tmp_path / "emb", experiment_type="embedding_extraction",
                                   command="embed")], CollectingReporter(), command="predict")


def test_the_own_validation_split_comes_from_splits_csv(tmp_path):
    root = tmp_path / "archive"
    for name in ("a/1.dcm", "b/1.dcm"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    run_dir = write_summary(tmp_path / "run", data_config={"dicom_root": str(root)})
    with pytest.raises(InputError, match="has no splits.csv"):
        TrainedRun.open(run_dir).own_validation_split()
    (run_dir / "splits.csv").write_text(
        "image_path,accession,patient,view,laterality,label,split\n"
        "a/1.dcm,a,p1,CC,L,1,train\nb/1.dcm,b,p2,MLO,R,3,val\n")
    table = TrainedRun.open(run_dir).own_validation_split()
    assert [(r.path, r.accession, r.label) for r in table.images] == [(root / "b/1.dcm", "b", 3)]
    assert table.images_found == 1  # the base of --max-bad-fraction when images fail to decode
    (root / "b/1.dcm").unlink()
    with pytest.raises(DataError, match="not reachable"):
        TrainedRun.open(run_dir).own_validation_split()


@pytest.mark.parametrize("manifest, reason", [
    (None, "is unreadable"),
    ({"digest": "x"}, "has no acquisition fingerprint (an older run)"),
    ({"digest": "x", "fingerprint": {**FINGERPRINT, "images_without_header": 4}},
     "fingerprint has no header facts"),
    ({"digest": "x", "fingerprint": FINGERPRINT}, None),
])
def test_the_training_fingerprint_or_why_there_is_none(tmp_path, manifest, reason):
    run_dir = write_summary(tmp_path / "run")
    if manifest is not None:
        (run_dir / "data_manifest.json").write_text(json.dumps(manifest))
    run = TrainedRun.open(run_dir)
    trained = run.training_fingerprint()
    assert trained.manifest == run_dir / "data_manifest.json"
    if reason is None:
        assert (trained.fingerprint, trained.digest, trained.reason) == (FINGERPRINT, "x", None)
    else:
        assert trained.fingerprint is None and reason in trained.reason
    if manifest is not None:  # read once: the run keeps what it read
        (run_dir / "data_manifest.json").unlink()
        assert run.training_fingerprint() == trained and run.manifest == manifest


def test_resuming_reads_the_resumed_run_once(tmp_path, reads):
    """Everything --resume takes from the old run comes from the one TrainedRun."""
    old = write_model_run(tmp_path / "old", cv_fold=2)
    document = json.loads((old / "summary.json").read_text())
    document.update(data_config={"manifest_digest": "d1"}, git_commit="abc1234",
                    model_config={"pretrained": "none"})
    (old / "summary.json").write_text(json.dumps(document))
    torch.save({"state_dict": {}, "fit_state": {}}, old / "last_checkpoint.pt")
    (old / "splits.csv").write_text("image_path,accession,patient,view,laterality,label,split\n"
                                    "a.dcm,a,p1,CC,L,1,train\nb.dcm,b,p2,CC,L,2,val\n")
    reads.clear()
    resumed = TrainedRun.open(old, option="--resume")
    images = [ImageRecord(path=tmp_path / name, accession=name[0], patient="p", view="CC",
                          laterality="L", label=1, row=1) for name in ("b.dcm", "a.dcm")]
    data = SimpleNamespace(manifest_digest="d1",
                           table=SimpleNamespace(images=images, dicom_root=tmp_path))
    check_not_running(resumed.view)
    assert resume_link(resumed) == {"run_dir": str(old.resolve()), "run_id": "results_1",
                                    "relation": "resume", "git_commit": "abc1234"}
    check_same_data(resumed, data)
    train_idx, val_idx = recorded_split(resumed, data)
    assert (train_idx.tolist(), val_idx.tolist()) == ([1], [0])
    new = RecordingRun(tmp_path / "new")
    assert "state_dict" in load_checkpoint(resumed, new)
    assert (new.dir / "best_model.pt").read_bytes() == (old / "best_model.pt").read_bytes()
    # an old run (no digests): each of its checkpoints said once to be unverified
    assert len(new.warnings) == 2 and all("recorded before digests" in w
                                          for w in new.warnings)
    assert resumed.model_config["pretrained"] == "none" and resumed.view.fold == 2
    assert reads == [old]
    with pytest.raises(DataError, match="the data changed since that run"):
        check_same_data(resumed, SimpleNamespace(manifest_digest="d2", manifest={}))


def test_a_resumed_cv_parent_plans_its_folds_from_what_was_opened(tmp_path, reads):
    first, second = _resumed_parent(tmp_path)
    (second / "splits.csv").write_text(
        "image_path,accession,patient,view,laterality,label,split\n"
        + "".join(f"{k}.dcm,{k},p{k},CC,L,1,fold_{k}\n" for k in (1, 2, 3)))
    for k in (2, 3):  # both completed: reused as well
        (fold_dir(second, k) / "metrics").mkdir()
        (fold_dir(second, k) / "metrics" / "val_metrics.json").write_text("{}")
    (fold_dir(first, 1) / "metrics").mkdir()
    (fold_dir(first, 1) / "metrics" / "val_metrics.json").write_text("{}")
    reads.clear()
    resumed = TrainedRun.open(second, option="--resume")
    warnings: list[str] = []
    run = SimpleNamespace(dir=tmp_path / "results_3", warn=warnings.append)
    run.dir.mkdir()
    plans = resume_plan(resumed, 3, run)
    assert [(p.origin, p.source) for p in plans] == [
        ("reused", fold_dir(first, 1)), ("reused", fold_dir(second, 2)),
        ("reused", fold_dir(second, 3))]
    assert reads == [second, fold_dir(first, 1), fold_dir(second, 2), fold_dir(second, 3)]
    assert warnings == []
