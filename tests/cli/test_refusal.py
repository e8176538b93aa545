"""Fast refusal: what can be refused before work starts is refused before torch is
imported and before any run directory exists (cli/execute.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import child_env

# Runs the CLI once per case in this one child process (each case's stderr kept apart),
# then says, per case, its exit code and message, and whether torch or timm was imported.
PROBE = """
import contextlib, io, json, runpy, sys
results = []
for args in json.loads(sys.argv[1]):
    sys.argv = ["mammography", *args]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            runpy.run_module("mammography", run_name="__main__")
            code = 0
        except SystemExit as exc:
            code = exc.code
    results.append({"code": code, "stderr": err.getvalue(),
                    "torch": "torch" in sys.modules, "timm": "timm" in sys.modules})
print(json.dumps(results))
"""

CASES = [
    (["train-density", "--csv", "missing.csv"], "--csv missing.csv does not exist"),
    (["train-density", "--csv", "missing.csv", "--arch", "no_such_model"],
     "--csv missing.csv does not exist"),
    (["train-density", "--csv", "columns.csv"],
     "have AccessionNumber but no Classification column"),
    (["train-density", "--csv", "elsewhere/labels.csv"],
     "DICOM root elsewhere/archive (the default: archive/ next to labels.csv) does not exist"),
    (["train-density", "--csv", "paths.csv"], "no label column 'label'"),
    (["tune", "--csv", "missing.csv"], "--csv missing.csv does not exist"),
    (["train-density", "--csv", "columns.csv", "--csv", "paths.csv"],
     "--csv was given 2 times: several files make one table only with --dataset"),
    (["embed", "--csv", "columns.csv"], "have AccessionNumber but no Classification column"),
    (["eval-export", "--run", "outputs/density/results_1"],
     "--run outputs/density/results_1 is not a run directory"),
    (["train-density", "--resume", "outputs/density/results_1"],
     "--resume outputs/density/results_1 is not a run directory"),
    (["data", "cache", "--csv", "missing.csv"], "--csv missing.csv does not exist"),
]


def refuse(cwd: Path, cases: list[list[str]]) -> list[dict]:
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(cases)], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env=child_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "archive").mkdir()
    (tmp_path / "columns.csv").write_text("AccessionNumber,Density\nE1,2\n")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "labels.csv").write_text("AccessionNumber,Classification\nE1,2\n")
    (tmp_path / "paths.csv").write_text("path,density\na.dcm,2\n")
    return tmp_path


def test_a_refusal_imports_no_torch_and_makes_no_run_directory(folder):
    results = refuse(folder, [args for args, _ in CASES])
    for (args, message), result in zip(CASES, results, strict=True):
        where = " ".join(args)
        assert result["code"] == 2, (where, result["stderr"])
        assert message in " ".join(result["stderr"].split()), (where, result["stderr"])
        assert "Traceback" not in result["stderr"], where
    assert not results[-1]["torch"] and not results[-1]["timm"]  # after every case
    assert not (folder / "outputs").exists()


@pytest.mark.slow
def test_the_arch_is_checked_last_once_everything_else_is_right(folder, synthetic_dataset):
    (result,) = refuse(folder, [["train-density", "--csv",
                                 str(synthetic_dataset / "classificacao.csv"),
                                 "--arch", "efficientnetb0"]])
    assert (result["code"], result["torch"], result["timm"]) == (2, True, True)
    assert "is not a timm model; similar: efficientnet_b0" in result["stderr"]
    assert not (folder / "outputs").exists()
