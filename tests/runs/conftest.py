"""Fixtures for `mammography runs`: fake run directories, and a tree of real ones.

``fake_run`` writes a schema-valid run directory without training anything
(fast unit tests). ``runs_tree`` (session scope, slow) makes real runs with
the CLI on a tiny synthetic dataset, in separate outdirs so that each lands at
a known path:

=========================  ====================================================
``density/results_1``      A: completed, seed 42, lr 1e-4, 1 epoch
``resumed/results_1``      ``--resume`` A to 2 epochs (``based_on`` A, resume)
``cv/results_1``           2-fold CV, seed 43, lr 3e-4 (``fold_1/results``, ...)
``failed/results_1``       failed (crafted from A: status, error, no model)
``interrupted/results_1``  SIGTERM once epoch 1 started (exit 130)
``killed/results_1``       SIGKILL once epoch 1 started: summary says running
=========================  ====================================================

Tests that change runs work on a copy (``tree_copy``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, child_env

TINY = ["--arch", "test_efficientnet", "--no-pretrained", "--img-size", "64",
        "--num-workers", "0", "--batch-size", "16"]


# --------------------------------------------------------------- fake runs

def make_summary(run_dir: Path, *, status: str = "completed", seed: int = 42,
                 start: str = "2026-01-01T10:00:00+00:00",
                 end: str | None = "2026-01-01T10:05:00+00:00",
                 heartbeat: str | None = None, pid: int = 999_999,
                 hostname: str | None = None, hyperparameters: dict | None = None,
                 results: dict | None = None, based_on: list | None = None,
                 integration: dict | None = None, experiment_type: str =
                 "density_classification", command: str = "train-density",
                 git_commit: str = "a1b2c3d", git_dirty: bool = False,
                 **top) -> dict:
    """A summary.json document that satisfies both schemas."""
    run_dir = Path(run_dir)
    results = dict(results if results is not None else {"best_val_kappa": 0.5,
                                                          "best_val_acc": 0.6})
    document = {
        "schema_version": 1, "experiment_type": experiment_type, "command": command,
        "run_id": run_dir.name if run_dir.name.startswith("results_") else "results_1",
        "run_dir": str(run_dir.resolve()), "parent_run_dir": None, "status": status,
        "seed": seed, "git_commit": git_commit, "git_commit_full": git_commit + "0" * 33,
        "git_branch": "main", "git_dirty": git_dirty,
        "git": {"available": True, "source": "code", "repository": "/repo"},
        "mammography_version": "0.1.0",
        "hyperparameters": dict(hyperparameters or {"lr": 1e-4, "arch": "test_efficientnet"}),
        "config": {}, "data_config": {"manifest_digest": "d" * 64},
        "model_config": {},
        "environment": {"python_version": "3.11.7", "platform": "Linux",
                        "hostname": hostname or socket.gethostname(),
                        "torch_version": "2.14.1", "packages": {"numpy": "2.0.0"}},
        "execution": {"start_time": start, "end_time": end,
                      "duration_seconds": None if end is None else 300.0,
                      "heartbeat": heartbeat or end or start,
                      "command_line": "mammography train-density --epochs 1",
                      "cwd": str(REPO), "pid": pid,
                      "hostname": hostname or socket.gethostname(),
                      "exit_code": None if status == "running" else 0, "error": None},
        "integration": {"optuna_trial_id": None, "ray_trial_name": None, "cv_fold": None,
                        **(integration or {})},
        "based_on": based_on, "results": results,
        "warnings": {"count": 0, "messages": []}, "artifacts": [],
        **results,
    }
    document.update(top)
    return document


def write_fake_run(run_dir: Path, *, artifacts: bool = True, **summary) -> Path:
    """A run directory with summary.json, run.log, data_manifest.json (and the
    train-density artifacts when ``artifacts``)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    document = make_summary(run_dir, **summary)
    (run_dir / "summary.json").write_text(json.dumps(document, indent=2))
    (run_dir / "run.log").write_text("[2026-01-01 10:00:00] Epoch 1/1\n"
                                     "[2026-01-01 10:00:01] WARNING: something\n")
    (run_dir / "data_manifest.json").write_text('{"digest": "x"}')
    if artifacts:
        (run_dir / "metrics").mkdir(exist_ok=True)
        (run_dir / "metrics" / "val_metrics.json").write_text("{}")
        (run_dir / "best_model.pt").write_bytes(b"\0" * 4096)
        (run_dir / "train_history.csv").write_text("epoch\n1\n")
        (run_dir / "val_predictions.csv").write_text("path\n")
    return run_dir


@pytest.fixture
def fake_run():
    return write_fake_run


# -------------------------------------------------------------- real runs

def _train(outdir: Path, data: Path, env: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mammography", "train-density",
         "--csv", str(data / "classificacao.csv"), "--outdir", str(outdir), *TINY, *extra],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _when_epoch_starts(proc: subprocess.Popen, log: Path, signum: int) -> int:
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and "Epoch 1/" in log.read_text(errors="replace"):
            proc.send_signal(signum)
            break
        time.sleep(0.05)
    return proc.wait(timeout=240)


def _finish(proc: subprocess.Popen, what: str, expected: int = 0) -> None:
    code = proc.wait(timeout=600)
    stderr = proc.stderr.read() if proc.stderr else ""
    assert code == expected, f"{what}: exit {code}\n{stderr[-3000:]}"


@pytest.fixture(scope="session")
def runs_env(tmp_path_factory):
    """Environment for CLI calls on the tree: the tree's own image cache and memo."""
    cache = tmp_path_factory.mktemp("runs_cache")
    # One thread per process: the tree runs several trainings at once on few cores.
    return child_env(MAMMOGRAPHY_CACHE_DIR=str(cache), OMP_NUM_THREADS="1")


@pytest.fixture(scope="session")
def runs_data(tmp_path_factory):
    from mammography.config.synth import SynthConfig
    from mammography.data.synthetic import generate_dataset

    out = tmp_path_factory.mktemp("runs_data") / "data"
    generate_dataset(SynthConfig(out=out, exams=24, seed=11, size="160x128"),
                     log=lambda message: None)
    return out


def _craft_failed(source: Path, target: Path) -> None:
    """A failed run made from a completed one: cheaper than failing a real training run,
    and shaped like one (what the run layer records for an exception in the body)."""
    shutil.copytree(source, target)
    for name in ("best_model.pt", "val_predictions.csv", "val_predictions_exam.csv"):
        (target / name).unlink()
    shutil.rmtree(target / "metrics")
    shutil.rmtree(target / "plots")
    document = json.loads((target / "summary.json").read_text())
    for key in document.pop("results"):
        document.pop(key, None)
    document.update(status="failed", results={}, run_dir=str(target.resolve()))
    document["execution"].update(exit_code=1, error={
        "type": "RuntimeError", "message": "CUDA error: device-side assert triggered",
        "where": "mammography/engine/train/fit.py:120 in train_one_epoch"})
    document["artifacts"] = [a for a in document["artifacts"]
                             if (target / a["path"]).exists()]
    (target / "summary.json").write_text(json.dumps(document, indent=2))


@pytest.fixture(scope="session")
def runs_tree(tmp_path_factory, runs_data, runs_env):
    """The tree of real runs described in the module docstring (about 30 s on 2 idle cores)."""
    root = tmp_path_factory.mktemp("runs_tree") / "outputs"
    data, env = runs_data, runs_env
    # Build the image cache once, so the parallel runs below only read it.
    subprocess.run([sys.executable, "-m", "mammography", "data", "cache", "--csv",
                    str(data / "classificacao.csv"), "--img-size", "64", "--workers", "2"],
                   cwd=REPO, env=env, check=True, capture_output=True, timeout=300)
    a = _train(root / "density", data, env, "--epochs", "1", "--seed", "42", "--lr", "1e-4")
    cv = _train(root / "cv", data, env, "--epochs", "1", "--cv-folds", "2", "--seed", "43",
                "--lr", "3e-4")
    interrupted = _train(root / "interrupted", data, env, "--epochs", "50",
                         "--early-stop-patience", "0")
    killed = _train(root / "killed", data, env, "--epochs", "50", "--early-stop-patience",
                    "0")
    assert _when_epoch_starts(interrupted, root / "interrupted" / "results_1" / "run.log",
                              signal.SIGTERM) == 130
    assert _when_epoch_starts(killed, root / "killed" / "results_1" / "run.log",
                              signal.SIGKILL) == -signal.SIGKILL
    _finish(a, "run A")
    resumed = subprocess.Popen(
        [sys.executable, "-m", "mammography", "train-density", "--resume",
         str(root / "density" / "results_1"), "--epochs", "2", "--outdir",
         str(root / "resumed")],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _craft_failed(root / "density" / "results_1", root / "failed" / "results_1")
    _finish(cv, "CV run")
    _finish(resumed, "resumed run")
    return root


@pytest.fixture
def tree_copy(runs_tree, tmp_path):
    """A private copy of the tree for tests that change or delete runs."""
    copy = tmp_path / "outputs"
    shutil.copytree(runs_tree, copy, symlinks=True)
    return copy


def backdate(run_dir: Path, days: float) -> None:
    """Move a run's recorded times (and its summary's mtime) ``days`` into the past."""
    import datetime as dt

    path = Path(run_dir) / "summary.json"
    document = json.loads(path.read_text())
    when = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)
    stamp = when.isoformat(timespec="seconds")
    execution = document["execution"]
    for key in ("start_time", "end_time", "heartbeat"):
        if execution.get(key) is not None:
            execution[key] = stamp
    path.write_text(json.dumps(document, indent=2))
    os.utime(path, (when.timestamp(), when.timestamp()))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """The run index (and any other cache) of each test in its own folder, never the
    user's cache folder."""
    monkeypatch.setenv("MAMMOGRAPHY_CACHE_DIR", str(tmp_path / "cache"))
