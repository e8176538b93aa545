"""CUDA paths end to end: AMP + channels_last training, embedding, and checkpoints that
move between GPU and CPU. Marked ``gpu`` (CI has no GPU and skips them); run with
``pytest -m gpu`` where a device is lent."""

import csv
import json

import numpy as np
import pytest
import torch

from mammography.engine.checkpoint import model_from_best
from tests.helpers import child_env, read_summary, run_cli

pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

TINY = ["--arch", "test_efficientnet", "--no-pretrained", "--img-size", "64", "--epochs", "2",
        "--lr", "0.003", "--warmup-epochs", "1"]


@pytest.fixture(scope="module")
def gpu_runs(synthetic_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu")
    env = child_env(MAMMOGRAPHY_CACHE_DIR=str(root / "cache"))
    data = ["--csv", synthetic_dataset / "classificacao.csv",
            "--dicom-root", synthetic_dataset / "archive"]

    def cli(*args):
        proc = run_cli(*args, env=env)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        return proc

    cli("train-density", *data, *TINY, "--device", "cuda", "--amp", "--outdir", root / "amp")
    cli("train-density", *data, *TINY, "--device", "cuda", "--amp", "--outdir", root / "amp")
    cli("embed", *data, "--arch", "test_resnet", "--no-pretrained", "--img-size", "64",
        "--device", "cuda", "--outdir", root / "emb_gpu")
    cli("embed", *data, "--arch", "test_resnet", "--no-pretrained", "--img-size", "64",
        "--device", "cpu", "--outdir", root / "emb_cpu")
    return {"root": root, "env": env, "data": data}


def test_amp_training_on_cuda_records_device_and_precision(gpu_runs):
    run = gpu_runs["root"] / "amp" / "results_1"
    summary = read_summary(run)
    assert summary["status"] == "completed"
    assert summary["model_config"]["device"].startswith("cuda")
    assert summary["model_config"]["precision"].startswith("AMP ")
    assert summary["environment"]["cuda_available"] is True
    log = (run / "run.log").read_text()
    assert "✓ New best model" in log and "Training Complete" in log
    history = list(csv.DictReader((run / "train_history.csv").open()))
    assert len(history) == 2 and all(float(r["train_images_per_second"]) > 0 for r in history)
    assert 0.0 <= summary["results"]["best_val_acc"] <= 1.0


def test_cuda_checkpoint_loads_on_cpu_and_predicts(gpu_runs):
    run = gpu_runs["root"] / "amp" / "results_1"
    payload = torch.load(run / "best_model.pt", map_location="cpu", weights_only=True)
    assert all(t.device.type == "cpu" for t in payload["state_dict"].values()
               if isinstance(t, torch.Tensor))
    model, _ = model_from_best(run / "best_model.pt")
    with torch.no_grad():
        out = model(torch.zeros(2, 1, 64, 64))
    assert out.shape == (2, 4) and torch.isfinite(out).all()


def test_same_seed_on_cuda_gives_close_metrics(gpu_runs):
    a = read_summary(gpu_runs["root"] / "amp" / "results_1")["results"]
    b = read_summary(gpu_runs["root"] / "amp" / "results_2")["results"]
    # cuDNN autotuning and atomics make CUDA runs close, not bit-identical.
    assert abs(a["best_val_acc"] - b["best_val_acc"]) <= 0.25


def test_embeddings_on_cuda_match_cpu(gpu_runs):
    gpu = np.load(gpu_runs["root"] / "emb_gpu" / "results_1" / "features.npy")
    cpu = np.load(gpu_runs["root"] / "emb_cpu" / "results_1" / "features.npy")
    assert gpu.shape == cpu.shape and gpu.dtype == np.float32 and np.isfinite(gpu).all()
    # bfloat16 autocast: per-image features agree in direction, not to the last bit.
    cosine = (gpu * cpu).sum(1) / (np.linalg.norm(gpu, axis=1) * np.linalg.norm(cpu, axis=1)
                                   + 1e-12)
    assert np.median(cosine) > 0.98
    summary = read_summary(gpu_runs["root"] / "emb_gpu" / "results_1")
    assert summary["experiment_type"] == "embedding_extraction"


def test_eval_export_of_a_cuda_run_on_cuda_with_onnx_parity(gpu_runs, tmp_path):
    run = gpu_runs["root"] / "amp" / "results_1"
    proc = run_cli("eval-export", "--run", run, "--device", "cuda", "--export", "onnx",
                   "--bootstrap", "100", "--outdir", tmp_path, env=gpu_runs["env"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = tmp_path / "results_1"
    assert read_summary(out)["status"] == "completed"
    metrics = json.loads(next(out.glob("**/metrics.json")).read_text())
    assert metrics
    assert list(out.glob("**/*.onnx"))
