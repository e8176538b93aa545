"""RunView: the kind of every run, its folds, links and files; on whole summaries, on the
pruned ones `runs` keeps, on unreadable ones, and on the runs the real CLI leaves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mammography.record import contract
from mammography.record.contract import SummaryUnreadable
from mammography.record.view import (
    CV_PARENT,
    CV_PARENT_PATHS,
    EMBED,
    EVAL,
    FOLD,
    KINDS,
    PREDICT,
    SINGLE,
    TRIAL,
    TUNE,
    UNKNOWN,
    Artifact,
    RunFiles,
    RunView,
)
from tests.helpers import child_env, run_cli

NO_INTEGRATION = {"optuna_trial_id": None, "ray_trial_name": None, "cv_fold": None}


def view(**summary) -> RunView:
    return RunView(Path("/runs/results_1"), summary)


def train(**fields) -> dict:
    """A train-density summary: command, experiment type, integration, hyperparameters."""
    return {"command": "train-density", "experiment_type": "density_classification",
            "integration": dict(NO_INTEGRATION), "hyperparameters": {"cv_folds": 0},
            "results": {}, **fields}


@pytest.mark.parametrize("summary, kind", [
    (train(), SINGLE),
    (train(hyperparameters={"cv_folds": 3}), CV_PARENT),  # set to k folds: from the start
    (train(results={"num_folds": 3}, hyperparameters={}), CV_PARENT),  # finished
    (train(integration={**NO_INTEGRATION, "cv_fold": 2}, hyperparameters={"cv_folds": 3}),
     FOLD),
    (train(integration={**NO_INTEGRATION, "optuna_trial_id": 4}), TRIAL),
    (train(integration={**NO_INTEGRATION, "ray_trial_name": "t_0001"}), TRIAL),
    (train(integration={**NO_INTEGRATION, "optuna_trial_id": 4},
           hyperparameters={"cv_folds": 2}), CV_PARENT),  # a trial that cross-validates
    ({"command": "tune", "experiment_type": "hyperparameter_search",
      "hyperparameters": {"cv_folds": 3}}, TUNE),  # its trials cross-validate, not it
    ({"command": "embed", "experiment_type": "embedding_extraction"}, EMBED),
    ({"command": "eval-export", "experiment_type": "evaluation"}, EVAL),
    ({"command": "predict", "experiment_type": "evaluation"}, PREDICT),
    ({"experiment_type": "density_classification"}, SINGLE),  # no command: by its type
    ({"experiment_type": "density_classification", "results": {"num_folds": 2}}, CV_PARENT),
    ({"experiment_type": "evaluation"}, EVAL),
    ({"command": "data cache"}, UNKNOWN),
    ({}, UNKNOWN),
])
def test_the_kind_of_a_run(summary, kind):
    assert kind in KINDS
    assert view(**summary).kind == kind
    assert view(**summary).is_cv_parent == (kind == CV_PARENT)


def test_what_is_not_a_cross_validation():
    assert not view(**train(hyperparameters={"cv_folds": 0})).is_cv_parent
    assert not view(**train(hyperparameters={"cv_folds": True})).is_cv_parent  # no count
    assert not view(**train(hyperparameters={"cv_folds": "3"})).is_cv_parent
    fold = view(**train(integration={**NO_INTEGRATION, "cv_fold": 1},
                        results={"num_folds": 3}))
    assert not fold.is_cv_parent and fold.fold == 1
    assert view(**train(integration={**NO_INTEGRATION, "cv_fold": True})).fold is None


def test_identity_status_and_trial():
    run = view(**train(run_id="results_7", status="interrupted", git_commit="abc1234",
                       integration={**NO_INTEGRATION, "ray_trial_name": 17},
                       run_dir="/old/place/results_7"))
    assert (run.run_id, run.status, run.git_commit) == ("results_7", "interrupted", "abc1234")
    assert run.is_trial and run.ray_trial_name == "17" and run.optuna_trial_id is None
    assert run.recorded_run_dir == "/old/place/results_7"
    assert run.trains_models
    empty = view()
    assert (empty.run_id, empty.status, empty.fold, empty.num_folds) == (None, None, None, 0)
    assert not empty.is_trial and not empty.trains_models


def test_number_of_folds_from_results_then_the_record_then_the_setting():
    assert view(**train(results={"num_folds": 4}, hyperparameters={"cv_folds": 3})
                ).num_folds == 4
    assert view(**train(cross_validation={"num_folds": 5}, hyperparameters={"cv_folds": 3})
                ).num_folds == 5
    assert view(**train(hyperparameters={"cv_folds": 3})).num_folds == 3


def test_links_and_artifacts_are_typed():
    run = view(based_on=[{"run_dir": "/a/results_1", "run_id": "results_1",
                          "relation": "resume", "git_commit": "abc1234"},
                         "not a link", {"relation": "fusion"}],
               artifacts=[{"path": "best_model.pt", "bytes": 10, "sha256": "f" * 64},
                          {"path": "run.log", "bytes": 3}, {"bytes": 1}, "x"])
    first, second = run.based_on
    assert (first.run_dir, first.run_id, first.relation) == ("/a/results_1", "results_1",
                                                             "resume")
    assert first.record["git_commit"] == "abc1234"
    assert (second.run_dir, second.relation) == ("", "fusion")
    assert run.artifacts == (Artifact("best_model.pt", 10, "f" * 64), Artifact("run.log", 3))
    assert view(based_on=None, artifacts=None).based_on == ()


def test_the_link_of_a_derived_run(tmp_path):
    run = RunView(tmp_path / "results_3", {"run_id": "results_3", "git_commit": "abc1234"})
    assert run.link("evaluation") == {"run_dir": str((tmp_path / "results_3").resolve()),
                                      "run_id": "results_3", "relation": "evaluation"}
    assert run.link("resume", commit=True)["git_commit"] == "abc1234"


def test_files_are_named_by_the_contract(tmp_path):
    files = RunFiles(tmp_path)
    assert files.best_model == tmp_path / contract.BEST_MODEL_FILE
    assert files.last_checkpoint == tmp_path / contract.LAST_CHECKPOINT_FILE
    assert files.splits == tmp_path / contract.SPLITS_FILE
    assert files.manifest == tmp_path / contract.MANIFEST_FILE
    assert files.summary_file == tmp_path / contract.SUMMARY_FILE
    assert files.val_metrics == tmp_path / contract.VAL_METRICS_JSON
    assert files.cv_summary == tmp_path / contract.CV_SUMMARY_FILE
    assert files.fold_dir(2) == tmp_path / "fold_2" / "results"
    assert files.preprocessing_card("results_1-fold_1") == \
        tmp_path / "models" / "results_1-fold_1" / "export" / contract.PREPROCESSING_CARD
    assert RunView(tmp_path, {}).best_model == files.best_model  # a view is its files too


# ------------------------------------------------------------------ folds of a CV parent

def _summary(run_dir: Path, **document) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / contract.SUMMARY_FILE).write_text(json.dumps(document))
    return run_dir


def test_a_cv_parent_finds_its_own_folds_and_the_ones_it_reused(tmp_path):
    first = _summary(tmp_path / "out" / "results_1", **train(hyperparameters={"cv_folds": 3}))
    reused = _summary(first / "fold_1" / "results", **train(
        integration={**NO_INTEGRATION, "cv_fold": 1}))
    second = _summary(tmp_path / "out" / "results_2", **train(
        hyperparameters={"cv_folds": 3}, cross_validation={
            "num_folds": 3, "resumed_from": str(first),
            "folds": [{"fold": 1, "origin": "reused", "path": "../results_1/fold_1/results",
                       "run_dir": str(reused), "run_id": "results_1",
                       "metrics_sha256": "e" * 64},
                      {"fold": 2, "origin": "continued", "path": "fold_2/results",
                       "continued_from": str(first / "fold_2" / "results")},
                      {"fold": 3, "origin": "trained", "path": "fold_3/results"}]}))
    own = _summary(second / "fold_2" / "results", **train(
        integration={**NO_INTEGRATION, "cv_fold": 2}))
    parent = RunView.read(second)
    assert parent.fold_run_dirs() == [reused, own, None]  # fold 3 never started
    assert parent.resumed_from == str(first)
    record = parent.fold_record(1)
    assert record.reused and record.run_id == "results_1" and record.metrics_sha256 == "e" * 64
    assert parent.fold_record(2).continued_from == str(first / "fold_2" / "results")
    assert not parent.fold_record(2).reused and parent.fold_record(4) is None
    # the tree moved: the recorded relative path still finds the reused fold
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "out", moved)
    assert RunView.read(moved / "results_2").fold_run_dir(1) == moved / "results_1" / \
        "fold_1" / "results"
    # the reused run is gone: no fold run
    shutil.rmtree(moved / "results_1")
    assert RunView.read(moved / "results_2").fold_run_dir(1) is None


def test_without_a_count_the_fold_folders_are_counted(tmp_path):
    parent = _summary(tmp_path / "results_1", experiment_type="density_classification",
                      results={"num_folds": None})
    for k in (1, 2):
        _summary(parent / f"fold_{k}" / "results", **train(
            integration={**NO_INTEGRATION, "cv_fold": k}))
    assert RunView.read(parent).fold_run_dirs() == [parent / "fold_1" / "results",
                                                   parent / "fold_2" / "results"]


# ------------------------------------------------------------------ unreadable summaries

@pytest.mark.parametrize("content, reason", [
    (None, "summary.json missing"),
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b"\xff\xfe\x00", "unreadable"),
])
def test_an_unreadable_summary_has_no_view(tmp_path, content, reason):
    if content is not None:
        (tmp_path / contract.SUMMARY_FILE).write_bytes(content)
    with pytest.raises(SummaryUnreadable, match=reason):
        RunView.read(tmp_path)
    assert RunView.try_read(tmp_path) is None


# ------------------------------------------------------------------ pruned summaries

def _farm(root: Path) -> None:
    """Runs of every kind, schema-valid (tests/runs' fake runs)."""
    from tests.runs.conftest import write_fake_run

    write_fake_run(root / "results_1")
    cv = write_fake_run(root / "results_2", hyperparameters={"lr": 1e-4, "cv_folds": 2},
                        results={"num_folds": 2, "cv_mean_kappa": 0.5})
    for k in (1, 2):
        write_fake_run(cv / f"fold_{k}" / "results", integration={"cv_fold": k},
                       hyperparameters={"lr": 1e-4, "cv_folds": 2})
    write_fake_run(root / "results_3", status="interrupted",
                   hyperparameters={"lr": 1e-4, "cv_folds": 3}, results={})
    tune = write_fake_run(root / "results_4", command="tune",
                          experiment_type="hyperparameter_search",
                          hyperparameters={"cv_folds": 2}, artifacts=False)
    write_fake_run(tune / "trial_0" / "results", integration={"optuna_trial_id": 0})
    write_fake_run(root / "results_5", command="embed", experiment_type="embedding_extraction",
                   artifacts=False)
    write_fake_run(root / "results_6", command="eval-export", experiment_type="evaluation",
                   artifacts=False)
    write_fake_run(root / "results_7", command="predict", experiment_type="evaluation",
                   artifacts=False)


def test_pruned_summaries_tell_the_kind_as_the_whole_summary_does(tmp_path, monkeypatch):
    """`runs clean` keeps KIND_PATHS (it needs folds, CV parents and trials), `runs list`
    and `runs validate` CV_PARENT_PATHS (they need CV parents): each answers from its
    pruned summary, also when the run index gives it, as from the whole summary."""
    from mammography.runs.projection import CLEAN_PATHS, LIST_PATHS, VALIDATE_PATHS
    from mammography.runs.scan import scan_runs

    monkeypatch.setenv(contract.ENV_CACHE_DIR, str(tmp_path / "cache"))
    root = tmp_path / "outputs"
    _farm(root)
    kinds = {}
    for paths, whole_kind in ((CLEAN_PATHS, True), (LIST_PATHS, False),
                              (VALIDATE_PATHS, False)):
        assert set(CV_PARENT_PATHS) <= set(paths)
        for _ in range(2):  # the second scan answers from the run index
            for record in scan_runs([root], paths):
                pruned, whole = RunView(record.dir, record.summary), RunView.read(record.dir)
                assert set(record.summary) < set(whole.summary)  # really pruned
                assert (pruned.fold, pruned.is_cv_parent) == (whole.fold, whole.is_cv_parent)
                if whole_kind:
                    assert (pruned.kind, pruned.is_trial) == (whole.kind, whole.is_trial)
                    kinds[record.dir.relative_to(root).as_posix()] = pruned.kind
    assert kinds == {"results_1": SINGLE, "results_2": CV_PARENT,
                     "results_2/fold_1/results": FOLD, "results_2/fold_2/results": FOLD,
                     "results_3": CV_PARENT, "results_4": TUNE,
                     "results_4/trial_0/results": TRIAL, "results_5": EMBED,
                     "results_6": EVAL, "results_7": PREDICT}


# ------------------------------------------------------------------ runs of the real CLI

TINY = ["--arch", "test_efficientnet", "--no-pretrained", "--img-size", "64",
        "--num-workers", "0", "--epochs", "1"]


@pytest.mark.slow
def test_every_command_leaves_a_run_of_its_kind(synthetic_dataset, tmp_path):
    env = child_env(MAMMOGRAPHY_CACHE_DIR=str(tmp_path / "cache"))
    data = ["--csv", synthetic_dataset / "classificacao.csv",
            "--dicom-root", synthetic_dataset / "archive"]

    def cli(*args):
        proc = run_cli(*args, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]

    out = tmp_path / "out"
    cli("train-density", *data, *TINY, "--outdir", out / "single")
    cli("train-density", *data, *TINY, "--cv-folds", "2", "--outdir", out / "cv")
    cli("tune", *data, *TINY, "--n-trials", "1", "--outdir", out / "tune")
    cli("embed", *data, "--arch", "test_efficientnet", "--no-pretrained", "--img-size", "64",
        "--num-workers", "0", "--outdir", out / "embed")
    single = out / "single" / "results_1"
    cli("eval-export", "--run", single, "--bootstrap", "0", "--outdir", out / "eval")
    cli("predict", "--run", single, *data, "--outdir", out / "predict")
    cv = out / "cv" / "results_1"
    expected = {single: SINGLE, cv: CV_PARENT, cv / "fold_1" / "results": FOLD,
                cv / "fold_2" / "results": FOLD, out / "tune" / "results_1": TUNE,
                out / "tune" / "results_1" / "trial_0" / "results": TRIAL,
                out / "embed" / "results_1": EMBED, out / "eval" / "results_1": EVAL,
                out / "predict" / "results_1": PREDICT}
    assert {path: RunView.read(path).kind for path in expected} == expected
    parent = RunView.read(cv)
    assert parent.num_folds == 2 and parent.fold_run_dirs() == [
        cv / "fold_1" / "results", cv / "fold_2" / "results"]
    assert [r.origin for r in parent.fold_records] == ["trained", "trained"]
    fold = RunView.read(cv / "fold_2" / "results")
    assert fold.fold == 2 and fold.best_model.is_file() and fold.splits.is_file()
    assert RunView.read(out / "eval" / "results_1").based_on[0].run_dir == str(single.resolve())
    recorded = {a.path for a in RunView.read(single).artifacts}
    assert {contract.BEST_MODEL_FILE, contract.LAST_CHECKPOINT_FILE,
            contract.SPLITS_FILE} <= recorded
    # Digests: of the files a later command loads (record/digests.py), and only those.
    digested = {a.path for a in RunView.read(single).artifacts if a.sha256 is not None}
    assert digested == {contract.BEST_MODEL_FILE, contract.LAST_CHECKPOINT_FILE}
