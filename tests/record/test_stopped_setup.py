"""A stop while a run sets up its record leaves no run directory without a summary.

Between ``mkdir results_N`` and the first summary.json a run collects the git state
and the environment (a fraction of a second, longer on a busy machine); a SIGTERM
there used to kill the process (its handler was installed later) or, in a child run,
leave ``trial_1/results`` with a run.log only - which `runs validate` rightly calls
broken. Now the directory goes and the command exits 130; a parent whose child was
stopped so is an interrupted run that validates.
"""

import subprocess
import sys

import pytest

from tests.helpers import SCRIPTS, child_env, read_summary, run_cli

pytestmark = pytest.mark.slow

SCRIPT = SCRIPTS / "stopped_setup.py"
TINY = ["--arch", "test_efficientnet", "--no-pretrained", "--img-size", "32", "--epochs", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("stopped") / "data"
    proc = run_cli("synth", "--out", out, "--exams", "8", "--size", "96x80")
    assert proc.returncode == 0, proc.stderr
    return out


def stopped(which, *args, tmp):
    return subprocess.run([sys.executable, str(SCRIPT), which, *map(str, args)],
                          capture_output=True, text=True, timeout=300,
                          env=child_env(MAMMOGRAPHY_CACHE_DIR=str(tmp / "memo")))


def train_args(data, outdir, *extra):
    return ["train-density", "--csv", data / "classificacao.csv", "--dicom-root",
            data / "archive", "--outdir", outdir, *TINY, *extra]


def test_a_run_stopped_before_its_summary_leaves_no_directory(data, tmp_path):
    outdir = tmp_path / "out"
    proc = stopped("top", *train_args(data, outdir), tmp=tmp_path)
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert "Interrupted by SIGTERM before the run started; no run directory was kept." \
        in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(outdir.iterdir()) == []  # the folder --outdir named stays; results_1 went


def test_a_child_stopped_before_its_summary_leaves_an_interrupted_parent(data, tmp_path):
    outdir = tmp_path / "out"
    proc = stopped("child", *train_args(data, outdir, "--cv-folds", "2"), tmp=tmp_path)
    assert proc.returncode == 130, proc.stdout + proc.stderr
    parent = outdir / "results_1"
    summary = read_summary(parent)
    assert summary["status"] == "interrupted"
    assert summary["execution"]["error"]["signal"] == "SIGTERM"
    assert not (parent / "fold_1").exists()  # neither fold_1/results nor its holder
    check = run_cli("runs", "validate", outdir, "--no-index")
    assert check.returncode == 0, check.stdout + check.stderr
