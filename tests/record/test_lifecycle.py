"""The run lifecycle end to end: statuses, exit codes, signals, child runs."""

import json
import signal
import subprocess
import sys
import time

import pytest

from mammography.record.schema import schema_problems
from tests.helpers import SCRIPTS, child_env, read_summary

SCRIPT = SCRIPTS / "lifecycle_script.py"


def run_mode(mode, outdir, **env):
    return subprocess.run([sys.executable, str(SCRIPT), mode, str(outdir)],
                          capture_output=True, text=True, env=child_env(**env), timeout=120)


def start_mode(mode, outdir):
    proc = subprocess.Popen([sys.executable, str(SCRIPT), mode, str(outdir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env())
    for line in proc.stdout:  # wait until the body runs (handlers installed)
        if "READY" in line:
            return proc
    raise AssertionError(proc.stderr.read())


def test_completed_run_records_everything(tmp_path):
    proc = run_mode("ok", tmp_path)
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "results_1"
    summary = read_summary(run_dir)
    assert summary["status"] == "completed"
    assert summary["run_id"] == "results_1"
    assert summary["seed"] == 7
    assert summary["hyperparameters"] == {"lr": 0.001}
    assert summary["best_val_kappa"] == 0.42 == summary["results"]["best_val_kappa"]
    execution = summary["execution"]
    assert execution["exit_code"] == 0 and execution["error"] is None
    assert execution["duration_seconds"] >= 0 and execution["end_time"]
    assert execution["pid"] > 0 and execution["hostname"]
    assert "lifecycle_script.py ok" in execution["command_line"]
    assert summary["integration"] == {"optuna_trial_id": None, "ray_trial_name": None,
                                      "cv_fold": None}
    env = summary["environment"]
    assert env["python_version"] and env["packages"]["numpy"]
    assert schema_problems(summary) == []
    log = (run_dir / "run.log").read_text()
    assert "body started" in log and "completed" in log


def test_exception_means_failed_exit_1_and_traceback_in_log(tmp_path):
    proc = run_mode("fail", tmp_path)
    assert proc.returncode == 1
    summary = read_summary(tmp_path / "results_1")
    assert summary["status"] == "failed"
    assert summary["execution"]["exit_code"] == 1
    assert summary["execution"]["error"]["type"] == "ValueError"
    assert summary["execution"]["error"]["message"] == "boom in the body"
    log = (tmp_path / "results_1" / "run.log").read_text()
    assert "Traceback (most recent call last)" in log
    assert "ValueError: boom in the body" in log
    assert schema_problems(summary) == []


def test_bad_input_means_exit_2_message_and_no_traceback(tmp_path):
    proc = run_mode("input", tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "Error: CSV labels.csv row 3" in proc.stderr
    summary = read_summary(tmp_path / "results_1")
    assert summary["status"] == "failed"
    assert summary["execution"]["error"]["type"] == "input_error"
    assert "row 3" in (tmp_path / "results_1" / "run.log").read_text()


def test_an_explained_failure_means_exit_1_its_message_and_no_traceback(tmp_path):
    # e.g. a cluster that kept losing a shard's worker: not a bug, nothing to trace
    proc = run_mode("explained", tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "Error: Embedding: shard 3 (images 6-7) was lost 4 times" in proc.stderr
    summary = read_summary(tmp_path / "results_1")
    assert summary["status"] == "failed" and summary["execution"]["exit_code"] == 1
    assert summary["execution"]["error"]["type"] == "ExplainedFailure"
    assert "giving up after 3 retries" in summary["execution"]["error"]["message"]
    log = (tmp_path / "results_1" / "run.log").read_text()
    assert "was lost 4 times" in log and "Traceback" not in log
    assert schema_problems(summary) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_means_interrupted_and_exit_130(tmp_path, signum):
    proc = start_mode("sleep", tmp_path)
    proc.send_signal(signum)
    proc.wait(timeout=30)
    assert proc.returncode == 130
    summary = read_summary(tmp_path / "results_1")
    assert summary["status"] == "interrupted"
    assert summary["execution"]["error"]["signal"] == signal.Signals(signum).name
    assert schema_problems(summary) == []


def test_graceful_stop_reaches_a_safe_point_first(tmp_path):
    proc = start_mode("graceful", tmp_path)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    assert proc.returncode == 130
    log = (tmp_path / "results_1" / "run.log").read_text()
    assert "stopping at the next safe point" in log
    assert "saving checkpoint at step" in log
    assert read_summary(tmp_path / "results_1")["status"] == "interrupted"


def test_child_runs_are_full_run_directories(tmp_path):
    proc = run_mode("child", tmp_path)
    assert proc.returncode == 0, proc.stderr
    parent = tmp_path / "results_1"
    for fold in (1, 2):
        child_dir = parent / f"fold_{fold}" / "results"
        summary = read_summary(child_dir)
        assert summary["integration"]["cv_fold"] == fold
        assert summary["status"] == "completed"
        assert summary["parent_run_dir"] == str(parent.resolve())
        assert schema_problems(summary) == []
        child_log = (child_dir / "run.log").read_text()
        assert f"inside fold {fold}" in child_log
    parent_log = (parent / "run.log").read_text()
    assert "inside fold 1" in parent_log and "inside fold 2" in parent_log
    artifacts = [a["path"] for a in read_summary(parent)["artifacts"]]
    assert "run.log" in artifacts
    assert not any(a.startswith("fold_") for a in artifacts)


def test_failing_child_fails_the_parent_with_one_traceback(tmp_path):
    proc = run_mode("child_fail", tmp_path)
    assert proc.returncode == 1
    parent = tmp_path / "results_1"
    assert read_summary(parent / "fold_2" / "results")["status"] == "failed"
    assert read_summary(parent)["status"] == "failed"
    assert proc.stderr.count("Traceback (most recent call last)") == 1


def test_warnings_are_marked_and_counted(tmp_path):
    proc = run_mode("warn", tmp_path)
    assert proc.returncode == 0
    log = (tmp_path / "results_1" / "run.log").read_text()
    assert "] WARNING: Disk cache truncation detected for 1 samples - regenerating" in log
    warnings = read_summary(tmp_path / "results_1")["warnings"]
    assert warnings["count"] == 1


def test_output_of_children_and_python_warnings_reach_run_log(tmp_path):
    proc = run_mode("spawn", tmp_path)
    assert proc.returncode == 0, proc.stderr
    log = (tmp_path / "results_1" / "run.log").read_text()
    for text in ("from os.write", "from a subprocess", "subprocess stderr",
                 "WARNING: UserWarning: a python warning"):
        assert text in log


def test_heartbeat_advances_while_running(tmp_path):
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "sleep", str(tmp_path)],
                            stdout=subprocess.PIPE, text=True,
                            env=child_env(MAMMOGRAPHY_HEARTBEAT_SECONDS="0.2"))
    try:
        for line in proc.stdout:
            if "READY" in line:
                break
        first = read_summary(tmp_path / "results_1")["execution"]["heartbeat"]
        deadline = time.time() + 10
        while time.time() < deadline:
            summary = json.loads((tmp_path / "results_1" / "summary.json").read_text())
            if summary["execution"]["heartbeat"] != first:
                break
            time.sleep(0.2)
        assert summary["execution"]["heartbeat"] != first
        assert summary["status"] == "running"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_based_on_from_the_environment(tmp_path):
    origin = tmp_path / "old" / "results_4"
    proc = run_mode("ok", tmp_path / "new", MAMMOGRAPHY_BASED_ON=f"{origin}::reproduce")
    assert proc.returncode == 0, proc.stderr
    summary = read_summary(tmp_path / "new" / "results_1")
    assert summary["based_on"] == [{"run_dir": str(origin.resolve()), "run_id": "results_4",
                                    "relation": "reproduce"}]
    assert schema_problems(summary) == []


def test_repeated_warnings_are_folded_on_the_terminal_and_all_kept(tmp_path):
    proc = run_mode("repeats", tmp_path)
    assert proc.returncode == 0, proc.stderr
    terminal = proc.stdout + proc.stderr
    assert terminal.count("empty file (0 bytes)") == 3 + 1  # three shown, and the fold line
    assert "… 17 more like this (every one is in run.log): excluded /data/archive/A0" in terminal
    assert "a different warning" in terminal
    log = (tmp_path / "results_1" / "run.log").read_text()
    assert all(f"WARNING: excluded /data/archive/A{i}/L_CC.dcm" in log for i in range(20))
    assert read_summary(tmp_path / "results_1")["warnings"]["count"] == 21


def test_warning_kinds_ignore_numbers_quotes_and_paths():
    from mammography.record.repeats import RepeatFolder, warning_kind

    assert warning_kind("Not paired: results_1 and results_2 (78 and 80 images)") == \
        warning_kind("Not paired: results_3 and fold_2 (9 and 12 images)")
    assert warning_kind("file 'a.dcm' unreadable") == warning_kind("file 'b.dcm' unreadable")
    assert warning_kind("class A missing") != warning_kind("class A present")
    folder = RepeatFolder(shown=2)
    assert [folder.admit(f"row {i} bad") for i in range(4)] == [True, True, False, False]
    assert folder.folded_lines() == ["… 2 more like this (every one is in run.log): row 0 bad"]
