"""`mammography train-density` end to end via the CLI: synthetic DICOM, tiny timm models."""

import json
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from mammography.record.schema import schema_problems
from tests.helpers import child_env, read_summary

pytestmark = pytest.mark.slow

TINY = ["--arch", "test_efficientnet", "--no-pretrained", "--img-size", "64",
        "--batch-size", "16", "--lr", "0.003", "--optimizer", "adamw", "--warmup-epochs", "1",
        "--num-workers", "0"]

ARTIFACTS = {
    "summary.json", "run.log", "config.yaml", "data_manifest.json", "splits.csv",
    "best_model.pt", "last_checkpoint.pt", "train_history.csv", "train_history.json",
    "metrics/val_metrics.json", "metrics/val_metrics.csv", "val_predictions.csv",
    "val_predictions_exam.csv", "plots/train_curves.png", "plots/confusion_matrix.png",
    "plots/roc_curves.png", "plots/gradcam_samples.png",
}


def data_args(dataset):
    return ["--csv", dataset / "classificacao.csv", "--dicom-root", dataset / "archive"]


def files(run_dir):
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}


def test_full_artifact_set_schema_and_log_markers(cli, synthetic_dataset, cache_dir, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("epochs: 2\nseed: 3\nclass_weights: none\n")
    # Output to a pipe, not a terminal: progress comes as plain lines (every 0 s here).
    proc = cli("train-density", "--config", config, *data_args(synthetic_dataset), *TINY,
               "--outdir", tmp_path / "out", env=child_env(
                   MAMMOGRAPHY_CACHE_DIR=str(cache_dir), MAMMOGRAPHY_PROGRESS_SECONDS="0"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "out" / "results_1"
    assert files(run_dir) >= ARTIFACTS, ARTIFACTS - files(run_dir)
    summary = read_summary(run_dir)
    assert schema_problems(summary) == []
    assert summary["status"] == "completed" and summary["experiment_type"] == \
        "density_classification"
    hp = summary["hyperparameters"]
    assert (hp["epochs"], hp["seed"], hp["class_weights"], hp["img_size"]) == (2, 3, "none", 64)
    assert summary["seed"] == 3
    for key in ("best_epoch", "best_val_kappa", "best_val_acc"):
        assert summary[key] == summary["results"][key]
    data = summary["data_config"]
    assert data["num_train"] + data["num_val"] == data["num_images"]
    assert set(data["class_distribution"]) == {"1", "2", "3", "4"}
    assert len(data["manifest_digest"]) == 64
    model = summary["model_config"]
    assert model["arch"] == "test_efficientnet" and model["trainable_params"] > 0
    assert summary["environment"]["torch_version"] == torch.__version__
    assert summary["environment"]["cuda_available"] in (True, False)
    log = (run_dir / "run.log").read_text()
    for marker in ("Starting density classification training", "Loading data from",
                   "Excluding class 5 (2 samples)", "Class distribution:", "Model has",
                   "Epoch 1/2", "Epoch 2/2", "train_loss:", "val_loss:", "val_kappa:",
                   "✓ New best model (kappa:", "Training Complete", "Best epoch:",
                   "Best val_kappa:", "Best val_acc:", "Model saved to:"):
        assert marker in log, marker
    progress = re.compile(r"epoch 1 train: \d+/\d+ batches \(\d+%\), [\d.e+-]+ batches/s, "
                          r".* so far, about .* left")
    assert progress.search(proc.stdout) and progress.search(log)
    assert "1/2 epochs done in " in log and "2/2 epochs done in " in log
    assert log.count("train_loss:") == 2  # once per epoch
    manifest = json.loads((run_dir / "data_manifest.json").read_text())
    assert manifest["digest"] == data["manifest_digest"]
    assert any("class 5" in e["reason"] for e in manifest["exclusions"])
    best = torch.load(run_dir / "best_model.pt", weights_only=True)
    assert best["arch"] == "test_efficientnet" and best["class_names"] == ["A", "B", "C", "D"]
    assert best["preprocess"]["img_size"] == 64 and "mean" in best["normalization"]
    history = json.loads((run_dir / "train_history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    assert {"train_loss", "val_loss", "val_kappa", "val_acc", "lr"} <= set(history[0])
    header = (run_dir / "val_predictions.csv").read_text().splitlines()[0]
    assert header == ("image_path,accession,patient,view,laterality,true_label,pred_label,"
                      "prob_A,prob_B,prob_C,prob_D")


def test_model_learns_the_density_signal(cli, synthetic_dataset, cache_dir, tmp_path):
    proc = cli("train-density", *data_args(synthetic_dataset), *TINY, "--epochs", "8",
               "--outdir", tmp_path, env=child_env(MAMMOGRAPHY_CACHE_DIR=str(cache_dir)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = read_summary(tmp_path / "results_1")
    # chance is kappa 0 / accuracy ~0.25-0.4 (majority class)
    assert summary["best_val_kappa"] > 0.6, summary["results"]


def test_cross_validation_end_to_end(cli, synthetic_dataset, cache_dir, tmp_path):
    proc = cli("train-density", *data_args(synthetic_dataset), *TINY, "--epochs", "1",
               "--cv-folds", "3", "--outdir", tmp_path,
               env=child_env(MAMMOGRAPHY_CACHE_DIR=str(cache_dir)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    parent = tmp_path / "results_1"
    assert "1/3 folds done in " in proc.stdout and "3/3 folds done in " in proc.stdout
    cv = json.loads((parent / "cv_summary.json").read_text())
    assert cv["num_folds"] == 3 and cv["base_seed"] == 42 and len(cv["git_commit"]) == 7
    for name in ("accuracy", "kappa", "macro_f1", "auc"):
        assert set(cv["aggregated_metrics"][name]) == {"mean", "std", "values"}
        assert len(cv["aggregated_metrics"][name]["values"]) == 3
    patients_by_fold = []
    for k in (1, 2, 3):
        fold_dir = parent / f"fold_{k}" / "results"
        assert files(fold_dir) >= ARTIFACTS
        summary = read_summary(fold_dir)
        assert summary["integration"]["cv_fold"] == k and schema_problems(summary) == []
        detail = cv["fold_details"][k - 1]
        assert detail["summary_path"] == f"fold_{k}/results/summary.json"
        assert detail["train_samples"] + detail["val_samples"] == \
            summary["data_config"]["num_images"]
        rows = (fold_dir / "splits.csv").read_text().splitlines()[1:]
        patients_by_fold.append({r.split(",")[2] for r in rows if r.endswith(",val")})
    assert not (patients_by_fold[0] & patients_by_fold[1] or patients_by_fold[0] &
                patients_by_fold[2] or patients_by_fold[1] & patients_by_fold[2])
    assert (parent / "plots" / "cv_folds.png").is_file()
    assert read_summary(parent)["cv_mean_kappa"] == cv["aggregated_metrics"]["kappa"]["mean"]


def test_interrupt_then_resume_matches_an_uninterrupted_run(synthetic_dataset, cache_dir,
                                                            tmp_path):
    env = child_env(MAMMOGRAPHY_CACHE_DIR=str(cache_dir))
    args = [sys.executable, "-m", "mammography", "train-density",
            *map(str, data_args(synthetic_dataset)), *TINY, "--epochs", "4",
            "--early-stop-patience", "0"]
    straight = subprocess.run([*args, "--outdir", str(tmp_path / "a")], env=env,
                              capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-2000:]

    outdir = tmp_path / "b"
    proc = subprocess.Popen([*args, "--outdir", str(outdir)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = outdir / "results_1" / "run.log"
    deadline = time.time() + 300
    while time.time() < deadline and not (log.exists() and "Epoch 3/4" in log.read_text()):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    interrupted = read_summary(outdir / "results_1")
    assert interrupted["status"] == "interrupted"
    assert (outdir / "results_1" / "last_checkpoint.pt").is_file()
    assert "--resume" in log.read_text()

    resumed = subprocess.run([sys.executable, "-m", "mammography", "train-density",
                              "--resume", str(outdir / "results_1")], env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    new = read_summary(outdir / "results_2")
    assert new["based_on"][0]["relation"] == "resume"
    a = json.loads((tmp_path / "a" / "results_1" / "train_history.json").read_text())
    b = json.loads((outdir / "results_2" / "train_history.json").read_text())
    assert [r["epoch"] for r in b] == [1, 2, 3, 4]
    for row_a, row_b in zip(a, b, strict=True):
        assert row_a["val_loss"] == pytest.approx(row_b["val_loss"], rel=1e-5)
        assert row_a["val_kappa"] == pytest.approx(row_b["val_kappa"], abs=1e-9)
    assert new["best_val_kappa"] == pytest.approx(read_summary(tmp_path / "a" / "results_1")
                                                  ["best_val_kappa"])


@pytest.mark.parametrize("extra, message", [
    (["--arch", "efficientnetb0"], "is not a timm model; similar: efficientnet_b0"),
    (["--batch-size", "-4"], "--batch-size must be at least 1"),
    (["--img-size", "8"], "--img-size must be between"),
    (["--csv", "missing.csv"], "--csv missing.csv does not exist"),
    (["--class-weights", "1,2"], "--class-weights must be auto, none or four"),
    (["--resume", "nowhere"], "--resume nowhere is not a run directory"),
])
def test_bad_options_exit_2_before_any_run_directory(cli, synthetic_dataset, tmp_path, extra,
                                                      message):
    proc = cli("train-density", *data_args(synthetic_dataset), *TINY, *extra,
               "--outdir", tmp_path / "out")
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_pretrained_without_network_names_the_way_out(cli, synthetic_dataset, cache_dir,
                                                       tmp_path):
    args = [a for a in TINY if a != "--no-pretrained"]
    proc = cli("train-density", *data_args(synthetic_dataset), *args, "--pretrained",
               "--arch", "resnet18", "--epochs", "1", "--outdir", tmp_path,
               env=child_env(MAMMOGRAPHY_CACHE_DIR=str(cache_dir), HF_HUB_OFFLINE="1"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "--weights" in proc.stderr and "--no-pretrained" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert read_summary(tmp_path / "results_1")["status"] == "failed"
