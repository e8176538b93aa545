"""`runs list / validate / clean` over synthetic run farms, against a baseline in the same run.

Farms of 1,000 and 10,000 runs (and 100,000 with ``--runs 1000,10000,100000``
or ``MAMMOGRAPHY_BENCH_100K=1``: it takes ~7 GB of disk and several minutes to
build, and the baseline alone minutes to list) are built from one real
train-density run (made here with `synth` and two epochs, or taken from
``--from RUN_DIR``): its summary.json, mutated per run (run id, seed,
learning rate, architecture, kappa, start time, status: some failed, some
"running" with a dead pid, i.e. crashed) and grown to a realistic ~60 KB (the
installed-packages list of a CUDA/conda machine, a messy archive's warnings,
untracked files), plus every file of the real run hard-linked into each run
(so the walk, validate's file checks and clean's sizes see what real runs
hold), and a CV parent with two folds every tenth of the farm.

Each command runs in a fresh process (start-up included); figures are the wall
time and the peak resident memory of that process (``wait4``):

* **baseline**: the same commands of the code at ``--baseline-ref`` (default
  the commit before the run index; ``git archive`` of it into a temp folder),
  which parses and keeps every summary;
* **now**: this checkout, each command twice: the first call under a root builds
  the run index (validate: its memo), the second is the steady state (every later
  call).

``--baseline-ref REF --baseline-steady`` times a baseline that has the run index
too by its second call of each command, so a change of this checkout (a
refactoring) is compared steady state against steady state.

Goals at 100,000 runs: `runs list` (with --where, --sort, --json) <= 5 s and
<= 300 MB; at 10,000, <= 1 s; `runs validate` and `runs clean` (dry run) at
<= 0.5 ms per run. Also timed: allocating a fresh ``results_N`` among as many
siblings, against an empty root (it must not grow slower). The JSON output of
`runs list --json` is compared with the baseline's (same rows, same values).

    python benchmarks/bench_runs_list.py [--runs 1000,10000] [--farms DIR] [--from RUN_DIR]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The last commit whose `runs` commands read every summary.json (no index).
BASELINE_REF = "b76d7de"
ENV_100K = "MAMMOGRAPHY_BENCH_100K"
# The baseline holds every parsed summary (~140 KB of Python objects each here): at
# 100,000 runs that is ~14 GB, more than a shared 2-core/23 GB machine can spare.
BASELINE_MAX_RUNS = 20_000
PACKAGES = 600          # a CUDA + conda research machine
WARNINGS = 50           # summary.json keeps the first 50 messages
UNTRACKED = 200         # notebooks and scratch outputs next to the code
MODIFIED = 50
QUERY = ["--where", "hyperparameters.lr<1e-3", "--where", "status!=failed",
         "--sort", "-best_val_kappa", "--limit", "20"]
ALL_DUE = ["--older-than", "1s", "--failed-older-than", "1s"]


# ------------------------------------------------------------------ the farm

def real_run(work: Path) -> Path:
    """One real train-density run on a tiny synthetic dataset."""
    data, out = work / "data", work / "real"
    env = dict(os.environ, MAMMOGRAPHY_CACHE_DIR=str(work / "cache"), OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "mammography", "synth", "--out", str(data),
                    "--exams", "12", "--size", "160x128"], check=True, env=env,
                   stdout=subprocess.DEVNULL, cwd=REPO)
    subprocess.run([sys.executable, "-m", "mammography", "train-density", "--csv",
                    str(data / "classificacao.csv"), "--outdir", str(out), "--arch",
                    "test_efficientnet", "--no-pretrained", "--epochs", "2", "--img-size",
                    "64", "--num-workers", "0"], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    return out / "results_1"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def grown(template: dict) -> dict:
    """The real summary grown to what a long-lived research machine records (~60 KB)."""
    doc = copy.deepcopy(template)
    packages = dict(doc["environment"].get("packages") or {})
    for i in range(PACKAGES - len(packages)):
        packages[f"site-package-{i:04d}"] = f"{i % 7}.{i % 13}.{i % 5}"
    doc["environment"]["packages"] = packages
    doc["warnings"] = {"count": 212, "messages": [
        f"WARNING: row {100 + i}: /mnt/archive/screening/2019/P{i:05d}/ST1.2.840.113619.2.55."
        f"3.604688119.{i}/SE1.2.840.113619.2.55.3.604688119.{i}.1/IM{i:04d}.dcm skipped: "
        "pixel data unreadable (JPEG 2000 codestream truncated at byte 1048576 of 2097152); "
        "recorded in data_manifest.json exclusions" for i in range(WARNINGS)]}
    doc["git"]["untracked_files"] = [f"notebooks/exploration_{i:03d}_density_baseline.ipynb"
                                     for i in range(UNTRACKED)]
    doc["git"]["modified_files"] = [f"mammography/experimental/module_{i:02d}.py"
                                    for i in range(MODIFIED)]
    return doc


class SourceFiles:
    """The real run's files, hard-linked into every farm run (a fresh copy of them in
    ``.sources/`` every 50,000 runs: a file system caps the links one file may have)."""

    LINKS_PER_COPY = 50_000

    def __init__(self, source: Path, root: Path) -> None:
        self.source, self.root, self.used, self.copies = source, root, 0, 0
        self.rels = [str(p.relative_to(source)) for p in sorted(source.rglob("*"))
                     if p.is_file() and p.name != "summary.json"]
        self.current = source

    def link_into(self, run_dir: Path) -> None:
        if self.used == self.LINKS_PER_COPY:
            self.copies += 1
            self.current = self.root / ".sources" / str(self.copies)
            shutil.copytree(self.source, self.current)
            self.used = 0
        self.used += 1
        for rel in self.rels:
            target = run_dir / rel
            target.parent.mkdir(exist_ok=True)
            os.link(self.current / rel, target)


def write_run(run_dir: Path, template: dict, files: SourceFiles, index: int,
              rng: random.Random, pid: int, **changes) -> Path:
    run_dir.mkdir(parents=True)
    doc = copy.copy(template)  # shallow: only the sections changed below are copied
    for section in ("results", "hyperparameters", "execution"):
        doc[section] = dict(template[section])
    kappa = round(rng.random(), 4)
    doc.update(run_id=run_dir.name if run_dir.name != "results" else "results_1",
               run_dir=str(run_dir), seed=index, best_val_kappa=kappa)
    doc["results"]["best_val_kappa"] = kappa
    doc["hyperparameters"]["lr"] = rng.choice([1e-4, 3e-4, 1e-3, 3e-3])
    doc["hyperparameters"]["arch"] = rng.choice(["efficientnet_b0", "resnet50",
                                                 "convnext_tiny"])
    doc["execution"]["start_time"] = f"2026-{1 + index % 12:02d}-{1 + index % 28:02d}" \
                                     "T10:00:00+00:00"
    roll = rng.random()
    if roll < 0.05:
        doc["status"] = "failed"
    elif roll < 0.07:  # recorded as running, process gone: shown as crashed
        doc["status"] = "running"
        doc["execution"].update(end_time=None, pid=pid)
    doc.update(changes)
    (run_dir / "summary.json").write_text(json.dumps(doc, indent=2))
    files.link_into(run_dir)
    return run_dir


def make_farm(root: Path, source: Path, count: int) -> int:
    """``count`` runs under ``root/exp_<i % 10>/results_<i>``; returns run directories made."""
    template = grown(json.loads((source / "summary.json").read_text()))
    files = SourceFiles(source, root)
    rng, pid, made = random.Random(0), dead_pid(), 0
    for i in range(1, count + 1):
        run = write_run(root / f"exp_{i % 10}" / f"results_{i}", template, files, i, rng,
                        pid)
        made += 1
        if i % (count // 10 or 1) == 0:  # a CV parent every tenth of the farm
            for fold in (1, 2):
                write_run(run / f"fold_{fold}" / "results", template, files, i, rng, pid,
                          integration={"optuna_trial_id": None, "ray_trial_name": None,
                                       "cv_fold": fold})
                made += 1
    return made


def farm(base: Path, source: Path, count: int) -> Path:
    """The farm of ``count`` runs under ``base`` (built once, reused by later calls)."""
    root = base / f"farm_{count}"
    done = root / ".complete"
    if done.is_file():
        return root / "outputs"
    if root.exists():
        shutil.rmtree(root)
    start = time.perf_counter()
    made = make_farm(root / "outputs", source, count)
    done.write_text(str(made))
    summary = next((root / "outputs" / "exp_1").glob("results_*/summary.json"))
    print(f"farm of {count} runs: {made} run directories, "
          f"{summary.stat().st_size / 1024:.0f} KB per summary.json, "
          f"built in {time.perf_counter() - start:.0f} s", flush=True)
    return root / "outputs"


# ---------------------------------------------------------------- measuring

def measure(cmd: list[str], env: dict[str, str], cwd: Path
            ) -> tuple[float, float, bytes, float]:
    """(wall seconds, peak RSS in MB, stdout, CPU seconds) of one fresh process. CPU time
    (user + system) is printed too: on a shared machine it is the steadier figure."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if proc.returncode not in (0, 1):  # validate exits 1 when it finds problems
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}")
    return wall, usage.ru_maxrss / 1024, text, usage.ru_utime + usage.ru_stime


def baseline_tree(ref: str, work: Path) -> Path | None:
    """The package at ``ref``, unpacked under ``work`` (None when git cannot give it)."""
    target = work / "baseline"
    target.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "mammography"],
                             capture_output=True)
    if archive.returncode != 0:
        print(f"baseline {ref} unavailable ({archive.stderr.decode().strip()}): "
              "only this checkout is timed")
        return None
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def bench_one(root: Path, runs: int, made: int, base_env: dict | None, env: dict,
              cli: list[str], cwd: Path, baseline_steady: bool = False) -> list[str]:
    """Time every command on one farm; returns lines that missed their goal."""
    commands = {
        "list": ["runs", "list", str(root)],
        "list --json": ["runs", "list", str(root), "--json"],
        "list --where x2 --sort": ["runs", "list", str(root), *QUERY],
        "validate": ["runs", "validate", str(root)],
        "clean (dry run)": ["runs", "clean", str(root)],
        # every run old enough to go: the dry run sizes each of them
        "clean, all due": ["runs", "clean", str(root), *ALL_DUE],
    }
    goal_list = 1.0 if runs <= 10_000 else 5.0
    missed = []
    compare = None
    print(f"\n{runs} runs ({made} run directories, CV folds included): wall s (CPU s), "
          "peak MB")
    print(f"  {'':24}{'baseline':>24}{'now, 1st call':>25}{'now':>24}   speed-up")
    for name, args in commands.items():
        before = measure([*cli, *args], base_env, cwd) if base_env else None
        if before is not None and baseline_steady:  # its second call: its index built
            before = measure([*cli, *args], base_env, cwd)
        # The first call under a root builds the index (validate: its memo).
        first = measure([*cli, *args], env, cwd)
        now = measure([*cli, *args], env, cwd)
        ratio = f"{before[0] / now[0]:7.1f}x" if before else ""
        print(f"  {name:24}{_cell(before):>24}{_cell(first):>25}{_cell(now):>24}   {ratio}")
        if name == "list --json" and before is not None:
            # Compared once every command is timed: parsed here, 100,000 rows would grow
            # this process by ~250 MB, and each command forked after it would report
            # that as its own peak (ru_maxrss counts the fork before the exec).
            # (Kept on disk meanwhile: held here, the text itself would count too.)
            compare = (cwd / "list-baseline.json", cwd / "list-now.json")
            compare[0].write_bytes(before[2])
            compare[1].write_bytes(now[2])
        if name.startswith("list"):
            if now[0] > goal_list:
                missed.append(f"{runs} runs: {name} {now[0]:.2f} s > {goal_list:.0f} s")
            if runs >= 100_000 and now[1] > 300:
                missed.append(f"{runs} runs: {name} {now[1]:.0f} MB > 300 MB")
        else:
            per_run = now[0] / made * 1000
            print(f"  {'':24}{before[0] / made * 1000 if before else 0:>17.3f} ms/run"
                  f"{first[0] / made * 1000:>18.3f} ms/run{per_run:>17.3f} ms/run")
            if per_run > 0.5:
                missed.append(f"{runs} runs: {name} {per_run:.3f} ms per run > 0.5")
        del before, first, now  # the outputs let go before the next command forks
    if compare is not None:
        old, new = json.loads(compare[0].read_bytes()), json.loads(compare[1].read_bytes())
        # fields added since the baseline (cv_progress) are not part of the comparison
        same = len(old) == len(new) and all(
            {k: n.get(k) for k in o} == o for o, n in zip(old, new, strict=True))
        print("  (list --json: " + ("the same rows and values as the baseline, in "
                                    "the baseline's fields)" if same
                                    else "DIFFERENT from the baseline)"))
        if not same:
            missed.append(f"{runs} runs: list --json differs from the baseline")
    return missed


def _cell(m: tuple[float, float, bytes, float] | None) -> str:
    return f"{m[0]:7.2f} ({m[3]:6.2f}) {m[1]:5.0f} MB" if m else ""


def bench_allocation(root: Path, runs: int) -> None:
    """Allocating ``results_N`` among ``runs`` siblings vs in an empty root (in process)."""
    sys.path.insert(0, str(REPO))
    from mammography.record.rundir import allocate_run_dir

    def best_of(folder: Path, repeats: int = 5) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            made = allocate_run_dir(folder)
            times.append(time.perf_counter() - start)
            made.rmdir()
        return min(times)

    crowded = root / "exp_1"
    siblings = sum(1 for _ in os.scandir(crowded))
    with tempfile.TemporaryDirectory() as empty:
        alone = best_of(Path(empty))
    among = best_of(crowded)
    print(f"  results_N allocation: {among * 1000:.2f} ms among {siblings} siblings, "
          f"{alone * 1000:.2f} ms in an empty root")


def sizes(text: str | None) -> list[int]:
    if text:
        return [int(s) for s in text.split(",")]
    wanted = [1000, 10_000]
    if os.environ.get(ENV_100K, "") not in ("", "0"):
        wanted.append(100_000)
    return wanted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=None, help="comma-separated farm sizes "
                        f"(default 1000,10000; 100000 too with {ENV_100K}=1)")
    parser.add_argument("--from", dest="source", type=Path, default=None,
                        help="a real run directory to copy (default: make one)")
    parser.add_argument("--farms", type=Path, default=None,
                        help="keep the farms in this folder and reuse them on later calls")
    parser.add_argument("--baseline-ref", default=BASELINE_REF,
                        help="git commit of the baseline (default: the last without the index)")
    parser.add_argument("--baseline-steady", action="store_true",
                        help="time the baseline's second call of each command (a baseline "
                             "that has the run index too: compare steady states, e.g. "
                             "--baseline-ref of a refactoring's parent commit)")
    parser.add_argument("--baseline-max-runs", type=int, default=BASELINE_MAX_RUNS,
                        help="time the baseline only on farms up to this size (it keeps "
                             "every summary in memory: ~14 GB at 100,000 runs)")
    args = parser.parse_args()
    counts = sizes(args.runs)
    with tempfile.TemporaryDirectory(prefix="bench-runs-") as tmp:
        work = Path(tmp)
        base = args.farms or work
        base.mkdir(parents=True, exist_ok=True)
        source = args.source
        if source is None:
            kept = base / "real" / "results_1"
            source = kept if (kept / "summary.json").is_file() else real_run(base)
        cli = [sys.executable, "-m", "mammography"]
        common = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        common.update(OMP_NUM_THREADS="1", COLUMNS="200")
        env = dict(common, PYTHONPATH=str(REPO), MAMMOGRAPHY_CACHE_DIR=str(work / "cache"))
        baseline = baseline_tree(args.baseline_ref, work)
        base_env = dict(common, PYTHONPATH=str(baseline),
                        MAMMOGRAPHY_CACHE_DIR=str(work / "cache-baseline")) if baseline else None
        missed = []
        for count in counts:
            root = farm(base, source, count)
            made = int((root.parent / ".complete").read_text())
            with_baseline = base_env if count <= args.baseline_max_runs else None
            if base_env and with_baseline is None:
                print(f"\n(baseline not timed at {count} runs: above --baseline-max-runs "
                      f"{args.baseline_max_runs}, it would need ~{count * 140 // 1000 / 1000:.0f}"
                      " GB)")
            missed += bench_one(root, count, made, with_baseline, env, cli, work,
                                args.baseline_steady)
            bench_allocation(root, count)
    print("\nall goals met" if not missed else "\nmissed:\n  " + "\n  ".join(missed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
