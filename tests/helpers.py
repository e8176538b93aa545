"""Helpers shared by tests: run the CLI from this checkout, read run directories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent / "record" / "scripts"


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("COLUMNS", None)
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m mammography ARGS`` in a fresh process, output captured."""
    return subprocess.run([sys.executable, "-m", "mammography", *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env or child_env())


def read_summary(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


def write_film_archive(folder: Path, exams: int = 2, shape: tuple[int, int] = (600, 450),
                       seed: int = 5) -> Path:
    """A small digitised-film dataset (CBIS-DDSM-like films: edge strips, lead markers,
    labels; 16-bit MONOCHROME2 without a VOI window): ``classificacao.csv`` and
    ``archive/<accession>/<L|R>_<view>.dcm`` under ``folder``. Returns ``folder``."""
    import numpy as np

    from mammography.data.synthetic import write_mammogram_dicom
    from mammography.data.synthetic.film import film_mammogram

    rng = np.random.default_rng(seed)
    rows = ["AccessionNumber,Classification,PatientID"]
    for exam in range(exams):
        accession = f"F{exam:03d}"
        for laterality, view in (("L", "CC"), ("R", "MLO")):
            sheet = film_mammogram(rng, 1 + exam % 4, shape, view, laterality)
            path = folder / "archive" / accession / f"{laterality}_{view}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_mammogram_dicom(path, sheet.image, patient_id=f"FP{exam}",
                                  accession=accession, view=view, laterality=laterality,
                                  bits_stored=16, window=False)
        rows.append(f"{accession},{1 + exam % 4},FP{exam}")
    (folder / "classificacao.csv").write_text("\n".join(rows) + "\n")
    return folder
