"""Faults: SIGKILL and SIGTERM at random moments, a failing DataLoader worker,
concurrent cache builders and runs, kills in the middle of summary/cache writes.

Kill moments are random; the seed is in every failure message and
``MAMMOGRAPHY_RELIABILITY_SEED`` replays it. ``MAMMOGRAPHY_RELIABILITY_LONG=1``
raises the number of kills (docs/reliability.md has the figures).
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mammography.record.reporter import CollectingReporter
from mammography.record.schema import schema_problems
from tests.reliability.common import (
    LONG,
    SCRIPTS,
    SEED,
    TINY,
    budget,
    cli_args,
    data_args,
    log_lines,
    read_json,
    rel_env,
    runs_list,
)


class Lines:
    """A child's merged stdout/stderr, read line by line in the background."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._done = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._done = True
            self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = 300) -> list[str]:
        """Every line up to and including the first containing ``text``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for i, line in enumerate(self.lines):
                    if text in line:
                        return list(self.lines[: i + 1])
                remaining = deadline - time.monotonic()
                if self._done or remaining <= 0:
                    raise AssertionError(f"never printed {text!r}:\n" +
                                         "\n".join(self.lines[-40:]))
                self._changed.wait(remaining)

    def drain(self, timeout: float = 60) -> list[str]:
        """All lines, once every writer (the tee) has closed the pipe."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the output pipe never closed (a process hangs)"
        return list(self.lines)


def start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, Lines]:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, errors="replace")
    return proc, Lines(proc)


def assert_log_has(run_dir: Path, printed: list[str], context: str) -> None:
    """Every line the process printed (progress bars aside) is in run.log, in order."""
    logged = [line.rstrip() for line in log_lines(run_dir)]
    position = 0
    for line in (line.rstrip() for line in printed):
        if not line or "━" in line or "\r" in line:
            continue
        try:
            position = logged.index(line, position) + 1
        except ValueError:
            raise AssertionError(f"{context}: printed but not in run.log: {line!r}") from None


def assert_crashed_record(outdir: Path, run_dir: Path, context: str) -> dict:
    summary = read_json(run_dir / "summary.json")  # parses: atomic rewrites
    assert summary["status"] == "running", context
    assert schema_problems(summary) == [], context
    assert runs_list(outdir)[run_dir.name]["status"] == "crashed", context
    return summary


def assert_checkpoints_whole(run_dir: Path, context: str) -> None:
    """A checkpoint that exists loads (weights only). Temp files a kill leaves
    behind ('.best_model.pt.*.tmp') have names that nothing reads."""
    for name in ("best_model.pt", "last_checkpoint.pt"):
        if (run_dir / name).exists():
            assert "state_dict" in torch.load(run_dir / name, weights_only=True), context


# ------------------------------------------------------------------------ SIGKILL
KILLS = {
    # moment: (dataset, what starts the clock, delay range in seconds, epochs).
    # "cache_build" starts when the first cache entry appears: the decoding
    # workers are busy then (the build takes ~1-2 s here).
    "cache_build": ("synthetic", "first cache entry", (0.0, 0.4), 1),
    "data_prep": ("synthetic", "Loading data from", (0.0, 1.5), 1),
    "epoch": ("small", "Epoch 2/3", (0.0, 0.4), 3),
    "checkpoint": ("small", "val_exam_acc", (0.0, 0.03), 3),
}


def kill_plan() -> list[tuple[str, int]]:
    """(moment, attempt): one kill per moment, or five in the long budget (the
    data_prep moment, which mostly repeats the others, only in the long one)."""
    return [(moment, k) for moment in KILLS for k in range(budget(1, 5))
            if moment != "data_prep" or LONG]


def _wait_for_cache_entry(cache: Path, lines: Lines, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not any(cache.glob("images/*/*/*.mgc")):
        assert time.monotonic() < deadline and lines.proc.poll() is None, \
            "\n".join(lines.lines[-40:])
        time.sleep(0.005)


@pytest.mark.slow
@pytest.mark.parametrize("moment, attempt", kill_plan())
def test_sigkill_at_a_random_moment(small_dataset, synthetic_dataset, tmp_path, moment,
                                    attempt):
    dataset_name, marker, (low, high), epochs = KILLS[moment]
    dataset = synthetic_dataset if dataset_name == "synthetic" else small_dataset
    rng = random.Random(f"{SEED}-{moment}-{attempt}")
    delay = rng.uniform(low, high)
    context = f"SIGKILL {delay:.3f}s after {marker!r} (seed {SEED})"
    env = rel_env(tmp_path / "cache")
    outdir = tmp_path / "out"
    proc, lines = start(cli_args("train-density", *data_args(dataset), *TINY, "--epochs",
                                 epochs, "--workers", "2", "--outdir", outdir), env)
    if moment == "cache_build":
        _wait_for_cache_entry(tmp_path / "cache", lines)
    else:
        lines.wait_for(marker)
    time.sleep(delay)
    printed = list(lines.lines)  # what the process had reported when it was killed
    proc.kill()
    assert proc.wait(timeout=60) == -signal.SIGKILL, context
    lines.drain()
    run_dir = outdir / "results_1"
    assert_log_has(run_dir, printed, context)
    assert_crashed_record(outdir, run_dir, context)
    assert_checkpoints_whole(run_dir, context)
    if moment in ("cache_build", "data_prep"):
        _assert_cache_consistent(dataset, env, context)
        return
    assert (run_dir / "last_checkpoint.pt").is_file(), context  # written before epoch 1
    if moment == "epoch" and not LONG:
        return  # resuming costs a run; the checkpoint kill and SIGTERM tests resume
    resumed = subprocess.run(cli_args("train-density", "--resume", run_dir), env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, f"{context}: {resumed.stderr[-3000:]}"
    new = read_json(outdir / "results_2" / "summary.json")
    assert new["status"] == "completed" and new["based_on"][0]["relation"] == "resume"
    history = read_json(outdir / "results_2" / "train_history.json")
    assert [row["epoch"] for row in history] == list(range(1, epochs + 1)), context


def _assert_cache_consistent(dataset: Path, env: dict[str, str], context: str) -> None:
    """After a kill mid-build the cache is still sound: a new build reuses or rebuilds
    every entry, and each one equals a fresh decode."""
    from mammography.data.cache import ImageCache
    from mammography.data.preprocess import PreprocessSettings, load_preprocessed
    from mammography.data.table.discovery import find_dicoms

    proc = subprocess.run(cli_args("data", "cache", *data_args(dataset), "--img-size", "64",
                                   "--workers", "2"),
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{context}: {proc.stderr[-3000:]}"
    settings = PreprocessSettings(img_size=64)
    cache = ImageCache(settings, Path(env["MAMMOGRAPHY_CACHE_DIR"]))
    sources = find_dicoms(dataset / "archive")
    for source in sources[::3]:  # a third of them: enough, and cheap
        cached = cache.read(source)
        if cached is not None:  # class-5 exams are not cached
            assert np.array_equal(cached, load_preprocessed(source, settings)[0]), context


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_resumes(small_dataset, tmp_path):
    """SIGTERM mid-epoch with DataLoader workers: interrupted, exit 130, promptly,
    and --resume completes the run."""
    env = rel_env(tmp_path / "cache")
    outdir = tmp_path / "out"
    proc, lines = start(cli_args("train-density", *data_args(small_dataset), *TINY,
                                 "--epochs", "3", "--num-workers", "1", "--outdir", outdir),
                        env)
    lines.wait_for("Epoch 2/3")
    time.sleep(random.Random(SEED).uniform(0.0, 0.3))
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 130
    elapsed = time.monotonic() - sent
    lines.drain()
    run_dir = outdir / "results_1"
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "interrupted" and summary["execution"]["exit_code"] == 130
    assert summary["execution"]["error"]["signal"] == "SIGTERM"
    log = "\n".join(log_lines(run_dir))
    assert "received SIGTERM; stopping at the next safe point" in log
    assert f"--resume {run_dir}" in log
    assert elapsed < 9, f"took {elapsed:.1f}s to stop (loader workers kept the run alive?)"
    resumed = subprocess.run(cli_args("train-density", "--resume", run_dir), env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    history = read_json(outdir / "results_2" / "train_history.json")
    assert [row["epoch"] for row in history] == [1, 2, 3]


@pytest.mark.slow
def test_an_exception_in_a_dataloader_worker_fails_the_run(small_dataset, tmp_path):
    """Exit 1, status failed, the worker's traceback in run.log - and no hang: the
    process is gone within seconds of its last line."""
    env = rel_env(tmp_path / "cache")
    outdir = tmp_path / "out"
    proc, lines = start([sys.executable, str(SCRIPTS / "failing_worker_cli.py"),
                         "train-density", *data_args(small_dataset), *TINY, "--epochs", "2",
                         "--num-workers", "1", "--outdir", str(outdir)], env)
    lines.wait_for("Run results_1 failed")
    ended = time.monotonic()
    assert proc.wait(timeout=120) == 1
    lines.drain()
    tail = time.monotonic() - ended
    run_dir = outdir / "results_1"
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "failed" and summary["execution"]["exit_code"] == 1
    assert "DataLoader worker" in summary["execution"]["error"]["message"]
    log = "\n".join(log_lines(run_dir))
    assert "Caught OSError in DataLoader worker process 0" in log
    assert "Original Traceback (most recent call last)" in log
    assert "OSError: simulated unreadable cache entry" in log
    assert tail < 8, f"{tail:.1f}s between the last line and the exit"


# ------------------------------------------------------------------- concurrency
@pytest.mark.slow
def test_two_cache_builders_at_once(synthetic_dataset, tmp_path):
    """Two `data cache` processes on the same data and cache: both succeed, and the
    cache they leave is complete and verified (tests/data/test_cache.py does the
    same below the CLI)."""
    env = rel_env(tmp_path / "cache")
    args = cli_args("data", "cache", *data_args(synthetic_dataset), "--img-size", "64",
                    "--workers", "2")
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
        assert "Cache ready: 186 images" in out
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert "186 reused, 0 decoded, 0 regenerated, 0 failed" in again.stdout, again.stdout
    assert not list((tmp_path / "cache").rglob(".tmp-*"))


@pytest.mark.slow
def test_32_concurrent_runs_into_one_outdir(tmp_path):
    """32 processes, each a full run lifecycle writing 200 lines, all at once:
    32 distinct results_N, every run.log complete, every summary valid."""
    count, lines = 32, 200
    outdir = tmp_path / "out"
    procs = [subprocess.Popen([sys.executable, str(SCRIPTS / "run_one.py"), str(outdir),
                               str(tag), str(lines)], env=rel_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for tag in range(count)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    dirs = sorted(outdir.iterdir(), key=lambda p: int(p.name.split("_")[1]))
    assert [d.name for d in dirs] == [f"results_{n}" for n in range(1, count + 1)]
    tags = set()
    for run_dir in dirs:
        summary = read_json(run_dir / "summary.json")
        assert summary["status"] == "completed" and schema_problems(summary) == []
        tag = summary["results"]["tag"]
        tags.add(tag)
        body = [line for line in log_lines(run_dir) if line.startswith("process ")]
        assert body == [f"process {tag} line {i}" for i in range(lines)], run_dir
    assert tags == set(range(count))


# ------------------------------------------------------ kills in the middle of writes
def _kill_loop(mode: str, folder: Path, kills: int, rng: random.Random) -> int:
    """Start the writer, kill it at a random moment, ``kills`` times; returns how many
    kills left a temp file behind (i.e. landed in the middle of a write)."""
    mid_write = 0
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, str(SCRIPTS / "write_loop.py"), mode,
                                 str(folder)], stdout=subprocess.PIPE, text=True,
                                env=rel_env())
        assert proc.stdout.readline().strip() == "READY"
        time.sleep(rng.uniform(0.0, 0.25))
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
        temps = [p for p in folder.rglob("*") if p.name.endswith(".tmp") or
                 p.name.startswith(".tmp-")]
        mid_write += bool(temps)
        _CHECKS[mode](folder)  # what a reader finds right after the kill
        for temp in temps:  # as a crashed writer's temp files would linger; remove
            temp.unlink()
    return mid_write


def _check_summary(folder: Path) -> None:
    data = json.loads((folder / "summary.json").read_text())
    assert data["status"] == "running" and len(data["blob"]) == 500


def _check_cache(folder: Path) -> None:
    from mammography.data.cache import ImageCache
    from mammography.data.preprocess import PreprocessSettings

    cache = ImageCache(PreprocessSettings(img_size=512), folder / "cache")
    for source in sorted(folder.glob("src_*.dcm")):
        array = cache.read(source)  # CacheEntryError here = a half-written entry trusted
        assert array is None or array.shape == (512, 512)


_CHECKS = {"summary": _check_summary, "cache": _check_cache}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["summary", "cache"])
def test_kills_during_writes_never_leave_a_trusted_half_file(tmp_path, mode):
    from tests.reliability.common import small_mammogram

    rng = random.Random(f"{SEED}-{mode}")
    if mode == "cache":
        for i in range(3):
            small_mammogram(tmp_path / f"src_{i}.dcm")
    kills = budget(15, 300) if mode == "summary" else budget(8, 100)
    mid_write = _kill_loop(mode, tmp_path, kills, rng)
    print(f"{mode}: {kills} kills, {mid_write} in the middle of a write (seed {SEED})")
    if mode == "cache":
        # The build after the kills: every entry verifies (reused) or is rebuilt.
        from mammography.data.cache import ImageCache
        from mammography.data.preprocess import PreprocessSettings

        cache = ImageCache(PreprocessSettings(img_size=512), tmp_path / "cache")
        sources = sorted(tmp_path.glob("src_*.dcm"))
        report = cache.build(sources, workers=1, progress=False, out=CollectingReporter())
        assert report.failed == {} and report.reused + report.built == len(sources)
        # And a damaged entry (as a dying disk, not a kill, could leave) is detected
        # and regenerated, never served.
        entry = cache.entry_path(sources[0])
        entry.write_bytes(entry.read_bytes()[:1000])
        out = CollectingReporter()
        messages = out.lines
        report = cache.build(sources, workers=1, progress=False, out=out)
        assert report.regenerated == 1 and "truncation detected for 1 samples" in messages[0]
        assert cache.read(sources[0]) is not None
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
