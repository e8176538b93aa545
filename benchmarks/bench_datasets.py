"""RSNA as published against the same images through a generic CSV: `data check --no-decode`.

An RSNA Screening Mammography download of the competition's size is written:
``train.csv`` with its 14 columns and 54,706 rows (11,913 patients, 4-5 images
each; site 2's 25,236 rows without a density) and a tiny DICOM file for every
row at ``train_images/<patient_id>/<image_id>.dcm`` (one small template file,
its PatientID and UIDs rewritten per file, so every file is distinct). Then
``python -m mammography data check --no-decode`` runs, each variant with its
own empty cache folder, cold (headers read, files hashed) and warm (both
remembered):

* **dataset**: ``--dataset rsna --csv train.csv`` - the published file, every
  row parsed, every listed file looked up, site 2's rows excluded and counted;
* **generic**: today's path CSV (``path,label,PatientID,AccessionNumber``) of
  the same images the dataset run uses (the labelled ones).

Wall seconds of the whole command (interpreter start included), the best of
``--repeats`` warm runs. Goal: dataset <= 2x generic, cold and warm.

    python benchmarks/bench_datasets.py [--rows 54706] [--repeats 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ROWS, PATIENTS, SITE2_ROWS = 54_706, 11_913, 25_236
GOAL = 2.0
COLUMNS = ["site_id", "patient_id", "image_id", "laterality", "view", "age", "cancer",
           "biopsy", "invasive", "BIRADS", "implant", "density", "machine_id",
           "difficult_negative_case"]
#: Fixed-width placeholders of the template file, rewritten per image (and patient).
PATIENT_MARK, STUDY_MARK, SOP_MARK = b"PATIENT0000000", b"8" * 40, b"9" * 40


def template(path: Path) -> bytes:
    """A small MG DICOM file whose PatientID, Study and SOP Instance UIDs are placeholders."""
    from mammography.data.synthetic import synthesize_mammogram
    from mammography.data.synthetic.dicom_writer import write_mammogram_dicom

    image = synthesize_mammogram(np.random.default_rng(0), 2, (32, 26), "CC", "L")
    write_mammogram_dicom(path, image, patient_id=PATIENT_MARK.decode(), accession="ACC",
                          view="CC", laterality="L")
    import pydicom

    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2." + SOP_MARK.decode()
    ds.StudyInstanceUID = "1.3." + STUDY_MARK.decode()
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


def write_download(root: Path, rows: int) -> list[list[str]]:
    """train.csv and one distinct tiny file per row; the rows (for the generic CSV)."""
    patients = max(1, round(rows * PATIENTS / ROWS))
    blank = round(rows * SITE2_ROWS / ROWS)
    rng = np.random.default_rng(7)
    per_patient = np.full(patients, rows // patients)
    per_patient[: rows - per_patient.sum()] += 1
    data = template(root / "template.dcm")
    table, n = [], 0
    views = (("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO"), ("L", "MLO"))
    for p, count in enumerate(per_patient):
        patient = str(10006 + 7 * p)
        site = "2" if n + count <= blank else "1"  # site 2's patients first, ~25,236 rows
        density = "" if site == "2" else "ABCD"[int(rng.integers(4))]
        folder = root / "train_images" / patient
        folder.mkdir(parents=True)
        for i in range(count):
            n += 1
            image = str(1_000_000_000 + 37 * n)
            side, view = views[i % len(views)]
            table.append([site, patient, image, side, view, "58.0", "0", "0", "0", "", "0",
                          density, "49", "False"])
            body = data.replace(PATIENT_MARK, patient.rjust(len(PATIENT_MARK), "0").encode())
            body = body.replace(STUDY_MARK, patient.rjust(len(STUDY_MARK), "8").encode())
            body = body.replace(SOP_MARK, image.rjust(len(SOP_MARK), "9").encode())
            (folder / f"{image}.dcm").write_bytes(body)
    with (root / "train.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(table)
    return table


def write_generic(root: Path, table: list[list[str]]) -> Path:
    path = root / "generic.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "PatientID", "AccessionNumber"])
        for row in table:
            if row[11]:
                writer.writerow([f"train_images/{row[1]}/{row[2]}.dcm", row[11], row[1],
                                 row[1]])
    return path


def check(args: list[str], cache: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(REPO), MAMMOGRAPHY_CACHE_DIR=str(cache))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mammography", "data", "check",
                           "--no-decode", *args], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"data check failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="write the download here and keep it")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-datasets-"))
    root = options.keep or work / "rsna"
    try:
        if not (root / "train.csv").is_file():
            root.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            table = write_download(root, options.rows)
            print(f"wrote {len(table)} rows and files in {time.perf_counter() - start:.0f}s")
        else:
            with (root / "train.csv").open() as handle:
                table = list(csv.reader(handle))[1:]
        generic = write_generic(root, table)
        labelled = sum(1 for row in table if row[11])
        variants = {
            "dataset": ["--dataset", "rsna", "--csv", str(root / "train.csv"),
                        "--dicom-root", str(root)],
            "generic": ["--csv", str(generic), "--dicom-root", str(root)],
        }
        times: dict[str, dict[str, float]] = {}
        for name, args in variants.items():
            cache = work / f"cache-{name}"
            cold = check(args, cache)
            warm = min(check(args, cache) for _ in range(options.repeats))
            times[name] = {"cold": cold, "warm": warm}
            print(f"{name:8s} cold {cold:6.1f}s   warm {warm:6.1f}s")
        print(f"{len(table)} rows, {labelled} labelled images checked (site 2's "
              f"{len(table) - labelled} excluded by the dataset reader)")
        for phase in ("cold", "warm"):
            ratio = times["dataset"][phase] / times["generic"][phase]
            verdict = "ok" if ratio <= GOAL else "OVER GOAL"
            print(f"{phase}: dataset / generic = {ratio:.2f} (goal <= {GOAL:g}) {verdict}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
