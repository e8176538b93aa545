"""Fast refusal: what can be refused before work starts is refused before torch is
imported and before any run directory exists (cli/execute.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import child_env

# Runs the CLI in this child process, then says whether torch was imported and the exit code.
PROBE = """
import json, runpy, sys
sys.argv = ["mammography", *sys.argv[1:]]
try:
    runpy.run_module("mammography", run_name="__main__")
    code = 0
except SystemExit as exc:
    code = exc.code
print(json.dumps({"torch": "torch" in sys.modules, "timm": "timm" in sys.modules,
                  "code": code}))
"""


def refuse(cwd: Path, *args: str) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env=child_env())
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "archive").mkdir()
    (tmp_path / "columns.csv").write_text("AccessionNumber,Density\nE1,2\n")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "labels.csv").write_text("AccessionNumber,Classification\nE1,2\n")
    (tmp_path / "paths.csv").write_text("path,density\na.dcm,2\n")
    return tmp_path


@pytest.mark.parametrize("args, message", [
    (["train-density", "--csv", "missing.csv"], "--csv missing.csv does not exist"),
    (["train-density", "--csv", "missing.csv", "--arch", "no_such_model"],
     "--csv missing.csv does not exist"),
    (["train-density", "--csv", "columns.csv"],
     "have AccessionNumber but no Classification column"),
    (["train-density", "--csv", "elsewhere/labels.csv"],
     "DICOM root elsewhere/archive (the default: archive/ next to labels.csv) does not exist"),
    (["train-density", "--csv", "paths.csv"], "no label column 'label'"),
    (["tune", "--csv", "missing.csv"], "--csv missing.csv does not exist"),
    (["embed", "--csv", "columns.csv"], "have AccessionNumber but no Classification column"),
    (["train-density", "--resume", "outputs/density/results_1"],
     "--resume outputs/density/results_1 is not a run directory"),
    (["data", "cache", "--csv", "missing.csv"], "--csv missing.csv does not exist"),
])
def test_a_refusal_imports_no_torch_and_makes_no_run_directory(folder, args, message):
    result, stderr = refuse(folder, *args)
    assert result == {"torch": False, "timm": False, "code": 2}, stderr
    assert message in " ".join(stderr.split())
    assert "Traceback" not in stderr
    assert not (folder / "outputs").exists()


def test_the_arch_is_checked_last_once_everything_else_is_right(folder, synthetic_dataset):
    result, stderr = refuse(folder, "train-density", "--csv",
                            synthetic_dataset / "classificacao.csv", "--arch", "efficientnetb0")
    assert result == {"torch": True, "timm": True, "code": 2}, stderr
    assert "is not a timm model; similar: efficientnet_b0" in stderr
    assert not (folder / "outputs").exists()
