"""torchrun with 2 CPU processes (gloo DDP) against a single process."""

import json
import subprocess
import sys

import pytest

from tests.helpers import child_env, read_summary

pytestmark = pytest.mark.slow

ARGS = ["--arch", "test_efficientnet", "--no-pretrained", "--img-size", "64", "--epochs", "3",
        "--lr", "0.003", "--num-workers", "0", "--no-train-augment", "--warmup-epochs", "1"]


def test_two_process_ddp_matches_a_single_process(synthetic_dataset, cache_dir, tmp_path):
    env = child_env(MAMMOGRAPHY_CACHE_DIR=str(cache_dir), OMP_NUM_THREADS="1")
    data = ["--csv", str(synthetic_dataset / "classificacao.csv"),
            "--dicom-root", str(synthetic_dataset / "archive")]
    single = subprocess.run([sys.executable, "-m", "mammography", "train-density", *data,
                             *ARGS, "--outdir", str(tmp_path / "single")],
                            env=env, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc-per-node", "2", "-m", "mammography", "train-density", *data,
                          *ARGS, "--outdir", str(tmp_path / "ddp")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert [p.name for p in (tmp_path / "ddp").iterdir()] == ["results_1"]  # rank 0 only
    run = tmp_path / "ddp" / "results_1"
    summary = read_summary(run)
    assert summary["execution"]["world_size"] == 2
    assert summary["model_config"]["world_size"] == 2
    assert summary["model_config"]["distributed_backend"] == "gloo"
    log = (run / "run.log").read_text()
    assert "] [rank 1] Starting density classification training" in log
    # The terminal shows rank 0 only: rank 1's lines are in run.log alone.
    terminal = ddp.stdout + ddp.stderr
    assert terminal.count("Starting density classification training") == 1
    assert "[rank 1]" not in terminal
    assert "Distributed: 2 processes (gloo), 8 images per process per batch" in log
    a = json.loads((tmp_path / "single" / "results_1" / "train_history.json").read_text())
    b = json.loads((run / "train_history.json").read_text())
    assert len(a) == len(b) == 3
    # Same global batches; only batch-norm statistics (per process) and dropout draws
    # differ, so the curves agree closely but not bit for bit.
    assert b[0]["val_loss"] == pytest.approx(a[0]["val_loss"], abs=0.15)
    assert b[0]["train_loss"] == pytest.approx(a[0]["train_loss"], abs=0.1)
    assert summary["best_val_kappa"] == pytest.approx(
        read_summary(tmp_path / "single" / "results_1")["best_val_kappa"], abs=0.2)
    # both ranks saw every validation image once: the gathered count is the split size
    assert b[0]["val_images_per_second"] > 0
    assert summary["data_config"]["num_val"] == read_summary(
        tmp_path / "single" / "results_1")["data_config"]["num_val"]
