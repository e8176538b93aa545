"""`mammography runs list` over 1,000 run directories, against baselines in the same run.

Goal: <= 1 s wall for the CLI call on 2 cores. Baselines measured alongside:
a bare interpreter start (``python -c pass``) and a plain ``json.load`` loop
over the same summary.json files (both in a fresh process, start-up included).
With MLflow installed, the same question asked of MLflow: a subset of the runs
is exported (exporting all 1,000 with their artifacts takes minutes) and
``mlflow runs list`` / ``MlflowClient.search_runs`` are timed over it, next to
`runs list` over the same subset.

The runs are copies of one real run's summary.json (made here with `synth` and
one `train-density` epoch, or taken from ``--from RUN_DIR``), mutated: run id,
seed, learning rate, kappa, start time, status (some failed, some "running"
with a dead pid, i.e. crashed), plus 10 CV parents with 2 folds each.

    python benchmarks/bench_runs_list.py [--runs 1000] [--from outputs/density/results_3]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPEATS = 5
MLFLOW_SUBSET = 100


def median_wall(cmd: list[str], repeats: int = REPEATS, **kw) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                       **kw)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def real_run(work: Path) -> Path:
    """One real train-density run on a tiny synthetic dataset."""
    data, out = work / "data", work / "real"
    env = dict(os.environ, MAMMOGRAPHY_CACHE_DIR=str(work / "cache"), OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "mammography", "synth", "--out", str(data),
                    "--exams", "12", "--size", "160x128"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-m", "mammography", "train-density", "--csv",
                    str(data / "classificacao.csv"), "--outdir", str(out), "--arch",
                    "test_efficientnet", "--no-pretrained", "--epochs", "2", "--img-size",
                    "64", "--num-workers", "0"], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return out / "results_1"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_run(run_dir: Path, template: dict, source: Path, index: int, rng: random.Random,
              pid: int, **changes) -> Path:
    run_dir.mkdir(parents=True)
    doc = copy.deepcopy(template)
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
    for key, value in changes.items():
        doc[key] = value
    (run_dir / "summary.json").write_text(json.dumps(doc, indent=2))
    for name in ("run.log", "train_history.json", "config.yaml"):
        if (source / name).exists():
            shutil.copyfile(source / name, run_dir / name)
    return run_dir


def make_tree(root: Path, source: Path, count: int) -> list[Path]:
    template = json.loads((source / "summary.json").read_text())
    rng, pid = random.Random(0), dead_pid()
    summaries = []
    for i in range(1, count + 1):
        run = write_run(root / f"exp_{i % 10}" / f"results_{i}", template, source, i, rng, pid)
        summaries.append(run / "summary.json")
        if i % (count // 10 or 1) == 0:  # a CV parent every count/10 runs
            for fold in (1, 2):
                child = write_run(run / f"fold_{fold}" / "results", template, source, i,
                                  rng, pid, integration={"optuna_trial_id": None,
                                                         "ray_trial_name": None,
                                                         "cv_fold": fold})
                summaries.append(child / "summary.json")
    return summaries


def json_loop_cmd(paths_file: Path) -> list[str]:
    code = ("import json, sys\n"
            "for p in open(sys.argv[1]).read().split('\\n'):\n"
            "    with open(p) as h: json.load(h)\n")
    return [sys.executable, "-c", code, str(paths_file)]


def bench_mlflow(root: Path, work: Path, cli: list[str], subset: int) -> None:
    try:
        import mlflow  # noqa: F401
    except ImportError:
        print("mlflow not installed: MLflow comparison skipped")
        return
    sub = work / "subset"
    sub.mkdir()
    for i, run in enumerate(sorted((root / "exp_1").glob("results_*"))[:subset]):
        shutil.copytree(run, sub / run.name)
        if i + 1 >= subset:
            break
    count = sum(1 for _ in sub.rglob("summary.json"))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    start = time.perf_counter()
    subprocess.run([*cli, "runs", "export", str(sub), "--to", "mlflow", "--tracking-uri", uri],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)
    export = time.perf_counter() - start
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri)
    experiment = subprocess.run(
        [sys.executable, "-c", "import mlflow; print(mlflow.MlflowClient()."
         "get_experiment_by_name('mammography').experiment_id)"],
        env=env, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    mlflow_cli = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    t_mlflow = median_wall([mlflow_cli, "runs", "list", "--experiment-id", experiment],
                           repeats=3, env=env)
    search = ("import mlflow; c = mlflow.MlflowClient(); "
              f"r = c.search_runs(['{experiment}'], max_results=5000); assert len(r) == {count}")
    t_search = median_wall([sys.executable, "-c", search], repeats=3, env=env)
    t_ours = median_wall([*cli, "runs", "list", str(sub)])
    print(f"\nMLflow, {count} runs (a {subset}-run subset: exporting 1,000 runs with their "
          f"artifacts takes minutes):")
    print(f"  runs export --to mlflow     : {export:7.2f} s ({export / count * 1000:.0f} ms/run)")
    print(f"  mammography runs list       : {t_ours * 1000:7.0f} ms")
    print(f"  mlflow runs list            : {t_mlflow * 1000:7.0f} ms  "
          f"({t_mlflow / t_ours:.1f}x runs list)")
    print(f"  MlflowClient.search_runs    : {t_search * 1000:7.0f} ms  "
          f"({t_search / t_ours:.1f}x runs list; fresh process, import included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--from", dest="source", type=Path, default=None,
                        help="a real run directory to copy (default: make one)")
    parser.add_argument("--mlflow-subset", type=int, default=MLFLOW_SUBSET)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "mammography"]
    with tempfile.TemporaryDirectory(prefix="bench-runs-") as tmp:
        work = Path(tmp)
        source = args.source or real_run(work)
        root = work / "outputs"
        t0 = time.perf_counter()
        summaries = make_tree(root, source, args.runs)
        print(f"{len(summaries)} run directories ({args.runs} runs + CV folds), "
              f"{sum(p.stat().st_size for p in summaries) / len(summaries) / 1024:.1f} KB "
              f"per summary.json, made in {time.perf_counter() - t0:.1f} s")
        paths_file = work / "paths.txt"
        paths_file.write_text("\n".join(map(str, summaries)))

        bare = median_wall([sys.executable, "-c", "pass"])
        loop = median_wall(json_loop_cmd(paths_file))
        help_ = median_wall([*cli, "--help"])
        table = median_wall([*cli, "runs", "list", str(root)])
        as_json = median_wall([*cli, "runs", "list", str(root), "--json"])
        query = median_wall([*cli, "runs", "list", str(root), "--where",
                             "hyperparameters.lr<1e-3", "--where", "status!=failed",
                             "--sort", "-best_val_kappa", "--limit", "20"])
        print(f"python -c pass                  : {bare * 1000:7.0f} ms (baseline)")
        print(f"python: json.load loop          : {loop * 1000:7.0f} ms "
              f"({len(summaries)} files, start-up included)")
        print(f"mammography --help              : {help_ * 1000:7.0f} ms")
        print(f"mammography runs list           : {table * 1000:7.0f} ms  "
              f"({table / loop:.1f}x the json.load loop)  goal <= 1000 ms: "
              f"{'OK' if table <= 1.0 else 'MISSED'}")
        print(f"runs list --json                : {as_json * 1000:7.0f} ms")
        print(f"runs list --where x2 --sort     : {query * 1000:7.0f} ms")
        bench_mlflow(root, work, cli, args.mlflow_subset)


if __name__ == "__main__":
    main()
