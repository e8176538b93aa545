"""What `train-density --resume` accepts: a single run, a CV fold, a CV parent."""

import json
from pathlib import Path

import pytest
import yaml

from mammography.config.core import to_dict, to_record
from mammography.config.resolve import resolve_config
from mammography.config.train import (
    TrainConfig,
    continued_fold,
    cross_validates,
    resume_target,
)
from mammography.errors import ConfigError
from mammography.record.view import RunView


def recorded_run(run_dir: Path, cfg: TrainConfig, *, fold: int | None = None,
                 checkpoint: bool = True) -> Path:
    """A run directory as train-density leaves it: summary.json, config.yaml, checkpoint."""
    run_dir.mkdir(parents=True)
    summary = {"command": "train-density", "run_id": "results_1", "status": "interrupted",
               "hyperparameters": to_record(cfg),
               "integration": {"optuna_trial_id": None, "ray_trial_name": None,
                               "cv_fold": fold}}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg)))
    if checkpoint:
        (run_dir / "last_checkpoint.pt").write_bytes(b"")
    return run_dir


@pytest.fixture
def cv_parent(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("AccessionNumber,Classification\n1,2\n")
    cfg = TrainConfig(csv=csv, arch="test_efficientnet", epochs=3, cv_folds=3)
    parent = recorded_run(tmp_path / "out" / "results_1", cfg, checkpoint=False)
    recorded_run(parent / "fold_2" / "results", cfg, fold=2)
    return parent


def test_what_resume_continues(cv_parent, tmp_path):
    assert resume_target(RunView.read(cv_parent)) == ("cv", 3)
    assert resume_target(RunView.read(cv_parent / "fold_2" / "results")) == ("fold", 2)
    single = recorded_run(tmp_path / "single", TrainConfig(cv_folds=0))
    assert resume_target(RunView.read(single)) == ("run", None)
    assert resume_target(RunView.try_read(tmp_path / "nowhere")) == ("run", None)


def test_a_fold_resumes_as_a_single_run_although_its_config_has_cv_folds(cv_parent):
    cfg = resolve_config(TrainConfig, None, {"resume": cv_parent / "fold_2" / "results"})
    assert cfg.cv_folds == 3  # inherited from the fold's config.yaml, as recorded
    resumed = RunView.read(cfg.resume)
    assert continued_fold(resumed) == 2 and not cross_validates(cfg, resumed)


def test_a_cv_parent_resumes_as_a_cross_validation(cv_parent):
    cfg = resolve_config(TrainConfig, None, {"resume": cv_parent})
    resumed = RunView.read(cfg.resume)
    assert (cfg.cv_folds, cfg.epochs, continued_fold(resumed), cross_validates(cfg, resumed)) == (
        3, 3, None, True)
    # the data may live elsewhere (its manifest digest is checked), the device may change
    moved = resolve_config(TrainConfig, None, {"resume": cv_parent, "device": "cpu",
                                               "csv": cv_parent.parent.parent / "labels.csv"})
    assert moved.device == "cpu"


def test_a_cv_parent_refuses_settings_its_finished_folds_did_not_have(cv_parent):
    with pytest.raises(ConfigError) as info:
        resolve_config(TrainConfig, None, {"resume": cv_parent, "epochs": 5, "lr": 0.1,
                                           "cv_folds": 4})
    text = info.value.render()
    assert "continues its 3-fold cross-validation; --cv-folds 4 cannot change that" in text
    assert "--epochs 5 differs from the run's 3" in text
    assert "--lr 0.1 differs from the run's 0.0001" in text


def test_a_single_run_cannot_become_a_cross_validation(cv_parent, tmp_path):
    single = recorded_run(tmp_path / "single",
                          TrainConfig(csv=cv_parent.parent.parent / "labels.csv",
                                      arch="test_efficientnet"))
    with pytest.raises(ConfigError) as info:
        resolve_config(TrainConfig, None, {"resume": single, "cv_folds": 3})
    assert "continues a single run, not a cross-validation" in info.value.render()


def test_a_run_without_a_checkpoint_cannot_be_resumed_but_a_cv_parent_needs_none(cv_parent):
    (cv_parent / "fold_2" / "results" / "last_checkpoint.pt").unlink()
    with pytest.raises(ConfigError) as info:
        resolve_config(TrainConfig, None, {"resume": cv_parent / "fold_2" / "results"})
    assert "has no last_checkpoint.pt to continue from" in info.value.render()
    cfg = resolve_config(TrainConfig, None, {"resume": cv_parent})
    assert cross_validates(cfg, RunView.read(cfg.resume))
