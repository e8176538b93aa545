"""Cross-validation folds in parallel: one process per fold, locally or on Ray.

The parent CV run writes ``splits.csv`` (every image's fold) and then starts
one worker per ``--cv-workers`` slot — ``python -m mammography.engine.cv_parallel
PARENT K [K ...]`` — as a local process or inside a Ray task; each worker
trains its share of the folds one after another (fold w, w + workers, ...),
so a process's start-up (torch and timm imports: ~4 s here) is paid once per
worker, not once per fold. A worker re-reads the parent's ``config.yaml``,
prepares the same data (the cache makes this cheap; the manifest digest must
match the parent's), and trains fold K as a child run ``PARENT/fold_K/results``
with the parent's provenance: the same layout and ``cv_summary.json`` as
sequential folds. Worker output reaches the parent's terminal and run.log
with a ``[fold K]`` prefix: the worker announces each fold with a marker line
that the parent reads and drops.

If the parent is stopped (Ctrl-C, SIGTERM) its workers get SIGTERM and stop
at their next safe point; no fold outlives its parent.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from mammography.errors import DataError


def fold_indices(parent_dir: Path, paths: list[Path], fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices into ``paths`` from the parent's splits.csv."""
    split_of: dict[str, str] = {}
    with (parent_dir / "splits.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            split_of[row["image_path"]] = row["split"]
    train, val = [], []
    summary_root = _dicom_root(parent_dir)
    for i, path in enumerate(paths):
        key = str(path.relative_to(summary_root)) if summary_root and path.is_relative_to(
            summary_root) else str(path)
        split = split_of.get(key)
        if split is None:
            raise DataError(f"{path} is not in {parent_dir / 'splits.csv'}: the data changed "
                            "since the cross-validation started.")
        (val if split == f"fold_{fold}" else train).append(i)
    return np.asarray(train, dtype=np.int64), np.asarray(val, dtype=np.int64)


def _dicom_root(parent_dir: Path) -> Path | None:
    from mammography.run.jsonio import read_json

    root = read_json(parent_dir / "summary.json").get("data_config", {}).get("dicom_root")
    return Path(root) if root else None


def run_fold(parent_dir: Path, fold: int) -> int:
    """Worker body: train fold ``fold`` of the CV run in ``parent_dir``."""
    from mammography.cli.execute import resolve_config
    from mammography.config.train import TrainConfig
    from mammography.data.pipeline import prepare_data
    from mammography.engine.train_density import _headline, _load_fusion, train_split
    from mammography.run.jsonio import read_json
    from mammography.run.lifecycle import Run, RunRef

    cfg = resolve_config(TrainConfig, parent_dir / "config.yaml", {})
    parent = RunRef.load(parent_dir)
    with Run(command="train-density", experiment_type=TrainConfig.EXPERIMENT_TYPE, config=cfg,
             parent=parent, child_name=f"fold_{fold}",
             integration={"cv_fold": fold, "optuna_trial_id": cfg.optuna_trial_id,
                          "ray_trial_name": cfg.ray_trial_name}) as child:
        data = prepare_data(cfg, child.dir, child.log, progress=False)
        expected = read_json(parent_dir / "summary.json")["data_config"]["manifest_digest"]
        if data.manifest_digest != expected:
            raise DataError(f"The data of fold {fold} (digest {data.manifest_digest[:12]}) is "
                            f"not the data of {parent_dir} ({expected[:12]}): it changed while "
                            "the cross-validation ran. Start the run again.")
        child.update(data_config=parent.document.get("data_config", {}))
        child.add_based_on(parent.document.get("based_on"))
        train_idx, val_idx = fold_indices(parent_dir, [r.path for r in data.table.images], fold)
        result = train_split(cfg, child, data, train_idx, val_idx,
                             fusion=_load_fusion(cfg, child, data))
        child.set_results(**_headline(result))
    return child.exit_code or 0


FOLD_MARKER = "@@mammography-cv-fold "  # a worker's "fold K starts here" line


def _command(parent_dir: Path, folds: list[int]) -> list[str]:
    return [sys.executable, "-m", "mammography.engine.cv_parallel", str(parent_dir),
            *map(str, folds)]


def worker_folds(folds: list[int], workers: int) -> list[list[int]]:
    """Folds per worker process, round robin (folds are about the same size)."""
    return [group for w in range(workers) if (group := folds[w::workers])]


class FoldLog:
    """Prefixes a worker's lines with the fold it is on, from its marker lines."""

    def __init__(self, first: int, log: Callable[[str], None]) -> None:
        self.fold, self.log = first, log

    def line(self, text: str) -> None:
        text = text.rstrip()
        if text.startswith(FOLD_MARKER):
            self.fold = int(text[len(FOLD_MARKER):])
        else:
            self.log(f"[fold {self.fold}] {text}")


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    return env


class LocalFolds:
    """Run folds as local subprocesses, ``workers`` at a time."""

    def __init__(self, parent_dir: Path, workers: int, log: Callable[[str], None]) -> None:
        self.parent_dir = parent_dir
        self.workers = workers
        self.log = log
        self.threads = max(1, (os.cpu_count() or 1) // workers)
        self._procs: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def _one(self, folds: list[int]) -> int:
        proc = subprocess.Popen(_command(self.parent_dir, folds), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=_env(self.threads), text=True, bufsize=1,
                                errors="replace")
        with self._lock:
            self._procs[folds[0]] = proc
        assert proc.stdout is not None
        out = FoldLog(folds[0], self.log)
        for line in proc.stdout:
            out.line(line)
        return proc.wait()

    def run(self, folds: list[int]) -> dict[int, int]:
        groups = worker_folds(folds, self.workers)
        self.log(f"Training {len(folds)} folds in {len(groups)} worker processes "
                 f"({self.threads} threads each): "
                 + "; ".join(", ".join(map(str, g)) for g in groups))
        pool = ThreadPoolExecutor(max_workers=len(groups))
        try:
            futures = [(group, pool.submit(self._one, group)) for group in groups]
            return {fold: future.result() for group, future in futures for fold in group}
        finally:
            self.stop()
            pool.shutdown(wait=True, cancel_futures=True)

    def stop(self) -> None:
        """SIGTERM every fold still running (they checkpoint and exit 130)."""
        with self._lock:
            running = [p for p in self._procs.values() if p.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        for proc in running:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def _ray_folds(parent_dir: str, folds: list[int], threads: int) -> tuple[int, str]:
    proc = subprocess.run(_command(Path(parent_dir), folds), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=_env(threads),
                          errors="replace")
    return proc.returncode, proc.stdout


def run_folds_on_ray(parent_dir: Path, folds: list[int], workers: int, address: str | None,
                     log: Callable[[str], None]) -> dict[int, int]:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 **({} if address else {"num_cpus": os.cpu_count()}))
    threads = max(1, (os.cpu_count() or 1) // workers)
    remote = ray.remote(num_cpus=threads)(_ray_folds)
    groups = worker_folds(folds, workers)
    log(f"Training {len(folds)} folds as {len(groups)} Ray tasks ({threads} CPUs each)")
    try:
        refs = [(group, remote.remote(str(parent_dir), group, threads)) for group in groups]
        codes = {}
        for group, ref in refs:
            code, output = ray.get(ref)
            out = FoldLog(group[0], log)
            for line in output.splitlines():
                out.line(line)
            codes.update(dict.fromkeys(group, code))
        return codes
    finally:
        if started_here:
            ray.shutdown()


def main(argv: list[str]) -> int:
    """``PARENT K [K ...]``: train the given folds one after another; stop at the
    first that does not complete (a stopped or failed fold ends the worker)."""
    from mammography.errors import InputError

    parent = Path(argv[0])
    for fold in map(int, argv[1:]):
        print(f"{FOLD_MARKER}{fold}", flush=True)
        try:
            code = run_fold(parent, fold)
        except InputError as exc:  # before the fold's run existed: message only
            print(f"Error: {exc.render()}", file=sys.stderr, flush=True)
            return exc.exit_code
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
