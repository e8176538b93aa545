"""How far a stopped cross-validation got, in `runs list` and `runs show` (fake runs)."""

import json
import os
import shlex
import time

import pytest

from mammography.config.runs import RunsListConfig, RunsShowConfig
from mammography.runs.cv_progress import cv_progress, progress_lines
from mammography.runs.discover import find_runs, open_run
from mammography.runs.listing import run_list
from mammography.runs.show import run_show

CV = {"lr": 1e-4, "cv_folds": 3}


@pytest.fixture
def killed_cv(tmp_path, fake_run):
    """A 3-fold parent killed during fold 2 (pid gone): fold 1 done, fold 2 after epoch 1."""
    parent = fake_run(tmp_path / "out" / "results_1", status="running", end=None,
                      hyperparameters=CV, results={})
    fake_run(parent / "fold_1" / "results", integration={"cv_fold": 1}, hyperparameters=CV)
    fake_run(parent / "fold_2" / "results", status="running", end=None,
             integration={"cv_fold": 2}, hyperparameters=CV, results={"epochs_completed": 1})
    return parent


def test_a_crashed_cv_parent_says_which_folds_are_done_and_how_to_continue(killed_cv):
    record = next(r for r in find_runs([killed_cv.parent]) if r.dir == killed_cv)
    assert record.status == "crashed"
    progress = cv_progress(record)
    assert (progress.done, progress.stopped, progress.not_started) == (
        [1], {2: ("crashed", 1)}, [3])
    assert progress.text() == ("1 of 3 folds done (1); fold 2 crashed after epoch 1; "
                               "not started: 3")
    assert shlex.split(progress.command) == ["mammography", "train-density", "--resume",
                                             str(killed_cv)]


def test_folds_a_resumed_parent_reused_count_as_done(tmp_path, fake_run):
    parent = fake_run(tmp_path / "results_2", status="interrupted", hyperparameters=CV,
                      results={}, cross_validation={"num_folds": 3, "folds": [
                          {"fold": 1, "origin": "reused", "path": "../results_1/fold_1/results"},
                          {"fold": 2, "origin": "continued", "path": "fold_2/results"},
                          {"fold": 3, "origin": "trained", "path": "fold_3/results"}]})
    fake_run(parent / "fold_2" / "results", integration={"cv_fold": 2}, hyperparameters=CV)
    fake_run(parent / "fold_3" / "results", status="interrupted", integration={"cv_fold": 3},
             hyperparameters=CV, results={"epochs_completed": 0})
    progress = cv_progress(open_run(parent))
    assert progress.done == [1, 2]
    assert progress.text() == "2 of 3 folds done (1, 2); fold 3 interrupted before its first epoch"


@pytest.mark.parametrize("status, hyper, integration", [
    ("completed", CV, None),  # finished: nothing to continue
    ("interrupted", {"lr": 1e-4, "cv_folds": 0}, None),  # not a cross-validation
    ("interrupted", CV, {"cv_fold": 2}),  # a fold, not its parent
])
def test_other_runs_have_no_cv_progress(tmp_path, fake_run, status, hyper, integration):
    run = fake_run(tmp_path / "results_1", status=status, hyperparameters=hyper,
                   integration=integration)
    assert cv_progress(open_run(run)) is None
    assert progress_lines([open_run(run)]) == []


def test_runs_list_prints_the_note_and_json_carries_it(killed_cv, capsys):
    root = killed_cv.parent
    run_list(RunsListConfig(roots=[root]))
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == (f"{killed_cv}: 1 of 3 folds done (1); fold 2 crashed after epoch 1; "
                         f"not started: 3; continue with: mammography train-density --resume "
                         f"{killed_cv}")
    run_list(RunsListConfig(roots=[root], json=True))
    rows = {row["path"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows[str(killed_cv)]["cv_progress"]["done"] == [1]
    assert rows[str(killed_cv)]["cv_progress"]["stopped"] == {
        "2": {"status": "crashed", "epochs_completed": 1}}
    assert rows[str(killed_cv / "fold_1" / "results")]["cv_progress"] is None


def test_runs_show_prints_the_folds_and_the_resume_command(killed_cv, capsys):
    run_show(RunsShowConfig(run=killed_cv, lines=0))
    out = capsys.readouterr().out
    assert "1 of 3 folds done (1); fold 2 crashed after epoch 1; not started: 3" in out
    assert f"mammography train-density --resume {killed_cv}" in out


def test_runs_list_shows_the_progress_of_a_parent_it_remembers(tmp_path, fake_run, capsys):
    """An interrupted parent's row comes from the run index on the second listing (its
    summary is not read again): the progress note must still be there, and stay right
    when a fold's summary changes."""
    root = tmp_path / "out"
    parent = fake_run(root / "results_1", status="interrupted", hyperparameters=CV,
                      results={})
    fake_run(parent / "fold_1" / "results", integration={"cv_fold": 1}, hyperparameters=CV)
    fake_run(parent / "fold_2" / "results", status="interrupted",
             integration={"cv_fold": 2}, hyperparameters=CV, results={"epochs_completed": 2})
    expected = (f"{parent}: 1 of 3 folds done (1); fold 2 interrupted after epoch 2; "
                f"not started: 3; continue with: mammography train-density --resume {parent}")
    for _ in range(2):
        run_list(RunsListConfig(roots=[root]))
        assert capsys.readouterr().out.splitlines()[-1] == expected
        run_list(RunsListConfig(roots=[root], json=True))
        rows = {row["path"]: row for row in json.loads(capsys.readouterr().out)}
        assert rows[str(parent)]["cv_progress"]["stopped"] == {
            "2": {"status": "interrupted", "epochs_completed": 2}}
    fake_run(parent / "fold_2" / "results", status="interrupted",
             integration={"cv_fold": 2}, hyperparameters=CV, results={"epochs_completed": 3})
    run_list(RunsListConfig(roots=[root]))
    assert capsys.readouterr().out.splitlines()[-1] == expected.replace("epoch 2", "epoch 3")
    # a --where that keeps only the parent still reads its folds for the note
    run_list(RunsListConfig(roots=[root], where=["integration.cv_fold==null"]))
    assert capsys.readouterr().out.splitlines()[-1] == expected.replace("epoch 2", "epoch 3")


def test_a_cv_parent_another_run_continued_names_that_run_not_a_command(
        killed_cv, fake_run, tmp_path, capsys):
    """Once `--resume` made a run that continues the stopped parent, listing it again must
    not offer the command that would continue it a second time -- also from the run
    index, and when a --where hides the continuing run."""
    root = killed_cv.parent
    continuing = fake_run(root / "results_2", status="completed", hyperparameters=CV,
                          based_on=[{"run_dir": str(killed_cv.resolve()),
                                     "run_id": "results_1", "relation": "resume"}])
    expected = (f"{killed_cv}: 1 of 3 folds done (1); fold 2 crashed after epoch 1; "
                f"not started: 3; continued by {continuing}")
    for _ in range(2):  # the second listing's rows come from the run index
        run_list(RunsListConfig(roots=[root]))
        assert capsys.readouterr().out.splitlines()[-1] == expected
    # Older than the run index's racy window, so that a filtered listing keeps its fields
    # and the second one matches from them: the continuation is kept with them.
    for path in root.rglob("*"):
        os.utime(path, ns=(time.time_ns() - 60 * 10**9,) * 2)
    for _ in range(2):
        run_list(RunsListConfig(roots=[root], where=["status==crashed"]))
        assert capsys.readouterr().out.splitlines()[-1] == expected
    run_list(RunsListConfig(roots=[root], json=True))
    rows = {row["path"]: row for row in json.loads(capsys.readouterr().out)}
    progress = rows[str(killed_cv)]["cv_progress"]
    assert (progress["continued_by"], progress["resume_command"]) == (str(continuing), None)
    run_show(RunsShowConfig(run=killed_cv, lines=0))
    out = capsys.readouterr().out
    assert f"continued   {continuing}" in out and "--resume" not in out
