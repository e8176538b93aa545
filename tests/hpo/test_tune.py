"""`mammography tune` end to end: Optuna (pruning, artifacts, resume) and Ray Tune."""

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from mammography.record.schema import schema_problems
from tests.helpers import child_env, read_summary, run_cli

pytestmark = pytest.mark.slow

TINY = ["--arch", "test_efficientnet", "--no-pretrained", "--img-size", "64",
        "--num-workers", "0", "--batch-size", "32"]


def data_args(dataset):
    return ["--csv", dataset / "classificacao.csv", "--dicom-root", dataset / "archive"]


@pytest.fixture
def env(cache_dir):
    return child_env(MAMMOGRAPHY_CACHE_DIR=str(cache_dir), OMP_NUM_THREADS="1")


def test_optuna_study_with_pruning_and_every_artifact(synthetic_dataset, env, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("lr: {type: float, low: 1.0e-5, high: 1.0e-2, log: true}\n"
                     "train_augment: {type: categorical, choices: [true, false]}\n")
    proc = run_cli("tune", *data_args(synthetic_dataset), *TINY, "--epochs", "3",
                   "--n-trials", "4", "--search-space", space, "--outdir", tmp_path / "hpo",
                   env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "hpo" / "results_1"
    summary = read_summary(run)
    assert summary["command"] == "tune" and schema_problems(summary) == []
    assert summary["results"]["trials"]["COMPLETE"] + summary["results"]["trials"].get(
        "PRUNED", 0) == 4
    for name in ("study.db", "trials.csv", "best_params.json", "data_manifest.json",
                 "plots/optimization_history.png", "plots/param_importances.png"):
        assert (run / name).is_file(), name
    best = json.loads((run / "best_params.json").read_text())
    assert set(best["params"]) == {"lr", "train_augment"}
    assert summary["best_value"] == best["value"]
    for number in range(4):
        trial_dir = run / f"trial_{number}" / "results"
        record = json.loads((trial_dir / "optuna_trial.json").read_text())
        assert set(record) >= {"trial_id", "trial_number", "params", "value", "metric", "state",
                               "datetime_start", "datetime_complete"}
        assert record["state"] in ("COMPLETE", "PRUNED") and record["metric"] == "val_kappa"
        trial = read_summary(trial_dir)
        assert trial["integration"]["optuna_trial_id"] == record["trial_id"]
        assert trial["hyperparameters"]["lr"] == pytest.approx(record["params"]["lr"])
        assert schema_problems(trial) == []
        assert (trial_dir / "best_model.pt").is_file()
    rows = (run / "trials.csv").read_text().splitlines()
    assert rows[0].startswith("number,state,value,lr,train_augment") and len(rows) == 5
    log = (run / "run.log").read_text()
    assert "=== Trial 3:" in log and "Search Complete" in log
    # Optuna's own log lines: run.log only; the terminal gets the time left instead.
    assert "Trial 0 finished with value" in log
    assert "finished with value" not in proc.stdout + proc.stderr
    assert "4/4 trials done in" in proc.stdout


def test_a_killed_study_resumes_from_its_sqlite_storage(synthetic_dataset, env, tmp_path):
    args = [sys.executable, "-m", "mammography", "tune", *map(str, data_args(synthetic_dataset)),
            *TINY, "--epochs", "2", "--n-trials", "3", "--pruner", "none",
            "--outdir", str(tmp_path)]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = tmp_path / "results_1"
    deadline = time.time() + 300
    while time.time() < deadline:
        log = first / "trial_1" / "results" / "run.log"
        if log.is_file() and "Epoch 1/2" in log.read_text():
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    resumed = run_cli("tune", "--resume", first, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    second = read_summary(tmp_path / "results_2")
    assert second["based_on"][0]["relation"] == "resume"
    assert second["search"]["storage"].endswith("results_1/study.db")
    with sqlite3.connect(first / "study.db") as db:
        states = [s for (s,) in db.execute("select state from trials order by number")]
    assert states.count("COMPLETE") == 3  # trial 0 before the kill, two after
    assert "FAIL" in states  # the trial the kill interrupted
    assert "marked failed" in (tmp_path / "results_2" / "run.log").read_text()
    # trial 0 finished before the kill: not trained again, and the new trials.csv finds it
    assert not (tmp_path / "results_2" / "trial_0").exists()
    rows = (tmp_path / "results_2" / "trials.csv").read_text().splitlines()
    assert rows[1].startswith("0,COMPLETE,") and rows[1].endswith(
        ",../results_1/trial_0/results")


def test_ray_engine_two_trials_on_a_local_instance(synthetic_dataset, env, tmp_path):
    pytest.importorskip("ray")
    # As the README has it: paths relative to the folder tune starts in (Ray runs
    # each trial in a folder of its own, and its storage takes absolute paths only).
    (tmp_path / "data").symlink_to(synthetic_dataset, target_is_directory=True)
    proc = run_cli("tune", "--engine", "ray", "--csv", "data/classificacao.csv", *TINY,
                   "--epochs", "2", "--n-trials", "2", "--outdir", "hpo", cwd=tmp_path,
                   env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tmp_path = tmp_path / "hpo"
    run = tmp_path / "results_1"
    # Ray's start-up and status tables are in run.log only; the terminal has a line
    # per finished trial with the time left.
    terminal = proc.stdout + proc.stderr
    assert "Trial status" not in terminal and "Trial status" in (run / "run.log").read_text()
    assert "2/2 trials done in" in terminal
    summary = read_summary(run)
    assert summary["search"]["engine"] == "ray" and summary["results"]["trials"][
        "COMPLETE"] == 2
    trial_runs = sorted((run / "trials").glob("*/results_1"))
    assert len(trial_runs) == 2
    for trial_dir in trial_runs:
        trial = read_summary(trial_dir)
        name = trial["integration"]["ray_trial_name"]
        assert name == trial_dir.parent.name
        lines = [json.loads(line) for line in
                 (trial_dir / f"ray_hpo_{name}.jsonl").read_text().splitlines()]
        assert [line["iteration"] for line in lines] == [1, 2]
        assert set(lines[0]) >= {"trial_name", "iteration", "val_acc", "val_kappa", "timestamp"}
    assert (run / "trials.csv").is_file() and (run / "best_params.json").is_file()

    # --resume takes over the finished trials and runs only the missing one
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    resumed = run_cli("tune", "--resume", run, "--n-trials", "3", env=env, cwd=tmp_path.parent)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    second = tmp_path / "results_2"
    assert len(list((second / "trials").glob("*/results_1"))) == 1
    search = read_summary(second)["search"]
    assert search["trials_before"] == 2 and {t["trial_name"] for t in search[
        "reused_trials"]} == {d.parent.name for d in trial_runs}
    assert read_summary(second)["results"]["trials"]["COMPLETE"] == 3
    rows = (second / "trials.csv").read_text().splitlines()
    assert len(rows) == 4 and sum(",../results_1/trials/" in row for row in rows) == 2
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("engine", ["optuna", "ray"])
def test_a_search_whose_trials_all_fail_fails_naming_the_first_error(
        synthetic_dataset, env, tmp_path, engine):
    if engine == "ray":
        pytest.importorskip("ray")
    space = tmp_path / "space.yaml"
    space.write_text("batch_size: {type: categorical, choices: [0]}\n")  # refused per trial
    proc = run_cli("tune", "--engine", engine, *data_args(synthetic_dataset), *TINY,
                   "--epochs", "1", "--n-trials", "2", "--search-space", space,
                   "--outdir", tmp_path / "hpo", env=env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    run = tmp_path / "hpo" / "results_1"
    summary = read_summary(run)
    assert summary["status"] == "failed"
    assert "all 2 trials failed" in summary["execution"]["error"]["message"]
    log = (run / "run.log").read_text()
    assert "Trial 0 failed" in log and "--batch-size must be at least 1, got 0" in log
    assert not (run / "best_params.json").exists()


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_parallel_folds_give_the_same_cv_summary(synthetic_dataset, env, tmp_path, engine):
    common = [*data_args(synthetic_dataset), *TINY, "--epochs", "1", "--cv-folds", "3"]
    sequential = run_cli("train-density", *common, "--outdir", tmp_path / "seq", env=env)
    parallel = run_cli("train-density", *common, "--cv-workers", "2", "--cv-engine", engine,
                       "--outdir", tmp_path / "par", env=env)
    assert sequential.returncode == 0, sequential.stderr[-3000:]
    assert parallel.returncode == 0, parallel.stderr[-3000:]
    a = json.loads((tmp_path / "seq" / "results_1" / "cv_summary.json").read_text())
    b = json.loads((tmp_path / "par" / "results_1" / "cv_summary.json").read_text())
    for metric in ("accuracy", "kappa", "macro_f1", "auc"):
        assert b["aggregated_metrics"][metric]["values"] == pytest.approx(
            a["aggregated_metrics"][metric]["values"], abs=1e-6)
    assert [f["summary_path"] for f in a["fold_details"]] == \
        [f["summary_path"] for f in b["fold_details"]]
    log = (tmp_path / "par" / "results_1" / "run.log").read_text()
    assert "[fold 2] Epoch 1/1" in log
    assert "[fold 3] Epoch 1/1" in log  # the first worker's second fold, same process
    assert "@@mammography-cv-fold" not in log
    for k in (1, 2, 3):
        fold = read_summary(tmp_path / "par" / "results_1" / f"fold_{k}" / "results")
        assert fold["integration"]["cv_fold"] == k and fold["status"] == "completed"
        assert fold["parent_run_dir"] == str((tmp_path / "par" / "results_1").resolve())
