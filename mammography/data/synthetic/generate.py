"""Body of `mammography synth`: plan, write the images and the CSV, move into place.

It writes the same layout as the reference archive::

    OUT/classificacao.csv                      AccessionNumber,Classification,PatientID
    OUT/archive/<AccessionNumber>/<L|R>_<CC|MLO>.dcm

Files go to a hidden staging folder next to OUT that is renamed into place at
the end, so an interrupted or failed run leaves no half dataset, and an existing
dataset is never overwritten. Everything derives from the seed: the same
settings give byte-identical files on the same platform.
"""

from __future__ import annotations

import csv
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mammography.config.synth import SynthConfig
from mammography.data.synthetic.dicom_writer import write_mammogram_dicom
from mammography.data.synthetic.phantom import synthesize_mammogram
from mammography.data.synthetic.plan import VIEWS, _Exam, _plan_exams, _seed_words
from mammography.errors import EXIT_OK, ConfigError, DataError

CSV_NAME = "classificacao.csv"
ARCHIVE_NAME = "archive"
CSV_HEADER = ("AccessionNumber", "Classification", "PatientID")


@dataclass(frozen=True)
class SynthSummary:
    """What `generate_dataset` wrote."""

    out: Path
    csv_path: Path
    dicom_root: Path
    n_exams: int
    n_images: int
    n_patients: int
    class_counts: dict[int, int]
    seconds: float


def generate_dataset(config: SynthConfig, log: Callable[[str], None] = print) -> SynthSummary:
    """Write a synthetic dataset to ``config.out`` and return what was written.

    Refuses an existing non-empty ``config.out`` (never overwrites data). Files
    are written to a hidden sibling folder that is renamed into place at the
    end, so an interrupted run leaves no half dataset at ``config.out``.
    """
    problems = config.problems()
    if problems:
        raise ConfigError("Invalid settings for the synthetic dataset:", problems)
    out = Path(config.out)
    _refuse_existing(out)
    start = time.perf_counter()
    shape = config.shape
    exams = _plan_exams(config)
    uid_suffix = f"synth:{config.seed}:{config.exams}:{config.class5}:{shape[0]}x{shape[1]}"
    log(f"Generating {_count(len(exams), 'synthetic exam')} ({config.size}, "
        f"compression={config.compression}, seed={config.seed}) into {out}")

    out.parent.mkdir(parents=True, exist_ok=True)
    # uuid only names the scratch folder; it never reaches the dataset.
    staging = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        n_images = _write_exams(staging, exams, config, uid_suffix)
        _write_csv(staging / CSV_NAME, exams)
        _move_into_place(staging, out)
    except BaseException:
        # BaseException too: a Ctrl-C (RunInterrupted) must not leave debris.
        shutil.rmtree(staging, ignore_errors=True)
        raise

    counts = Counter(exam.density_class for exam in exams)
    summary = SynthSummary(
        out=out, csv_path=out / CSV_NAME, dicom_root=out / ARCHIVE_NAME,
        n_exams=len(exams), n_images=n_images,
        n_patients=len({exam.patient_id for exam in exams}),
        class_counts={k: counts[k] for k in sorted(counts)},
        seconds=time.perf_counter() - start)
    log(f"Generated {_count(summary.n_exams, 'exam')} ({_count(summary.n_images, 'image')}, "
        f"{_count(summary.n_patients, 'patient')}) in {summary.seconds:.1f}s")
    log("Exams per class: " + ", ".join(f"{k}: {v}" for k, v in summary.class_counts.items()))
    log(f"Labels: {summary.csv_path}  Images: {summary.dicom_root}")
    return summary


def run_synth(config: SynthConfig) -> int:
    """Body of ``mammography synth`` (wired in cli/app.py); errors go up as DataError."""
    generate_dataset(config)
    return EXIT_OK


def _refuse_existing(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"Output folder {out} already exists and is not an empty folder: "
                        "choose another --out or remove it (synth never overwrites data).")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _move_into_place(staging: Path, out: Path) -> None:
    # An empty folder at `out` is accepted (e.g. made by the caller); rename
    # cannot replace it portably, so remove it first. If someone filled it in
    # the meantime rmdir fails and we report it instead of merging.
    if out.exists():
        try:
            out.rmdir()
        except OSError as exc:
            raise DataError(f"Output folder {out} was filled while generating: choose another "
                            "--out or remove it.") from exc
    staging.rename(out)


def _write_exams(root: Path, exams: Sequence[_Exam], config: SynthConfig,
                 uid_suffix: str) -> int:
    n_images = 0
    for exam in exams:
        folder = root / ARCHIVE_NAME / exam.accession
        folder.mkdir(parents=True)
        for laterality, view in exam.views:
            # One generator per image, keyed by position, so an image does not
            # depend on how many random numbers earlier images consumed.
            rng = np.random.default_rng(
                [*_seed_words(config.seed), 1, exam.index, VIEWS.index((laterality, view))])
            image = synthesize_mammogram(rng, exam.density_class, config.shape, view, laterality,
                                         dense_target=exam.dense_target)
            write_mammogram_dicom(
                folder / f"{laterality}_{view}.dcm", image,
                patient_id=exam.patient_id, accession=exam.accession, view=view,
                laterality=laterality, photometric=exam.device.photometric,
                bits_stored=exam.device.bits_stored,
                rescale_slope=exam.device.rescale_slope,
                rescale_intercept=exam.device.rescale_intercept,
                compression=config.compression, study_date=exam.study_date,
                seed_uid_suffix=uid_suffix, manufacturer=exam.device.manufacturer)
            n_images += 1
    return n_images


def _write_csv(path: Path, exams: Sequence[_Exam]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        for exam in exams:
            writer.writerow((exam.accession, exam.density_class, exam.patient_id))
