"""Every example of README.md runs as written, in a fresh clone, and leaves it clean.

A docs test, like doctest for the CLI. The README is read from a fresh ``git
clone`` of this checkout (its uncommitted changes and new files applied and
committed there, so the clone starts clean), and its ```bash examples run there in
order, each in ``bash`` from the clone's root, with PYTHONPATH on the clone and a
``mammography`` command on PATH that is the real CLI at tiny sizes
(tests/readme_tiny.py: 64 px, timm's test model, a tenth of the epochs...).

First the README's demo-data line makes ``data/synthetic``, then the runs and data
the README's examples name are made as the README describes them ("The examples
name runs and data as a working session leaves them"): a stopped run, two finished
ones, a killed and a finished 3-fold cross-validation, a killed search, two other
datasets and a weights file. Every other example then runs; it must exit 0 (grep and
diff: 0 or 1, "found nothing" and "they differ"), every key a ``jq`` filter reads
from summary.json must exist in some run's summary, and afterwards ``git status
--porcelain`` of the clone must be empty: the examples write only where .gitignore
says.

An example that cannot run here is in ``SKIPPED`` with the reason; one that is
neither run nor listed cannot exist (every other example runs), and a SKIPPED entry
the README no longer has fails the test, so the list stays true. The figures:
``pytest -s`` prints each example's time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.readme_examples import Example, readme_examples

# One test that runs ~80 examples: its own time limit (measured: see the module docstring).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

INSTALLS = "installs packages into .venv (needs the network); the test runs this checkout's " \
           "code with the test's interpreter instead"
DATASET = ("a public dataset as downloaded from its publisher; tests/data/table/datasets/ run "
           "data check and train-density on downloads built from each publisher's layout")
CLUSTER = ("a Ray cluster of machines sharing storage (/shared); CI runs these commands on a "
           "two-node cluster on loopback (tests/data/cluster/, tests/engine/cluster/)")
#: Examples not run here, by ``Example.key``, with the reason.
SKIPPED = {
    "make install": INSTALLS,
    "source .venv/bin/activate": "the test puts its own `mammography` first on PATH instead",
    "make demo": INSTALLS + " (the demo's training is configs/demo.yaml, run below)",
    "make test": "the test suite itself",
    "make test-fast": "the test suite itself",
    "make lint": "run by the test suite (tests/test_architecture.py) and CI",
    "make bench": "benchmarks take minutes each (benchmarks/run_all.py)",
    "python3 -m venv .venv": INSTALLS,
    ".venv/bin/pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu":
        INSTALLS,
    '.venv/bin/pip install -e ".[dev]"': INSTALLS,
    "pip install 'mammography[export]'": INSTALLS,
    "mammography tune --config configs/demo.yaml --engine ray --n-trials 16 --cpus-per-trial 1":
        "starts a local Ray instance (most of a minute on 2 cores); tests/hpo/test_tune.py "
        "runs tune --engine ray",
    "mammography tune ... --storage postgresql://optuna@db.lab/studies --study-name big":
        "a fragment (`...` stands for the options of the lines above) and a database server",
    "mammography tune ... --storage journal:/shared/studies/big.log --study-name big":
        "a fragment (`...` stands for the options of the lines above) and a shared file "
        "system",
    "createdb -h db.lab -U optuna studies": "a PostgreSQL server db.lab (tests/hpo/"
                                           "test_shared_study.py uses CI's own server)",
    "export PGPASSWORD=…": "a PostgreSQL server db.lab",
    "mammography tune --config configs/demo.yaml --n-trials 100 --study-name big --storage "
    "postgresql://optuna@db.lab:5432/studies": "a PostgreSQL server db.lab (tests/hpo/"
                                               "test_shared_study.py uses CI's own server)",
    "mammography tune --config configs/demo.yaml --n-trials 100 --study-name big --storage "
    "journal:/shared/studies/big.log": "a file system shared by several machines (/shared)",
    "mammography train-density --config configs/demo.yaml --cv-folds 5 --cv-workers 4 "
    "--cv-engine ray --ray-address auto": "a running Ray cluster (--ray-address auto); "
                                          "tests/engine/cv run folds as Ray tasks",
    "torchrun --nproc-per-node 4 -m mammography train-density --config configs/demo.yaml "
    "--batch-size 64": "4 processes on 2 cores; tests/engine/test_distributed.py runs 2",
    "mlflow ui --backend-store-uri sqlite:///outputs/mlflow/mlflow.db":
        "a web server that runs until stopped (tests/runs/export/test_mlflow_ui.py)",
    "mammography runs export outputs/density --to mlflow --tracking-uri "
    "http://mlflow.lab:5000 --experiment density --with-models": "an MLflow server "
                                                                  "(mlflow.lab)",
    "tensorboard --logdir outputs/tb": "a web server that runs until stopped",
    # A public dataset's download (cannot be fetched here, nor committed).
    'mammography data check --dataset vindr-mammo --csv '
    'VINDR/breast-level_annotations.csv --dicom-root VINDR --no-decode': DATASET,
    'mammography train-density --config configs/vindr-mammo-density.yaml --csv '
    'VINDR/breast-level_annotations.csv --dicom-root VINDR': DATASET,
    'mammography data check --dataset rsna --csv RSNA/train.csv --dicom-root RSNA '
    '--no-decode': DATASET,
    'mammography train-density --config configs/rsna-density.yaml --csv RSNA/train.csv '
    '--dicom-root RSNA': DATASET,
    'mammography data check --dataset cbis-ddsm --csv '
    'CBIS/mass_case_description_train_set.csv --csv '
    'CBIS/mass_case_description_test_set.csv --csv '
    'CBIS/calc_case_description_train_set.csv --csv '
    'CBIS/calc_case_description_test_set.csv --dicom-root CBIS --no-decode': DATASET,
    'mammography train-density --config configs/cbis-ddsm-density.yaml --csv '
    'CBIS/mass_case_description_train_set.csv --csv '
    'CBIS/mass_case_description_test_set.csv --csv '
    'CBIS/calc_case_description_train_set.csv --csv '
    'CBIS/calc_case_description_test_set.csv --dicom-root CBIS': DATASET,
    'mammography data check --dataset inbreast --csv INBREAST/INbreast.csv --dicom-root '
    'INBREAST --no-decode': DATASET,
    'mammography train-density --dataset inbreast --csv INBREAST/INbreast.csv '
    '--dicom-root INBREAST --cv-folds 5': DATASET,
    'mammography data check --dataset embed --csv '
    'EMBED/tables/EMBED_OpenData_metadata.csv --csv '
    'EMBED/tables/EMBED_OpenData_clinical.csv --dicom-root EMBED/images --no-decode': DATASET,
    'mammography train-density --dataset embed --csv '
    'EMBED/tables/EMBED_OpenData_metadata.csv --csv '
    'EMBED/tables/EMBED_OpenData_clinical.csv --dicom-root EMBED/images --val-fraction '
    '0.2': DATASET,
    # The cluster section: machines sharing storage (/shared). CI runs each command on a
    # two-node Ray cluster on loopback instead (.ci/ray-cluster; tests/data/cluster/,
    # tests/engine/cluster/).
    "ray start --head --port 6379 --num-cpus 16": CLUSTER,
    "ray start --address HEAD:6379 --num-cpus 16": CLUSTER,
    "mammography data cache --csv /shared/embed/EMBED_OpenData_metadata.csv --dataset embed "
    "--csv /shared/embed/EMBED_OpenData_clinical.csv --cache-dir /shared/cache --img-size "
    "1024x512 --ray-address HEAD:6379 --json cache_build.json": CLUSTER,
    "mammography data check ... --ray-address auto": "a fragment (`...` stands for the "
                                                      "options of the line above) and " + CLUSTER,
    "OMP_NUM_THREADS=1 mammography embed --csv /shared/data/classificacao.csv --arch "
    "efficientnet_b0 --img-size 512 --cache-dir /shared/cache --ray-address HEAD:6379": CLUSTER,
    "OMP_NUM_THREADS=1 mammography predict --run outputs/density/results_7 --dicom-root "
    "/shared/pacs --cache-dir /shared/cache --tta --ray-address auto": CLUSTER,
}
#: The README line that makes the demo data; run first, as `make demo` does.
DEMO_DATA = "mammography synth --out data/synthetic --exams 100 --seed 42"
#: Exit codes that are not failures: grep found nothing, diff found differences.
ALSO_FINE = {"grep": {1}, "diff": {1}}
TIMEOUT = 600


class Clone:
    """The fresh clone and how to run things in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "repo"
        self.bin = root / "bin"
        self.env = dict(os.environ)
        self.env.pop("COLUMNS", None)
        self.env.update(PYTHONPATH=str(self.dir), MAMMOGRAPHY_CACHE_DIR=str(root / "cache"),
                        MAMMOGRAPHY_TINY_DIR=str(root / "tiny_configs"),
                        PATH=os.pathsep.join([str(self.bin), str(Path(sys.executable).parent),
                                              os.environ.get("PATH", "")]))
        self.times: list[tuple[float, str]] = []

    def git(self, *args: str, cwd: Path | None = None) -> str:
        proc = subprocess.run(["git", "-c", "user.name=readme test",
                               "-c", "user.email=readme@test", *args],
                              cwd=cwd or self.dir, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def make(self) -> None:
        """A clone of this checkout as it is now (changes and new files committed there)."""
        self.git("clone", "--quiet", "--no-hardlinks", str(REPO), str(self.dir), cwd=self.root)
        patch = self.git("diff", "HEAD", "--binary", cwd=REPO)
        if patch:
            subprocess.run(["git", "apply", "--whitespace=nowarn"], input=patch, text=True,
                           cwd=self.dir, check=True)
        for name in self.git("ls-files", "--others", "--exclude-standard", "-z",
                             cwd=REPO).split("\0"):
            if name:
                (self.dir / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, self.dir / name)
        self.git("add", "-A")
        if self.git("status", "--porcelain"):
            self.git("commit", "--quiet", "-m", "the checkout's uncommitted state")
        self.bin.mkdir()
        wrapper = self.bin / "mammography"
        wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} "
                           f"{self.dir / 'tests' / 'readme_tiny.py'} \"$@\"\n")
        wrapper.chmod(0o755)

    def bash(self, command: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        started = time.perf_counter()
        proc = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=self.dir,
                              env=self.env, capture_output=True, text=True, timeout=timeout)
        seconds = time.perf_counter() - started
        self.times.append((seconds, " ".join(command.split())[:90]))
        print(f"{seconds:6.1f} s  exit {proc.returncode}  {' '.join(command.split())[:100]}",
              flush=True)
        return proc

    def cli(self, *args: str) -> subprocess.Popen:
        """``python -m mammography ARGS`` started in the clone (not waited for)."""
        return subprocess.Popen([sys.executable, "-m", "mammography", *args], cwd=self.dir,
                                env=self.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)


def _ok(proc: subprocess.CompletedProcess, what: str) -> None:
    assert proc.returncode == 0, f"{what}: exit {proc.returncode}\n{proc.stderr[-3000:]}"


def _finish(proc: subprocess.Popen, what: str, code: int = 0) -> None:
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == code, f"{what}: exit {proc.returncode}\n{err[-3000:]}"


TINY = ["--arch", "test_efficientnet", "--no-pretrained", "--img-size", "64"]
DEMO = ["--csv", "data/synthetic/classificacao.csv", "--outdir", "outputs/density", *TINY]


class Job:
    """One process of ``make_what_the_examples_name``: a run (its ``log``), stopped with
    SIGTERM once ``stop_log`` (default: its log) holds ``stop_at`` (exit 130), or left
    to finish (exit 0)."""

    def __init__(self, what: str, args: list[str], log: str | None = None,
                 stop_at: str | None = None, stop_log: str | None = None) -> None:
        self.what, self.args, self.log, self.stop_at = what, args, log, stop_at
        self.stop_log = stop_log or log

    def run(self, clone: Clone, started: threading.Event | None,
            allocated: threading.Event) -> None:
        if started is not None:
            started.wait(TIMEOUT)  # the run before it has its results_N: numbers in order
        proc = clone.cli(*self.args)
        try:
            if self.log is None:
                allocated.set()
                _finish(proc, self.what)
                return
            log = clone.dir / self.log
            deadline = time.time() + TIMEOUT
            while not log.is_file():
                assert proc.poll() is None, f"{self.what}: {proc.stderr.read()[-3000:]}"
                assert time.time() < deadline, f"{self.what}: no {log}"
                time.sleep(0.05)
            allocated.set()
            if self.stop_at is None:
                _finish(proc, self.what)
                return
            watched = clone.dir / self.stop_log
            while not (watched.is_file()
                       and self.stop_at in watched.read_text(errors="replace")):
                assert proc.poll() is None, f"{self.what} ended before {self.stop_at!r}"
                assert time.time() < deadline, f"{self.what}: no {self.stop_at!r} in {watched}"
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)  # stops it as Ctrl-C does: interrupted, 130
            _finish(proc, self.what, 130)
        finally:
            allocated.set()
            if proc.poll() is None:
                proc.kill()


def make_what_the_examples_name(clone: Clone) -> None:
    """The runs and data the README says its examples name, made as it describes them:
    two processes at a time, each run started once the one before has its results_N."""
    density = "outputs/density/results_{}/run.log"
    runs = [
        Job("stopped run", ["train-density", *DEMO, "--epochs", "6"], density.format(1),
            "Epoch 2/6"),
        Job("finished run, seed 42", ["train-density", *DEMO, "--epochs", "2", "--seed", "42"],
            density.format(2)),
        Job("finished run, seed 43", ["train-density", *DEMO, "--epochs", "2", "--seed", "43"],
            density.format(3)),
        # killed during fold 2, whose epoch 1 is saved: fold 2 has epochs left to continue
        Job("killed cross-validation", ["train-density", *DEMO, "--epochs", "4",
                                        "--cv-folds", "3"],
            density.format(4), "Epoch 2/4", "outputs/density/results_4/fold_2/results/run.log"),
        Job("finished cross-validation", ["train-density", *DEMO, "--epochs", "1",
                                          "--cv-folds", "3"], density.format(5)),
    ]
    others = [
        Job("killed search", ["tune", "--config", "configs/tune.yaml", *TINY, "--epochs", "1",
                              "--n-trials", "3"], "outputs/hpo/results_1/run.log",
            "1/3 trials done"),
        Job("data/site_b", ["synth", "--out", "data/site_b", "--exams", "12", "--seed", "7"]),
        Job("data/new_exams", ["synth", "--out", "data/new_exams", "--exams", "6",
                               "--seed", "11"]),
    ]
    weights = clone.dir / "data" / "weights" / "resnet50.safetensors"
    weights.parent.mkdir(parents=True)
    code = ("import sys, timm, safetensors.torch as st\n"
            "model = timm.create_model('resnet50', pretrained=False, num_classes=0)\n"
            "st.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, "
            "sys.argv[1])")
    _ok(subprocess.run([sys.executable, "-c", code, str(weights)], capture_output=True,
                       text=True), "weights file")
    events = [threading.Event() for _ in runs + others]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(job.run, clone, events[i - 1] if 0 < i < len(runs) else None,
                               events[i]) for i, job in enumerate(runs + others)]
        for future in futures:
            future.result()


def _jq_keys(example: Example) -> list[str]:
    """The summary.json keys a ``jq`` example reads (``.hyperparameters.lr``)."""
    words = example.words
    if "jq" not in words or not any(w.endswith("summary.json") for w in words):
        return []
    filters = [w for w in words[words.index("jq") + 1:] if not w.startswith("-")][:1]
    return [m.group(1) for f in filters
            for m in re.finditer(r"(?<![\w\]])\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)", f)]


def _has(summary: dict, dotted: str) -> bool:
    node = summary
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_every_readme_example_runs_as_written_in_a_fresh_clone(tmp_path):
    if subprocess.run(["git", "rev-parse", "--git-dir"], cwd=REPO,
                      capture_output=True).returncode != 0:
        pytest.skip("not a git checkout: nothing to clone")
    clone = Clone(tmp_path)
    clone.make()
    examples = readme_examples(clone.dir / "README.md")
    keys = {example.key for example in examples}
    stale = sorted(set(SKIPPED) - keys)
    assert not stale, f"SKIPPED lists examples the README no longer has: {stale}"
    assert DEMO_DATA in keys, "the README's demo-data line changed: update DEMO_DATA"

    _ok(clone.bash(DEMO_DATA), DEMO_DATA)
    started = time.perf_counter()
    make_what_the_examples_name(clone)
    print(f"{time.perf_counter() - started:6.1f} s  the runs and data the examples name",
          flush=True)

    failures, skipped, summaries = [], [], None
    for example in examples:
        program = example.words[0] if example.words else ""
        if example.key in SKIPPED or example.key == DEMO_DATA:
            skipped.append(example.key)
            continue
        if program not in ("mammography", "scripts/sweep.sh") and "=" not in program \
                and shutil.which(program, path=clone.env["PATH"]) is None:
            print(f"SKIPPED (no {program} on this machine): {example.key}")
            continue
        proc = clone.bash(example.text)
        if proc.returncode != 0 and proc.returncode not in ALSO_FINE.get(program, ()):
            failures.append(f"README.md:{example.line} ({example.section}): {example.key}\n"
                            f"exit {proc.returncode}\n{proc.stdout[-2500:]}{proc.stderr[-2500:]}")
            continue
        keys_read = _jq_keys(example)
        if keys_read:
            summaries = summaries or [json.loads(p.read_text()) for p in
                                      (clone.dir / "outputs").rglob("summary.json")]
            missing = [k for k in keys_read if not any(_has(s, k) for s in summaries)]
            if missing:
                failures.append(f"README.md:{example.line}: {example.key}\nreads "
                                f"{', '.join('.' + k for k in missing)}, which no summary.json "
                                "has: it prints nothing (null)")
    print(f"\n{len(examples)} README examples: {len(examples) - len(skipped)} run, "
          f"{len(skipped) - 1} skipped (listed), the demo-data line first")
    total = sum(seconds for seconds, _ in clone.times)
    print(f"{total:.0f} s in all; slowest:")
    for seconds, what in sorted(clone.times, reverse=True)[:12]:
        print(f"  {seconds:6.1f} s  {what}")
    assert not failures, "\n\n".join(failures)
    status = clone.git("status", "--porcelain")
    assert status == "", f"the examples left files git does not ignore:\n{status}"
