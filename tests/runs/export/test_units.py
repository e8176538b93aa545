"""Exporter helpers and the exit-2 message when an exporter's package is missing."""

import os

import pytest

from mammography.runs.export.source import final_metrics, flat_params
from mammography.runs.export.to_tensorboard import hparam_values, scalar_tag
from tests.helpers import child_env


def test_scalar_tags_group_by_split():
    assert scalar_tag("val_exam_kappa") == "val_exam/kappa"
    assert scalar_tag("val_loss") == "val/loss"
    assert scalar_tag("train_acc") == "train/acc"
    assert scalar_tag("lr") == "lr"


def test_final_metrics_and_params():
    summary = {"results": {"best_val_kappa": 0.5, "best_epoch": 3, "stopped_early": False,
                           "history_last": {"val_kappa": 0.4}, "ci": {"low": 0.1},
                           "note": "x", "nan": float("nan")},
               "hyperparameters": {"lr": 1e-4, "weights": None, "arch": "resnet50",
                                   "augment": True, "sizes": [1, 2]}}
    assert final_metrics(summary) == {"best_val_kappa": 0.5, "best_epoch": 3.0,
                                      "ci.low": 0.1}
    assert flat_params(summary) == {"lr": "0.0001", "weights": "null", "arch": "resnet50",
                                    "augment": "true", "sizes": "[1, 2]"}
    assert hparam_values(summary) == {"lr": 1e-4, "weights": "null", "arch": "resnet50",
                                      "augment": True, "sizes": "[1, 2]"}


@pytest.mark.parametrize("to, package, extra", [
    ("mlflow", "mlflow", []),
    ("tensorboard", "tensorboard", ["--logdir", "tb"]),
])
def test_missing_exporter_package_is_exit_2(cli, tmp_path, fake_run, to, package, extra):
    fake_run(tmp_path / "outputs" / "results_1")
    shadow = tmp_path / "shadow" / package
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(f"raise ImportError(\"No module named '{package}'\")\n")
    env = child_env()
    env["PYTHONPATH"] = str(tmp_path / "shadow") + os.pathsep + env["PYTHONPATH"]
    proc = cli("runs", "export", tmp_path / "outputs", "--to", to, *extra, cwd=tmp_path,
               env=env)
    assert proc.returncode == 2, proc.stderr
    assert "install mammography[export]" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "tb").exists() and not (tmp_path / "outputs" / "mlflow").exists()


@pytest.mark.parametrize("args, message", [
    ([], "--to mlflow or --to tensorboard is required"),
    (["--to", "tensorboard"], "--to tensorboard needs --logdir DIR"),
    (["--to", "wandb"], "mlflow"),
])
def test_export_usage_errors(cli, tmp_path, args, message):
    proc = cli("runs", "export", tmp_path, *args)
    assert proc.returncode == 2 and message in proc.stderr
