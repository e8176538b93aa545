import pytest

from mammography.hpo.optuna_engine import direction, objective_value, train_config
from mammography.hpo.search_space import load_search_space, optuna_distributions


def test_builtin_space_is_valid_and_converts():
    space = load_search_space(None)
    assert "lr" in space
    distributions = optuna_distributions(space)
    assert distributions["lr"].log is True


def test_every_problem_in_a_space_is_reported(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("lrate: {type: float, low: 0.1, high: 1}\n"
                    "lr: {type: float, low: 0, high: 1, log: true}\n"
                    "epochs: {type: int, low: 5, high: 2}\n"
                    "optimizer: {type: categorical}\n"
                    "seed: {low: 1, high: 2}\n")
    with pytest.raises(ValueError) as info:
        load_search_space(path)
    text = str(info.value)
    for expected in ("'lrate' is not a train-density setting", "lr: log scale needs low > 0",
                     "epochs: needs numeric low < high",
                     "optimizer: categorical needs a non-empty choices list",
                     "seed: needs type"):
        assert expected in text


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
