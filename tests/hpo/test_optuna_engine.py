"""The Optuna driver's own rules: what a trial's value is, and a trial's settings."""

import pytest

from mammography.hpo.optuna_engine import direction, objective_value, train_config


class _Split:
    def __init__(self, values):
        self.history = [{"val_kappa": v, "val_loss": 1 - v} for v in values]


def test_objective_is_the_best_epoch_and_the_fold_mean():
    assert objective_value("val_kappa", _Split([0.1, 0.5, 0.3])) == 0.5
    assert objective_value("val_loss", _Split([0.1, 0.5, 0.3])) == pytest.approx(0.5)
    assert objective_value("val_kappa", [_Split([0.2, 0.4]), _Split([0.6])]) == \
        pytest.approx(0.5)
    assert direction("val_loss") == "minimize" and direction("val_kappa") == "maximize"


def test_trial_config_drops_the_tune_only_meaning_of_resume(tmp_path):
    from mammography.config.tune import TuneConfig

    cfg = TuneConfig(csv=tmp_path / "x.csv", resume=tmp_path, n_trials=3)
    trial = train_config(cfg, lr=0.5)
    assert trial.lr == 0.5 and trial.resume is None and not hasattr(trial, "n_trials")
