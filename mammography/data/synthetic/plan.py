"""Planning a synthetic dataset: exams, patients, classes, views, dates and devices.

No pixels here: `_plan_exams` decides everything about the dataset that is not
an image, from one generator seeded by ``--seed``, before any file is written.
Keeping the plan apart from the images keeps the dataset reproducible: labels
and the CSV do not depend on how many random numbers the phantom draws, and each
image gets its own generator keyed by its place in the plan (see
`generate._write_exams`).

Labels are fixed quotas rather than draws, so that even a handful of exams
allows stratified splits. About 30 % of patients come back for a second
screening round one to two years later, so patient-level splits have exams to
keep together; most exams have the four standard views, a few miss one or cover
one side only; and each exam comes from one of a few fictional devices whose
DICOM encodings differ the way a multi-vendor archive does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mammography.config.synth import SynthConfig
from mammography.data.synthetic.phantom import DENSE_RANGES

#: Views of a complete screening exam, in file/series order.
VIEWS: tuple[tuple[str, str], ...] = (("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO"))

#: Class imbalance roughly like the reference archive (A is rare, C common).
CLASS_SHARES = {1: 0.10, 2: 0.25, 3: 0.40, 4: 0.25}

# Share of patients with a follow-up exam (prior + current screening round).
REPEAT_PATIENT_SHARE = 0.30


@dataclass(frozen=True)
class Device:
    """How one (fictional) acquisition system encodes its images."""

    manufacturer: str
    photometric: str
    bits_stored: int
    rescale_slope: float
    rescale_intercept: float


#: Devices and their share of exams. Every combination keeps stored values
#: inside [0, 2**bits - 1] for any intensity in [0, 1] (slope >= 1, intercept
#: <= 0 and small enough), see `write_mammogram_dicom`.
DEVICES: tuple[tuple[Device, float], ...] = (
    (Device("SYNTH-A", "MONOCHROME2", 12, 1.0, 0.0), 0.45),
    (Device("SYNTH-B", "MONOCHROME1", 14, 1.0, 0.0), 0.20),
    (Device("SYNTH-C", "MONOCHROME2", 14, 2.0, -1024.0), 0.25),
    (Device("SYNTH-D", "MONOCHROME1", 12, 2.0, 0.0), 0.10),
)


@dataclass(frozen=True)
class _Exam:
    index: int
    accession: str
    patient_id: str
    density_class: int
    dense_target: float
    views: tuple[tuple[str, str], ...]
    study_date: str
    device: Device


def _seed_words(seed: int) -> list[int]:
    # SeedSequence wants non-negative integers; keep the sign as its own word
    # so that seeds 5 and -5 differ.
    return [abs(seed), int(seed < 0)]


def _plan_exams(config: SynthConfig) -> list[_Exam]:
    """The dataset's exams (patients, labels, views, devices), without images."""
    rng = np.random.default_rng([*_seed_words(config.seed), 0])
    n_total = config.exams + config.class5
    labels = _class_labels(config.exams) + [5] * config.class5
    rng.shuffle(labels)
    devices = [device for device, _ in DEVICES]
    device_idx = _spread(_quota(n_total, [share for _, share in DEVICES]))
    rng.shuffle(device_idx)
    accessions = rng.choice(90_000_000, size=n_total, replace=False) + 10_000_000

    exams: list[_Exam] = []
    for patient_no, n_exams in enumerate(_exams_per_patient(rng, n_total), start=1):
        dates = _study_dates(rng, n_exams)
        for date in dates:
            i = len(exams)
            label = int(labels[i])
            low, high = DENSE_RANGES.get(label, (0.05, 0.95))
            exams.append(_Exam(
                index=i, accession=str(int(accessions[i])), patient_id=f"P{patient_no:04d}",
                density_class=label, dense_target=float(rng.uniform(low, high)),
                views=_exam_views(rng), study_date=date,
                device=devices[int(device_idx[i])]))
    return exams


def _class_labels(n: int) -> list[int]:
    """Labels 1-4 in the reference proportions; each class at least twice if n >= 8.

    Fixed counts rather than random draws: small test sets must still allow
    stratified splits, whatever the seed.
    """
    counts = _quota(n, list(CLASS_SHARES.values()))
    if n >= 8:
        while min(counts) < 2:
            counts[counts.index(max(counts))] -= 1
            counts[counts.index(min(counts))] += 1
    return [cls for cls, count in zip(CLASS_SHARES, counts, strict=True) for _ in range(count)]


def _quota(n: int, shares: Sequence[float]) -> list[int]:
    """Split ``n`` by ``shares`` with the largest-remainder method (sums to ``n``)."""
    raw = [n * share / sum(shares) for share in shares]
    counts = [int(x) for x in raw]
    by_remainder = sorted(range(len(raw)), key=lambda k: (counts[k] - raw[k], k))
    for k in by_remainder[: n - sum(counts)]:
        counts[k] += 1
    return counts


def _spread(counts: Sequence[int]) -> list[int]:
    return [k for k, count in enumerate(counts) for _ in range(count)]


def _exams_per_patient(rng: np.random.Generator, n_total: int) -> list[int]:
    # Patients with two exams: share of *patients*, i.e. d / (n - d) ~ 30 %.
    n_double = round(n_total * REPEAT_PATIENT_SHARE / (1 + REPEAT_PATIENT_SHARE))
    if n_total >= 3:
        n_double = max(n_double, 1)
    plan = [2] * n_double + [1] * (n_total - 2 * n_double)
    rng.shuffle(plan)
    return plan


def _study_dates(rng: np.random.Generator, n_exams: int) -> list[str]:
    # Screening rounds are one to two years apart.
    day = dt.date(2019, 1, 1) + dt.timedelta(days=int(rng.integers(0, 4 * 365)))
    dates = []
    for _ in range(n_exams):
        dates.append(day.strftime("%Y%m%d"))
        day += dt.timedelta(days=int(rng.integers(330, 800)))
    return dates


def _exam_views(rng: np.random.Generator) -> tuple[tuple[str, str], ...]:
    """Mostly the four standard views; sometimes a view is missing or one side only."""
    u = rng.random()
    if u < 0.85:
        return VIEWS
    if u < 0.95:
        missing = VIEWS[int(rng.integers(len(VIEWS)))]
        return tuple(v for v in VIEWS if v != missing)
    side = "L" if rng.random() < 0.5 else "R"
    return tuple(v for v in VIEWS if v[0] == side)
