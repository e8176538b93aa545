"""The search space: validated in the settings, turned into Optuna distributions there too."""

import subprocess
import sys

import pytest

from mammography.config.search_space import load_search_space, optuna_distributions, sample
from tests.helpers import child_env


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


def test_an_optuna_trial_draws_every_setting_of_the_space(tmp_path):
    import optuna

    path = tmp_path / "space.yaml"
    path.write_text("lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n"
                    "warmup_epochs: {type: int, low: 0, high: 6, step: 2}\n"
                    "optimizer: {type: categorical, choices: [adam, sgd]}\n")
    space = load_search_space(path)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = [sample(study.ask(), space) for _ in range(20)]
    assert all(1e-4 <= d["lr"] <= 1e-2 for d in drawn)
    assert {d["warmup_epochs"] for d in drawn} <= {0, 2, 4, 6}
    assert {d["optimizer"] for d in drawn} == {"adam", "sgd"}


def test_validating_a_space_imports_no_optuna():
    """The settings check every tune command line before a run exists: optuna stays out."""
    code = ("import sys\nfrom mammography.config.search_space import load_search_space\n"
            "load_search_space(None)\nassert 'optuna' not in sys.modules, 'optuna imported'")
    proc = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
