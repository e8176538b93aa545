"""Which models a `--run` names, and the images each one validated on.

A train-density run stands for its model; a CV parent for every fold's model;
a fold's ``results`` folder for that fold. A model's own validation split is
read back from its run's ``splits.csv`` (eval-export evaluates there when no
``--csv`` is given). Shared by eval-export and predict.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mammography.data.splits import read_splits_csv
from mammography.data.table.records import ImageRecord, LabelTable
from mammography.errors import DataError, InputError
from mammography.record.contract import (
    BEST_MODEL_FILE,
    CV_SUMMARY_FILE,
    SPLITS_FILE,
    read_summary,
)


@dataclass
class ModelSource:
    label: str
    run_dir: Path
    summary: dict[str, Any]


def expand_runs(paths: list[Path]) -> list[ModelSource]:
    """Each --run as evaluable models: a CV parent stands for all its folds."""
    from mammography.config.evaluate import model_run_problem

    sources: list[ModelSource] = []
    for path in paths:
        problem = model_run_problem(path)
        if problem:
            raise InputError(problem)
        summary = read_summary(path)
        folds = _fold_dirs(path, summary)
        if (path / CV_SUMMARY_FILE).is_file() and folds:
            for fold in folds:
                sources.append(ModelSource(f"{summary['run_id']}-{fold.parent.name}", fold,
                                           read_summary(fold)))
            continue
        if not (path / BEST_MODEL_FILE).is_file():
            raise InputError(f"--run {path} has no {BEST_MODEL_FILE} (status "
                             f"{summary.get('status')}); evaluate a run that finished at "
                             "least one epoch.")
        label = summary["run_id"]
        if summary.get("integration", {}).get("cv_fold"):
            label += f"-fold_{summary['integration']['cv_fold']}"
        sources.append(ModelSource(label, path, summary))
    seen: dict[str, int] = {}
    for source in sources:  # the same run_id from two outdirs must not collide
        seen[source.label] = seen.get(source.label, 0) + 1
        if seen[source.label] > 1:
            source.label += f"-{seen[source.label]}"
    return sources


def _fold_dirs(path: Path, summary: dict[str, Any]) -> list[Path]:
    """The fold runs of a CV parent, in fold order: its own, and those a resumed
    cross-validation reused from the run it continued (they live there)."""
    from mammography.engine.cv.resume import fold_run_dir

    count = int(summary.get("results", {}).get("num_folds") or 0) or len(
        list(path.glob("fold_*")))
    found = [fold_run_dir(path, summary, k) for k in range(1, count + 1)]
    missing = [k for k, run_dir in enumerate(found, 1) if run_dir is None]
    if summary.get("status") == "completed" and missing and len(missing) < count:
        raise InputError(f"--run {path}: the runs of folds {', '.join(map(str, missing))} "
                         "are gone, so the cross-validation cannot be evaluated whole; "
                         "evaluate the remaining folds' fold_k/results one by one.")
    return [run_dir for run_dir in found if run_dir is not None]


def own_validation_split(source: ModelSource) -> LabelTable:
    """The images the run validated on, from its splits.csv."""
    data = source.summary.get("data_config", {})
    root = Path(data["dicom_root"]) if data.get("dicom_root") else None
    splits = source.run_dir / SPLITS_FILE
    if not splits.is_file():
        raise InputError(f"{source.run_dir} has no {SPLITS_FILE}; pass --csv to evaluate it "
                         "on given data.")
    records = []
    for line, row in read_splits_csv(splits):
        if row["split"] != "val":
            continue
        path = Path(row["image_path"])
        path = path if path.is_absolute() or root is None else root / path
        records.append(ImageRecord(path=path, accession=row["accession"],
                                   patient=row["patient"], view=row["view"],
                                   laterality=row["laterality"], label=int(row["label"]),
                                   row=line))
    missing = [r.path for r in records if not r.path.is_file()]
    if missing:
        raise DataError(f"{len(missing)} validation images of {source.run_dir} are not "
                        f"reachable (e.g. {missing[0]}); the data moved? Pass --csv and "
                        "--dicom-root.")
    csv_path = Path(data.get("csv", splits))
    return LabelTable(records, [], csv_path if csv_path.is_file() else splits, root,
                      "splits", len(records))


def developed_on(source: ModelSource) -> tuple[set[str], set[str]] | None:
    """(patients, exams) of every image a run trained or validated on, from its
    splits.csv; None when it has none."""
    splits = source.run_dir / SPLITS_FILE
    if not splits.is_file():
        return None
    patients, exams = set(), set()
    for _, row in read_splits_csv(splits):
        if row.get("split") in ("", "unused"):
            continue
        patients.add(row.get("patient", ""))
        exams.add(row.get("accession", ""))
    return patients - {""}, exams - {""}
