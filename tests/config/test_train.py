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


def finished(run_dir: Path, cfg: TrainConfig, **results) -> Path:
    """``recorded_run`` marked completed, with ``results`` as train-density records them."""
    recorded_run(run_dir, cfg)
    document = json.loads((run_dir / "summary.json").read_text())
    document.update(status="completed", results={"epochs_completed": cfg.epochs,
                                                 "best_epoch": cfg.epochs, **results})
    (run_dir / "summary.json").write_text(json.dumps(document))
    return run_dir


@pytest.fixture
def labels(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("AccessionNumber,Classification\n1,2\n")
    return csv


def test_a_finished_run_resumes_only_with_more_epochs(tmp_path, labels):
    run = finished(tmp_path / "done", TrainConfig(csv=labels, arch="test_efficientnet",
                                                  epochs=3))
    for given in ({}, {"epochs": 3}, {"epochs": 2}):
        with pytest.raises(ConfigError) as info:
            resolve_config(TrainConfig, None, {"resume": run, **given})
        text = info.value.render()
        epochs = given.get("epochs", 3)
        assert (f"--resume {run}: that run completed 3 epochs, so resuming it with --epochs "
                f"{epochs} would train nothing. Give a larger --epochs") in text
        assert f"mammography eval-export --run {run}" in text
    assert resolve_config(TrainConfig, None, {"resume": run, "epochs": 6}).epochs == 6


def test_a_run_that_stopped_early_needs_more_patience_too(tmp_path, labels):
    cfg = TrainConfig(csv=labels, arch="test_efficientnet", epochs=10, early_stop_patience=2)
    run = finished(tmp_path / "early", cfg, epochs_completed=4, best_epoch=2,
                   stopped_early=True)
    with pytest.raises(ConfigError) as info:
        resolve_config(TrainConfig, None, {"resume": run, "epochs": 20})
    assert ("has not improved since epoch 2 of 4, so with --early-stop-patience 2 it would "
            "stop again at once") in info.value.render()
    resumed = resolve_config(TrainConfig, None, {"resume": run, "epochs": 20,
                                                 "early_stop_patience": 0})
    assert (resumed.epochs, resumed.early_stop_patience) == (20, 0)
    pruned = finished(tmp_path / "pruned", cfg, epochs_completed=3,
                      stopped_by="pruned by the median pruner")
    with pytest.raises(ConfigError) as info:
        resolve_config(TrainConfig, None, {"resume": pruned, "epochs": 20})
    assert "stopped after epoch 3 (pruned by the median pruner) and trains no further" in \
        info.value.render()


def test_a_completed_cross_validation_has_nothing_to_continue(cv_parent):
    document = json.loads((cv_parent / "summary.json").read_text())
    document["status"] = "completed"
    (cv_parent / "summary.json").write_text(json.dumps(document))
    with pytest.raises(ConfigError) as info:
        resolve_config(TrainConfig, None, {"resume": cv_parent})
    assert "that cross-validation completed (all 3 folds finished)" in info.value.render()


def test_an_interrupted_run_resumes_with_its_own_epochs(tmp_path, labels):
    run = recorded_run(tmp_path / "stopped", TrainConfig(csv=labels, arch="test_efficientnet",
                                                         epochs=3))
    assert resolve_config(TrainConfig, None, {"resume": run}).epochs == 3
