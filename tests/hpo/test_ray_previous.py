"""The trials a resumed Ray search takes over instead of running again (crafted runs)."""

import json

import pytest

from mammography.errors import InputError
from mammography.hpo.ray_previous import finished_trials

SPACE = {"lr": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True}}


def tune_run(path, space=SPACE, **search):
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps({"search": {"space": space, **search}}))
    return path


def trial(tune, name, *, status="completed", kappas=(0.1, 0.4, 0.3), lr=1e-3):
    run_dir = tune / "trials" / name / "results_1"
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(json.dumps({
        "status": status, "hyperparameters": {"lr": lr, "epochs": 3},
        "integration": {"ray_trial_name": name}, "execution": {"duration_seconds": 9.5}}))
    (run_dir / "train_history.json").write_text(json.dumps(
        [{"epoch": i, "val_kappa": k, "val_loss": 1.0 - k} for i, k in enumerate(kappas, 1)]))
    return run_dir


def test_completed_trials_are_taken_over_with_their_best_value(tmp_path):
    tune = tune_run(tmp_path / "results_1")
    done = trial(tune, "trial_a", lr=2e-3)
    trial(tune, "trial_b", status="interrupted")  # killed (or stopped by ASHA): runs anew
    found = finished_trials(tune, SPACE, "val_kappa", "max")
    assert [(t.name, t.run_dir, t.params, t.value) for t in found] == [
        ("trial_a", done, {"lr": 2e-3}, 0.4)]
    assert finished_trials(tune, SPACE, "val_loss", "min")[0].value == pytest.approx(0.6)


def test_a_resumed_resume_keeps_the_trials_its_parent_took_over(tmp_path):
    first = tune_run(tmp_path / "results_1")
    old = trial(first, "trial_a")
    taken = finished_trials(first, SPACE, "val_kappa", "max")
    second = tune_run(tmp_path / "results_2", reused_trials=[t.record() for t in taken])
    trial(second, "trial_c", kappas=(0.5,))
    found = finished_trials(second, SPACE, "val_kappa", "max")
    assert [(t.name, t.run_dir.resolve(), t.value) for t in found] == [
        ("trial_a", old.resolve(), 0.4), ("trial_c", second / "trials" / "trial_c" /
                                          "results_1", 0.5)]


def test_another_search_space_is_refused(tmp_path):
    tune = tune_run(tmp_path / "results_1")
    with pytest.raises(InputError, match="searched another space"):
        finished_trials(tune, {"weight_decay": {"type": "float", "low": 0, "high": 1}},
                        "val_kappa", "max")
