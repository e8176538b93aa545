"""Resumable cross-validation: the fold plan (fast, on crafted run directories) and
kills from outside, resumed, against uninterrupted runs (slow, end to end via the CLI).

The end-to-end cases train a 3-fold CV of ``test_efficientnet`` at 64 px on 63
synthetic images (3 epochs, ~0.1 s each on CPU); each kill waits until the fold
it interrupts has recorded a finished epoch (its checkpoint is written just
before), so the resumed fold has something to continue from.
"""

from __future__ import annotations

import hashlib
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

from mammography.config.runs import RunsLineageConfig, RunsListConfig
from mammography.config.train import TrainConfig
from mammography.engine.cv.resume import metrics_digest, recorded_plan, resume_plan
from mammography.engine.train.resume import check_not_running
from mammography.engine.trained_run import TrainedRun
from mammography.errors import DataError, InputError
from mammography.record.contract import CV_RECORD
from mammography.record.document import now_iso
from mammography.record.processes import pid_alive, threads_per_worker
from mammography.record.reporter import CollectingReporter
from mammography.record.view import RunView
from mammography.runs.lineage import run_lineage
from mammography.runs.listing import run_list
from tests.engine.model_runs import write_model_run
from tests.helpers import child_env, read_summary, run_cli

# ------------------------------------------------------------------ fold plan (fast)

SPLITS = ("image_path,accession,patient,view,laterality,label,split\n"
          "a/1.dcm,a,p1,CC,L,1,fold_1\nb/1.dcm,b,p2,CC,L,2,fold_2\nc/1.dcm,c,p3,CC,L,3,fold_3\n")


class PlanRun:
    """What planning needs of the new parent run: its directory and warnings."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True)
        self.dir, self.warnings = directory, []

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def summary(run_dir: Path, *, status: str, fold: int | None = None, **extra) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    document = {"command": "train-density", "experiment_type": "density_classification",
                "run_id": "results_1", "status": status,
                "hyperparameters": {"cv_folds": 3},
                "execution": {"pid": 999_999_999, "hostname": socket.gethostname(),
                              "heartbeat": now_iso()},
                "integration": {"cv_fold": fold}, **extra}
    (run_dir / "summary.json").write_text(json.dumps(document))
    return run_dir


def crafted_parent(root: Path) -> Path:
    """A crashed 3-fold parent: fold 1 completed, fold 2 stopped with a checkpoint,
    fold 3 never started."""
    parent = summary(root / "results_1", status="running")
    (parent / "splits.csv").write_text(SPLITS)
    done = summary(parent / "fold_1" / "results", status="completed", fold=1)
    (done / "metrics").mkdir()
    (done / "metrics" / "val_metrics.json").write_text('{"best_epoch": 2}')
    stopped = summary(parent / "fold_2" / "results", status="interrupted", fold=2)
    (stopped / "last_checkpoint.pt").write_bytes(b"checkpoint")
    return parent


def plan_of(parent: Path, new: Path) -> tuple[list, PlanRun]:
    run = PlanRun(new)
    return resume_plan(TrainedRun.open(parent), TrainConfig(resume=parent, cv_folds=3).cv_folds,
                       run), run


def test_completed_folds_are_reused_the_stopped_one_continued_the_rest_trained(tmp_path):
    parent = crafted_parent(tmp_path)
    plans, run = plan_of(parent, tmp_path / "results_2")
    assert [p.origin for p in plans] == ["reused", "continued", "trained"]
    assert plans[0].source == parent / "fold_1" / "results" and plans[0].run_id == "results_1"
    assert plans[0].metrics_sha256 == hashlib.sha256(b'{"best_epoch": 2}').hexdigest()
    assert plans[1].source == parent / "fold_2" / "results"
    # the folds are the recorded ones: splits.csv byte for byte
    assert (run.dir / "splits.csv").read_bytes() == (parent / "splits.csv").read_bytes()
    # a reused fold is referenced where it is; the others run in the new parent
    assert plans[0].run_dir(run.dir) == parent / "fold_1" / "results"
    assert plans[2].run_dir(run.dir) == run.dir / "fold_3" / "results"
    record = [p.record(run.dir) for p in plans]
    assert record[0]["path"] == "../results_1/fold_1/results"
    assert record[1]["continued_from"] == str((parent / "fold_2" / "results").resolve())
    # a worker reads the plan back from the parent's summary
    document = {CV_RECORD: {"folds": record}}
    assert [recorded_plan(run.dir, document, k) for k in (1, 2, 3)] == plans


def test_a_resumed_resume_finds_the_folds_its_parent_reused(tmp_path):
    first = crafted_parent(tmp_path)
    plans, second_run = plan_of(first, tmp_path / "results_2")
    second = summary(second_run.dir, status="running", **{CV_RECORD: {
        "folds": [p.record(second_run.dir) for p in plans]}})
    # in results_2 fold 2 completed (continued), fold 3 never started
    done = summary(second / "fold_2" / "results", status="completed", fold=2)
    (done / "metrics").mkdir()
    (done / "metrics" / "val_metrics.json").write_text("{}")
    third, _ = plan_of(second, tmp_path / "results_3")
    assert [p.origin for p in third] == ["reused", "reused", "trained"]
    assert third[0].source == first / "fold_1" / "results"  # the run itself, not results_2
    assert third[1].source == second / "fold_2" / "results"
    # a referenced fold whose metrics changed since is refused
    (first / "fold_1" / "results" / "metrics" / "val_metrics.json").write_text('{"x": 1}')
    with pytest.raises(DataError, match="changed since it was referenced"):
        plan_of(second, tmp_path / "results_4")


def test_eval_export_of_a_resumed_parent_finds_the_folds_it_reused(tmp_path):
    from mammography.engine.trained_run import open_models

    first = crafted_parent(tmp_path)
    plans, second_run = plan_of(first, tmp_path / "results_2")
    second = summary(second_run.dir, status="completed", results={"num_folds": 3},
                     **{CV_RECORD: {"folds": [p.record(second_run.dir) for p in plans]}})
    (second / "cv_summary.json").write_text("{}")
    for k in (2, 3):
        summary(second / f"fold_{k}" / "results", status="completed", fold=k)
    model = write_model_run(tmp_path / "model") / "best_model.pt"
    for fold in (first / "fold_1" / "results", second / "fold_2" / "results",
                 second / "fold_3" / "results"):
        shutil.copy2(model, fold / "best_model.pt")
    sources = open_models([second], CollectingReporter())
    assert [s.run_dir for s in sources] == [first / "fold_1" / "results",
                                            second / "fold_2" / "results",
                                            second / "fold_3" / "results"]
    assert [s.label for s in sources] == ["results_1-fold_1", "results_1-fold_2",
                                          "results_1-fold_3"]
    # a reused fold that is gone: refused, not evaluated as a 2-fold CV
    shutil.rmtree(first / "fold_1")
    with pytest.raises(InputError, match="the runs of folds 1 are gone"):
        open_models([second], CollectingReporter())


def test_a_fold_without_checkpoint_trains_again_and_splits_must_match(tmp_path):
    parent = crafted_parent(tmp_path)
    (parent / "fold_2" / "results" / "last_checkpoint.pt").unlink()
    plans, _ = plan_of(parent, tmp_path / "results_2")
    assert [p.origin for p in plans] == ["reused", "trained", "trained"]
    (parent / "splits.csv").write_text(SPLITS.replace("fold_3", "fold_2"))
    with pytest.raises(DataError, match="not the 3 folds its settings name"):
        plan_of(parent, tmp_path / "results_3")


def test_a_run_whose_process_lives_is_not_resumed(tmp_path):
    live = summary(tmp_path / "live", status="running",
                   execution={"pid": os.getpid(), "hostname": socket.gethostname(),
                              "heartbeat": now_iso()})
    with pytest.raises(InputError, match="is still running"):
        check_not_running(RunView.read(live))
    gone = summary(tmp_path / "gone", status="running")  # pid 999999999 is gone
    check_not_running(RunView.read(gone))


# ------------------------------------------------------------------ end to end (slow)

TINY = ["--arch", "test_efficientnet", "--no-pretrained", "--img-size", "64",
        "--batch-size", "16", "--num-workers", "0", "--epochs", "3",
        "--early-stop-patience", "0", "--cv-folds", "3"]
# Timings differ between runs; everything else in a history row must not.
TIMING = ("seconds", "per_second")
PROVENANCE = ("summary_path", "origin", "run_dir", "run_id", "metrics_sha256")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """16 exams, 63 images, 12 patients (128x96): a 3-fold CV in seconds."""
    from mammography.config.synth import SynthConfig
    from mammography.data.synthetic import generate_dataset

    out = tmp_path_factory.mktemp("cv_resume") / "data"
    generate_dataset(SynthConfig(out=out, exams=16, seed=3, size="128x96"),
                     log=lambda message: None)
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    # One thread per process, in the parent and in every worker alike.
    return child_env(MAMMOGRAPHY_CACHE_DIR=str(tmp_path_factory.mktemp("cache")),
                     OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def train_args(dataset: Path, outdir: Path, *extra: str) -> list[str]:
    return ["train-density", "--csv", str(dataset / "classificacao.csv"), "--dicom-root",
            str(dataset / "archive"), *TINY, "--outdir", str(outdir), *extra]


def straight_run(dataset: Path, env: dict, outdir: Path, *extra: str) -> Path:
    proc = run_cli(*train_args(dataset, outdir, *extra), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return outdir / "results_1"


@pytest.fixture(scope="module")
def reference(dataset, env, tmp_path_factory):
    """The uninterrupted 3-fold run, folds one after another."""
    return straight_run(dataset, env, tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="module")
def reference_parallel(dataset, env, tmp_path_factory, reference):
    """The uninterrupted run as 2 workers compute it. A worker gets its share of the
    cores; with one thread each (2 cores) that is the sequential run's thread count,
    and so exactly its numbers: the sequential reference serves."""
    if threads_per_worker(2) == 1:
        return reference
    return straight_run(dataset, env, tmp_path_factory.mktemp("reference_parallel"),
                        "--cv-workers", "2")


def fold_summary(parent: Path, fold: int) -> dict | None:
    try:
        return read_summary(parent / f"fold_{fold}" / "results")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def epochs_done(document: dict | None) -> int:
    """Epochs a fold has recorded as finished (its checkpoint is saved before)."""
    return int(((document or {}).get("results") or {}).get("epochs_completed") or 0)


def start_and_kill(dataset: Path, env: dict, outdir: Path, signum: int, ready, *extra: str
                   ) -> subprocess.Popen:
    """Start a CV, send ``signum`` (from outside) once ``ready(parent)``; returns the process."""
    proc = subprocess.Popen([sys.executable, "-m", "mammography",
                             *train_args(dataset, outdir, *extra)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = outdir / "results_1"
    deadline = time.monotonic() + 300
    while not ready(parent):
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before the kill"
        assert time.monotonic() < deadline, "the kill moment never came"
        time.sleep(0.005)
    proc.send_signal(signum)
    proc.wait(timeout=120)
    return proc


def during_fold_2(parent: Path) -> bool:
    document = fold_summary(parent, 2)
    return document is not None and document["status"] == "running" and \
        epochs_done(document) >= 1


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``directory`` with its size and modification time."""
    return {str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


def history(run_dir: Path) -> list[dict]:
    rows = json.loads((run_dir / "train_history.json").read_text())
    return [{k: v for k, v in row.items() if not any(t in k for t in TIMING)} for row in rows]


def assert_same_cv(resumed: Path, reference: Path) -> dict:
    """Identical per-fold results (exact floats) and aggregates; returns the resumed
    cv_summary.json."""
    new = json.loads((resumed / "cv_summary.json").read_text())
    old = json.loads((reference / "cv_summary.json").read_text())
    for key in ("aggregated_metrics", "aggregated_metrics_exam", "num_folds", "base_seed"):
        assert new[key] == old[key], key
    strip = [[{k: v for k, v in fold.items() if k not in PROVENANCE}
              for fold in cv["fold_details"]] for cv in (new, old)]
    assert strip[0] == strip[1]
    for fold_new, fold_old in zip(new["fold_details"], old["fold_details"], strict=True):
        run_new = (resumed / fold_new["summary_path"]).parent
        run_old = (reference / fold_old["summary_path"]).parent
        for name in ("metrics/val_metrics.json", "val_predictions.csv"):
            assert (run_new / name).read_bytes() == (run_old / name).read_bytes(), name
        assert history(run_new) == history(run_old)
    assert (resumed / "splits.csv").read_bytes() == (reference / "splits.csv").read_bytes()
    return new


def assert_continued(fold_run: Path, source: Path) -> int:
    """The fold went on from ``source``'s checkpoint, not from epoch 1; returns the epoch
    it resumed after."""
    log = (fold_run / "run.log").read_text()
    resumed = [line for line in log.splitlines() if f"Resuming from {source} after epoch"
               in line]
    assert resumed, log[-2000:]
    after = int(resumed[0].split("after epoch ")[1].split()[0])
    assert after >= 1 and "Epoch 1/3" not in log
    # the next epoch, or none (a fold killed while it wrote its results after the last)
    assert f"Epoch {after + 1}/3" in log if after < 3 else "Epoch " not in log
    document = read_summary(fold_run)
    assert document["based_on"] == [{"run_dir": str(source.resolve()), "run_id": "results_1",
                                     "relation": "resume",
                                     "git_commit": document["git_commit"]}]
    return after


@pytest.mark.slow
def test_sigkill_during_fold_2_then_resume_equals_an_uninterrupted_run(dataset, env, tmp_path,
                                                                       reference, capsys,
                                                                       monkeypatch):
    outdir = tmp_path / "out"
    proc = start_and_kill(dataset, env, outdir, signal.SIGKILL, during_fold_2)
    assert proc.returncode == -signal.SIGKILL
    killed = outdir / "results_1"
    fold_1 = killed / "fold_1" / "results"
    before = snapshot(fold_1)
    run_list(RunsListConfig(roots=[outdir], json=True))
    listed = {row["path"]: row for row in json.loads(capsys.readouterr().out)}
    progress = listed[str(killed)]["cv_progress"]
    assert listed[str(killed)]["status"] == "crashed" and progress["done"] == [1]
    assert progress["resume_command"] == f"mammography train-density --resume {killed}"

    resumed = run_cli("train-density", "--resume", killed, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    new = outdir / "results_2"  # a new parent next to the old one; the old one untouched
    cv = assert_same_cv(new, reference)
    # fold 1: referenced, not retrained, not copied
    assert snapshot(fold_1) == before
    assert not (new / "fold_1").exists()
    log = (new / "run.log").read_text()
    assert "=== Fold 1/3 ===" not in log and "Fold 1/3: completed in" in log
    detail = cv["fold_details"][0]
    assert (detail["origin"], detail["run_dir"], detail["run_id"]) == (
        "reused", str(fold_1.resolve()), "results_1")
    assert detail["metrics_sha256"] == metrics_digest(fold_1)
    assert [f["origin"] for f in cv["fold_details"]] == ["reused", "continued", "trained"]
    # fold 2: continued from its checkpoint as the new parent's fold_2/results
    assert_continued(new / "fold_2" / "results", killed / "fold_2" / "results")
    assert read_summary(new / "fold_2" / "results")["integration"]["cv_fold"] == 2
    # the new parent: based on the old one, which `runs lineage` shows
    parent = read_summary(new)
    assert parent["based_on"][0]["run_dir"] == str(killed.resolve())
    assert parent["based_on"][0]["relation"] == "resume"
    assert [f["origin"] for f in parent["cross_validation"]["folds"]] == [
        "reused", "continued", "trained"]
    assert parent["cv_mean_kappa"] == cv["aggregated_metrics"]["kappa"]["mean"]
    monkeypatch.setenv("COLUMNS", "1000")  # one line per run, however long the tmp path
    run_lineage(RunsLineageConfig(run=new))
    lineage = capsys.readouterr().out
    assert f"resume ← {killed}" in lineage


def after_fold_1_during_another(parent: Path) -> bool:
    """Fold 1 completed, and a fold still running is between two epochs."""
    if (fold_summary(parent, 1) or {}).get("status") != "completed":
        return False
    return any((doc := fold_summary(parent, k)) is not None and doc["status"] == "running"
               and 1 <= epochs_done(doc) < 3 for k in (2, 3))


def wait_until_folds_stop(parent: Path, timeout: float = 120) -> None:
    """The workers of a killed parent get SIGTERM from the kernel: wait until no fold's
    process is alive (a resume refuses a fold that is still being written)."""
    deadline = time.monotonic() + timeout
    while any((doc := fold_summary(parent, k)) is not None and doc["status"] == "running"
              and pid_alive(doc["execution"]["pid"]) for k in (1, 2, 3)):
        assert time.monotonic() < deadline, "a worker outlived its killed parent"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def killed_parallel(dataset, env, tmp_path_factory):
    """A CV in 2 workers whose parent was SIGKILLed after fold 1 completed, while
    another fold was training."""
    outdir = tmp_path_factory.mktemp("killed_parallel")
    proc = start_and_kill(dataset, env, outdir, signal.SIGKILL, after_fold_1_during_another,
                          "--cv-workers", "2")
    assert proc.returncode == -signal.SIGKILL
    wait_until_folds_stop(outdir / "results_1")
    return outdir / "results_1"


def assert_parallel_resume(killed: Path, new: Path, reference: Path) -> None:
    states = {k: fold_summary(killed, k) for k in (1, 2, 3)}
    done = [k for k, doc in states.items() if doc and doc["status"] == "completed"]
    stopped = [k for k, doc in states.items() if doc and doc["status"] != "completed"]
    # the kernel's SIGTERM reached the workers: they checkpointed and recorded it
    assert all(states[k]["status"] == "interrupted" for k in stopped), states
    assert 1 in done and stopped, states
    cv = assert_same_cv(new, reference)
    origins = {f["fold"]: f["origin"] for f in cv["fold_details"]}
    for k in done:
        assert origins[k] == "reused" and not (new / f"fold_{k}").exists()
    for k in stopped:
        assert origins[k] == "continued"
        if epochs_done(states[k]) >= 1:
            assert_continued(new / f"fold_{k}" / "results", killed / f"fold_{k}" / "results")
    log = (new / "run.log").read_text()
    assert not any(f"[fold {k}] Epoch" in log for k in done)


@pytest.mark.slow
def test_sigkill_with_parallel_folds_then_resume_in_parallel(killed_parallel, env, tmp_path,
                                                            reference_parallel):
    before = snapshot(killed_parallel)
    out = tmp_path / "resumed"
    resumed = run_cli("train-density", "--resume", killed_parallel, "--outdir", out,
                      "--cv-workers", "2", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_parallel_resume(killed_parallel, out / "results_1", reference_parallel)
    assert snapshot(killed_parallel) == before  # nothing of the old parent was written


@pytest.mark.slow
def test_resume_on_ray(killed_parallel, env, tmp_path, reference_parallel):
    pytest.importorskip("ray")
    out = tmp_path / "resumed"
    resumed = run_cli("train-density", "--resume", killed_parallel, "--outdir", out,
                      "--cv-workers", "2", "--cv-engine", "ray", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_parallel_resume(killed_parallel, out / "results_1", reference_parallel)


@pytest.mark.slow
def test_sigint_during_fold_2_then_resume_that_fold_on_its_own(dataset, env, tmp_path,
                                                              reference):
    outdir = tmp_path / "out"
    proc = start_and_kill(dataset, env, outdir, signal.SIGINT, during_fold_2)
    assert proc.returncode == 130
    killed = outdir / "results_1"
    assert read_summary(killed)["status"] == "interrupted"
    assert (f"Cross-validation stopped; continue it with: mammography train-density "
            f"--resume {killed}") in (killed / "run.log").read_text()
    fold = killed / "fold_2" / "results"
    assert read_summary(fold)["status"] == "interrupted"

    # exactly what the README recommends for one fold: it continues as a single run
    resumed = run_cli("train-density", "--resume", fold, "--outdir", tmp_path / "fold",
                      env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    single = tmp_path / "fold" / "results_1"
    assert not list(single.glob("fold_*"))
    document = read_summary(single)
    assert document["integration"]["cv_fold"] == 2
    assert document["hyperparameters"]["cv_folds"] == 3  # as the fold recorded it
    assert_continued(single, fold)
    reference_fold = reference / "fold_2" / "results"
    assert history(single) == history(reference_fold)
    for name in ("metrics/val_metrics.json", "val_predictions.csv"):
        assert (single / name).read_bytes() == (reference_fold / name).read_bytes(), name
    assert (single / "splits.csv").read_bytes() == (reference_fold / "splits.csv").read_bytes()


@pytest.mark.slow
def test_resume_refused_when_the_data_changed(dataset, env, tmp_path, reference):
    changed = tmp_path / "data"
    shutil.copytree(dataset, changed)
    lines = (changed / "classificacao.csv").read_text().splitlines()
    accession, label, *rest = lines[1].split(",")
    lines[1] = ",".join([accession, "1" if label != "1" else "2", *rest])
    (changed / "classificacao.csv").write_text("\n".join(lines) + "\n")
    # A completed cross-validation has nothing to continue (refused up front); the
    # reference, as if it had been stopped, still has.
    stopped = tmp_path / "stopped" / "results_1"
    shutil.copytree(reference, stopped)
    document = read_summary(stopped)
    document["status"] = "interrupted"
    (stopped / "summary.json").write_text(json.dumps(document))
    out = tmp_path / "out"
    proc = run_cli("train-density", "--resume", stopped, "--csv",
                   changed / "classificacao.csv", "--dicom-root", changed / "archive",
                   "--outdir", out, env=env)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    recorded = read_summary(reference)["data_config"]["manifest_digest"]
    now = json.loads((out / "results_1" / "data_manifest.json").read_text())["digest"]
    assert now != recorded
    message = " ".join(proc.stderr.split())
    assert (f"the data changed since that run (data manifest digest {now} now, {recorded} "
            "in the run: the CSV ") in message and "classificacao.csv changed)" in message
    document = read_summary(out / "results_1")
    assert document["status"] == "failed" and document["execution"]["exit_code"] == 2
    assert not list(out.glob("results_*/fold_*")) and not (out / "results_1" / "splits.csv"
                                                           ).exists()  # nothing trained
