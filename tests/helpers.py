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


class RecordingRun:
    """The part of a run that writes recorded files (record/digests.py): its directory,
    a summary kept in memory, log and warn. ``run_uid`` None: a run before digests."""

    def __init__(self, directory: Path, run_uid: str | None = "0" * 32,
                 run_id: str = "results_1") -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id
        self.document: dict = {"run_id": run_id, "artifacts": []}
        if run_uid is not None:
            self.document["run_uid"] = run_uid
        self.lines: list[str] = []
        self.warnings: list[str] = []
        self.is_primary = True

    def get(self, key: str, default=None):
        import copy

        return copy.deepcopy(self.document.get(key, default))

    def update(self, fragment: dict | None = None, **fields) -> None:
        from mammography.record.summary import deep_merge

        deep_merge(self.document, dict(fragment or {}, **fields))

    def log(self, message: str = "") -> None:
        self.lines.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def write_summary(self) -> Path:
        """summary.json as it stands (so a RunView can read the run)."""
        path = self.dir / "summary.json"
        path.write_text(json.dumps(self.document))
        return path
