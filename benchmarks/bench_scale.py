"""Scale: start -> first epoch, cold and warm, at >= 50,000 images; `data check` CPU.

An archive of ``--images`` synthetic mammograms (tiny, 64 x 64, so that the
per-image bookkeeping - not decoding - is what a warm start measures) is
written with the project's generator in parallel processes (or reused with
``--archive DIR``), its files read once so the page cache holds them. Then,
for the code before this benchmark's changes (``--baseline REV``, extracted
from git into a temp folder; the same measurement script runs against it) and
for the working tree, each with its own empty cache root:

* **cold**: the first run (headers read, every image decoded into the cache,
  every file hashed);
* **warm**: the second run, over unchanged files.

"Start -> first epoch" is what train-density does before its first training
step, per image, in one process: ``prepare_data`` (labels CSV, DICOM headers,
decode-once cache, data manifest written to a run folder), ``data_config``,
the grouped train/val split and its leakage check, ``splits.csv``, the train
and val datasets and loaders, and the first batch. CPU seconds of the process
and its children (the header and decode pools), user + system; module
imports happen before the clock starts and are printed apart (a constant, not
per image). Goals: warm <= 0.05 ms of CPU per image and >= 10x better than
the baseline's warm start; cold no worse than the baseline's.

`data check`: the CLI (``python -m mammography data check``, default
``--img-size 512``) over ``--check-images`` images of the generator's default
size (320 x 256), for both code versions, CPU of the whole process tree; and
for the working tree once more with the check's cache entries already built
(``data cache`` first), which the check now reuses instead of decoding.

    python benchmarks/bench_scale.py [--images 50000] [--archive DIR] [--keep]
        [--baseline REV | --no-baseline] [--check-images 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: The last commit before the header memo and the lazy cache check.
BASELINE_REV = "f4ef46e"
VIEWS_PER_EXAM = 3.8  # the generator's average (most exams have 4 views, some 2-3)
WARM_GOAL_MS = 0.05
WARM_RATIO_GOAL = 10.0
PRELOADED = ("mammography.data.cache", "mammography.data.dicom.decode",
             "mammography.data.manifest", "mammography.data.grouping",
             "mammography.data.fingerprint", "mammography.data.dicom.header_memo",
             "mammography.data.memo", "sklearn.model_selection", "pydicom.pixels")


# --------------------------------------------------------------------------- archive


def _write_chunk(args: tuple[str, int, int, str, int, int]) -> int:
    from mammography.config.synth import SynthConfig
    from mammography.data.synthetic import generate
    from mammography.data.synthetic.plan import _plan_exams

    out, exams, seed, size, part, parts = args
    config = SynthConfig(out=Path(out), exams=exams, size=size, seed=seed)
    plan = _plan_exams(config)  # deterministic: every process plans the same exams
    return generate._write_exams(Path(out), plan[part::parts], config, "bench-scale")


def build_archive(out: Path, images: int, size: str, seed: int = 7) -> int:
    """A synthetic archive of about ``images`` images, written by all cores (a few
    minutes on 2 cores for 50,000 images, most of it pydicom's writer)."""
    from concurrent.futures import ProcessPoolExecutor

    from mammography.config.synth import SynthConfig
    from mammography.data.synthetic import generate
    from mammography.data.synthetic.plan import _plan_exams

    exams = max(2, round(images / VIEWS_PER_EXAM))
    config = SynthConfig(out=out, exams=exams, size=size, seed=seed)
    out.mkdir(parents=True)
    procs = os.cpu_count() or 1
    parts = procs * 8
    with ProcessPoolExecutor(procs) as pool:
        written = sum(pool.map(_write_chunk, [(str(out), exams, seed, size, part, parts)
                                              for part in range(parts)]))
    generate._write_csv(out / generate.CSV_NAME, _plan_exams(config))
    return written


def read_everything(root: Path) -> None:
    for path in root.rglob("*.dcm"):
        path.read_bytes()


def baseline_source(rev: str, into: Path) -> Path | None:
    """The package at ``rev`` (git archive), or None where git cannot give it."""
    into.mkdir(parents=True)
    try:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "mammography"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"no baseline: git archive {rev} failed ({exc})")
        return None
    return into


# --------------------------------------------------------------------------- child


def cpu_seconds() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
            me.ru_stime + kids.ru_stime)


def child(args: argparse.Namespace) -> None:
    """One start -> first epoch, in this process, with whatever code PYTHONPATH gives."""
    start_cpu, _ = cpu_seconds()
    import numpy as np
    import torch

    from mammography.config.train import TrainConfig
    from mammography.data.dataset import CachedImageDataset
    from mammography.data.grouping import assert_disjoint
    from mammography.data.loading import make_loader
    from mammography.data.pipeline import data_config, prepare_data
    from mammography.data.splits import split_rows, train_val_indices, write_splits_csv

    for name in PRELOADED:  # what the commands import lazily: a constant, not per image
        with contextlib.suppress(ModuleNotFoundError):  # the baseline has no header memo
            importlib.import_module(name)

    class Quiet:
        warnings = 0

        def log(self, message: str = "") -> None:
            pass

        def warn(self, message: str) -> None:
            self.warnings += 1
            print(f"WARNING: {message}", file=sys.stderr)

    archive = Path(args.archive)
    cfg = TrainConfig(csv=archive / "classificacao.csv", dicom_root=archive / "archive",
                      img_size=64, cache_dir=Path(os.environ["MAMMOGRAPHY_CACHE_DIR"]),
                      arch="test_efficientnet", num_workers=0)
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    imported_cpu, _ = cpu_seconds()
    wall = time.perf_counter()
    cpu0, sys0 = cpu_seconds()
    out = Quiet()
    # train-density's call: through the whole-table memo where this code has one
    import inspect

    remember = {"remember_table": True} \
        if "remember_table" in inspect.signature(prepare_data).parameters else {}
    data = prepare_data(cfg, run_dir, out, progress=False, **remember)
    prepared_cpu, _ = cpu_seconds()
    images = data.table.images
    data_config(cfg, data.table, data.manifest)
    labels = [r.class_index for r in images]
    groups = [r.split_group for r in images]
    train_idx, val_idx = train_val_indices(labels, groups, cfg.val_fraction, cfg.seed)
    assert_disjoint(images, train_idx, val_idx)
    assignment = {int(i): "train" for i in train_idx} | {int(i): "val" for i in val_idx}
    write_splits_csv(run_dir / "splits.csv", split_rows(images, data.table.dicom_root,
                                                        assignment))
    loaders = [make_loader(CachedImageDataset([images[i].path for i in idx],
                                              [images[i].class_index for i in idx], data.cache),
                           batch_size=16, device=torch.device("cpu"), num_workers=0)
               for idx in (train_idx, val_idx)]
    batch = next(iter(loaders[0]))
    assert batch[0].shape[0] == 16 and np.isfinite(float(batch[0].float().mean()))
    cpu1, sys1 = cpu_seconds()
    print(json.dumps({"images": len(images), "cpu": cpu1 - cpu0, "sys": sys1 - sys0,
                      "wall": time.perf_counter() - wall, "prepare_cpu": prepared_cpu - cpu0,
                      "import_cpu": imported_cpu - start_cpu, "cache": data.cache_report,
                      "headers": data.manifest.get("headers"),
                      "hashing": data.manifest.get("hashing"), "warnings": out.warnings}))


# --------------------------------------------------------------------------- parent


def run_child(src: Path, archive: Path, cache: Path, run_dir: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), MAMMOGRAPHY_CACHE_DIR=str(cache),
               OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, __file__, "--child", "--archive", str(archive),
                           "--run-dir", str(run_dir)], env=env, check=True,
                          capture_output=True, text=True, cwd=run_dir.parent)
    return json.loads(done.stdout.strip().splitlines()[-1])


def tree_cpu(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float, int]:
    """(CPU, of which system, wall) seconds and minor page faults of ``cmd`` and
    everything it started. The faults are the steadier witness of system time on a
    shared machine: each is a page the kernel zeroed for a fresh buffer."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user = after.ru_utime - before.ru_utime
    system = after.ru_stime - before.ru_stime
    return user + system, system, wall, after.ru_minflt - before.ru_minflt


def data_check_cpu(src: Path, csv: Path, root: Path, cache: Path,
                   extra: list[str] = ()) -> tuple[float, float, float, int]:
    env = dict(os.environ, PYTHONPATH=str(src), MAMMOGRAPHY_CACHE_DIR=str(cache),
               OMP_NUM_THREADS="1")
    return tree_cpu([sys.executable, "-m", "mammography", "data", "check", "--csv", str(csv),
                     "--dicom-root", str(root), *extra], env)


def ms(seconds: float, n: int) -> str:
    return f"{seconds / n * 1000:7.3f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--archive", type=Path, help="reuse (or create) the archive here")
    parser.add_argument("--baseline", default=BASELINE_REV)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--check-images", type=int, default=2000)
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    sys.path.insert(0, str(REPO))

    work = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    try:
        archive = args.archive or work / "archive50k"
        started = time.perf_counter()
        if not (archive / "classificacao.csv").is_file():
            written = build_archive(archive, args.images, "64x64")
            print(f"archive: {written} images of 64x64 written in "
                  f"{time.perf_counter() - started:.0f}s ({os.cpu_count()} processes)")
        read_everything(archive / "archive")
        variants = {"current": REPO}
        if not args.no_baseline:
            old = baseline_source(args.baseline, work / "baseline")
            if old is not None:
                variants = {f"baseline {args.baseline}": old, **variants}

        results: dict[str, dict[str, dict]] = {}
        for name, src in variants.items():
            cache = work / f"cache-{name.split()[0]}"
            results[name] = {}
            for phase in ("cold", "warm"):
                results[name][phase] = run_child(src, archive, cache,
                                                 work / f"run-{name.split()[0]}-{phase}")
                r = results[name][phase]
                print(f"{name:>18} {phase}: {r['images']} images, {ms(r['cpu'], r['images'])} "
                      f"CPU/image ({r['cpu']:.1f}s, {r['sys']:.1f}s system, {r['wall']:.1f}s "
                      f"wall; imports {r['import_cpu']:.1f}s apart)", flush=True)
        print()
        current = results["current"]
        n = current["warm"]["images"]
        warm_ms = current["warm"]["cpu"] / n * 1000
        print(f"warm start -> first epoch: {warm_ms:.4f} ms CPU/image (goal <= {WARM_GOAL_MS}): "
              f"{'met' if warm_ms <= WARM_GOAL_MS else 'NOT met'}")
        print(f"  memo: {current['warm']['headers']}; cache: {current['warm']['cache']}")
        if len(results) > 1:
            base = next(v for k, v in results.items() if k != "current")
            ratio = base["warm"]["cpu"] / current["warm"]["cpu"]
            cold = current["cold"]["cpu"] / base["cold"]["cpu"]
            print(f"warm vs baseline: {ratio:.1f}x less CPU (goal >= {WARM_RATIO_GOAL:.0f}x): "
                  f"{'met' if ratio >= WARM_RATIO_GOAL else 'NOT met'}")
            print(f"cold vs baseline: {cold:.2f}x the CPU (goal <= 1, within noise)")

        check_root = work / "check"
        written = build_archive(check_root, args.check_images, "320x256")
        read_everything(check_root / "archive")
        csv = check_root / "classificacao.csv"
        print(f"\ndata check over {written} images of 320x256 (--img-size 512, CPU of the "
              "process tree):")
        checks = [(name, src, work / f"check-cache-{name.split()[0]}")
                  for name, src in variants.items() for _ in range(2)]  # 2nd: memos warm
        for round_, (name, src, cache) in enumerate(checks):
            cpu, system, wall, faults = data_check_cpu(src, csv, check_root / "archive", cache)
            print(f"{name:>18} ({'first' if round_ % 2 == 0 else 'again'}): "
                  f"{ms(cpu, written)} CPU/image ({cpu:.1f}s, {system:.1f}s system, "
                  f"{wall:.1f}s wall, {faults / written:.0f} page faults/image)", flush=True)
        filled = work / "check-cache-filled"
        env = dict(os.environ, PYTHONPATH=str(REPO), MAMMOGRAPHY_CACHE_DIR=str(filled),
                   OMP_NUM_THREADS="1")
        tree_cpu([sys.executable, "-m", "mammography", "data", "cache", "--csv", str(csv),
                  "--dicom-root", str(check_root / "archive"), "--img-size", "512"], env)
        cpu, system, wall, faults = data_check_cpu(REPO, csv, check_root / "archive", filled)
        print(f"{'current, cached':>18}: {ms(cpu, written)} CPU/image ({cpu:.1f}s, "
              f"{system:.1f}s system, {wall:.1f}s wall, {faults / written:.0f} page "
              "faults/image; the cache holds every image)")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
