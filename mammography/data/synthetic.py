"""Synthetic screening-mammography dataset: real DICOM files, fake patients.

`mammography synth` and every test use this instead of patient data. It writes
the same layout as the reference archive::

    OUT/classificacao.csv                      AccessionNumber,Classification,PatientID
    OUT/archive/<AccessionNumber>/<L|R>_<CC|MLO>.dcm

The images carry a *learnable* density signal: the share of fibroglandular
(bright) tissue in the breast follows the BI-RADS class (A < 25 %, B 25-50 %,
C 50-75 %, D > 75 %), so a model trained on them must do better than chance.
Class 5 ("not classifiable") exams are degraded images of any density.

The DICOM encoding varies the way a multi-vendor archive does - MONOCHROME1
and MONOCHROME2, 12 and 14 bits stored, non-trivial rescale slope/intercept,
optionally RLE or JPEG 2000 lossless - so readers are exercised on the cases
that break naive loaders. Everything derives from the seed: the same settings
give byte-identical files on the same platform.
"""

from __future__ import annotations

import csv
import datetime as dt
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)
from scipy import ndimage

from mammography.config.synth import SynthConfig
from mammography.errors import EXIT_OK, ConfigError, DataError

CSV_NAME = "classificacao.csv"
ARCHIVE_NAME = "archive"
CSV_HEADER = ("AccessionNumber", "Classification", "PatientID")

MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
MG_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"
TRANSFER_SYNTAXES = {"none": ExplicitVRLittleEndian, "rle": RLELossless,
                     "j2k": JPEG2000Lossless}

#: Views of a complete screening exam, in file/series order.
VIEWS: tuple[tuple[str, str], ...] = (("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO"))

#: Dense share of the breast per class. Ranges keep a gap from the BI-RADS
#: cut points (25/50/75 %) so neighbouring classes stay separable despite
#: noise and the thin breast periphery.
DENSE_RANGES = {1: (0.03, 0.21), 2: (0.29, 0.46), 3: (0.54, 0.71), 4: (0.79, 0.95)}
#: Class imbalance roughly like the reference archive (A is rare, C common).
CLASS_SHARES = {1: 0.10, 2: 0.25, 3: 0.40, 4: 0.25}

#: Thresholds of `density_fraction`, on the [0, 1] intensity scale produced by
#: `synthesize_mammogram`: air sits near 0.03, fat near 0.3, dense tissue
#: (and the pectoral muscle) above 0.6.
BREAST_THRESHOLD = 0.12
DENSE_THRESHOLD = 0.55

# Share of patients with a follow-up exam (prior + current screening round).
REPEAT_PATIENT_SHARE = 0.30
# Physical field of view of a full-field detector (4096 rows at 70 um).
FIELD_ROWS_MM = 4096 * 0.07


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


# --------------------------------------------------------------------------- dataset


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


# --------------------------------------------------------------------------- anatomy


def synthesize_mammogram(rng: np.random.Generator, density_class: int, shape: tuple[int, int],
                         view: str, laterality: str, *,
                         dense_target: float | None = None) -> np.ndarray:
    """A synthetic mammogram: float32 in [0, 1], 1 = dense (bright), 0 = air.

    Orientation convention (the usual storage orientation, e.g.
    PatientOrientation A\\R for L-CC): the chest wall is on the image side of
    the breast's laterality - the *left* edge for a left breast, the *right*
    edge for a right breast - and the nipple points to the opposite edge. In
    MLO views the pectoral muscle is the bright triangle in the upper
    chest-wall corner.

    ``density_class`` 1-4 sets the dense share of the breast (``dense_target``
    overrides the random pick within the class range, so the views of one exam
    can share it); 5 gives a degraded, not classifiable image of any density.
    """
    _check_view(view, laterality)
    if density_class not in (1, 2, 3, 4, 5):
        raise ValueError(f"density_class must be 1-5, got {density_class}")
    rows, cols = shape
    if dense_target is None:
        low, high = DENSE_RANGES.get(density_class, (0.05, 0.95))
        dense_target = float(rng.uniform(low, high))

    geometry = _breast_geometry(rng, (rows, cols), view)
    pectoral = _pectoral(rng, (rows, cols)) if view == "MLO" else None
    image = _tissue_image(rng, geometry, pectoral, dense_target)
    image += _quantum_noise(rng, image)
    if density_class == 5:
        image = _degrade(rng, image)
    np.clip(image, 0.0, 1.0, out=image)
    # Drawn with the chest wall on the left; mirror for a right breast.
    if laterality == "R":
        image = image[:, ::-1]
    return np.ascontiguousarray(image, dtype=np.float32)


@dataclass
class _Geometry:
    edge: np.ndarray   # >0 inside the breast: normalised distance to the skin
    p: np.ndarray      # vertical coordinate, 0 at the breast's axis, +-1 at its border
    q: np.ndarray      # depth, 0 at the chest wall, 1 at the nipple


def _breast_geometry(rng: np.random.Generator, shape: tuple[int, int], view: str) -> _Geometry:
    """A half-ellipse attached to the left edge, with a wobbly outline.

    CC: roughly symmetric about the middle row. MLO: taller (it includes the
    axillary tail up to the top edge) and sheared so the nipple points down.
    """
    rows, cols = shape
    if view == "CC":
        cy, a = rows * rng.uniform(0.45, 0.55), rows * rng.uniform(0.36, 0.46)
        shear = rng.uniform(-0.05, 0.05)
    else:
        cy, a = rows * rng.uniform(0.50, 0.58), rows * rng.uniform(0.50, 0.60)
        shear = rng.uniform(0.12, 0.28)
    b = cols * rng.uniform(0.55, 0.82)
    y = np.arange(rows, dtype=np.float32)[:, None]
    x = np.arange(cols, dtype=np.float32)[None, :]
    p = (y - np.float32(cy) - np.float32(shear) * x) / np.float32(a)
    q = x / np.float32(b)
    r = np.sqrt(p * p + q * q)
    # Low-frequency wobble of the outline along the rows: real breasts are not ellipses.
    phases = rng.uniform(0, 2 * np.pi, size=3)
    amps = rng.uniform(0.005, 0.02, size=3)
    yy = y[:, 0] / np.float32(rows)
    wobble = sum(np.float32(amp) * np.sin(np.float32(2 * np.pi * (k + 1)) * yy + np.float32(ph))
                 for k, (amp, ph) in enumerate(zip(amps, phases, strict=True)))
    edge = (np.float32(1.0) + wobble.astype(np.float32)[:, None]) - r
    return _Geometry(edge=edge, p=p, q=q)


def _pectoral(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Soft mask (0-1) of the pectoral muscle: a triangle in the upper-left corner."""
    rows, cols = shape
    width, height = cols * rng.uniform(0.22, 0.42), rows * rng.uniform(0.35, 0.60)
    bow = rng.uniform(-0.3, 0.3)  # slightly convex or concave muscle border
    u = np.arange(cols, dtype=np.float32)[None, :] / np.float32(width)
    v = np.arange(rows, dtype=np.float32)[:, None] / np.float32(height)
    s = u + v + np.float32(bow) * u * v
    return np.clip((1.0 - s) / np.float32(0.04), 0.0, 1.0)


def _tissue_image(rng: np.random.Generator, geo: _Geometry, pectoral: np.ndarray | None,
                  dense_target: float) -> np.ndarray:
    shape = geo.edge.shape
    background = np.float32(rng.uniform(0.02, 0.05))
    fat, dense = np.float32(rng.uniform(0.27, 0.35)), np.float32(rng.uniform(0.70, 0.82))

    # Compressed-breast thickness: full behind the periphery, falling to zero
    # at the skin with a circular profile - the dark rim of real mammograms.
    falloff = np.float32(rng.uniform(0.10, 0.18))
    e = np.clip(geo.edge / falloff, 0.0, 1.0)
    thickness = np.sqrt(e * (2.0 - e))

    coarse = _smooth_field(rng, shape, 0.05)
    fine = _smooth_field(rng, shape, 0.012)
    # Glandular tissue sits behind the nipple, away from the chest wall and the
    # skin; the prior makes a low-density breast put its few dense islands there.
    prior = -(((geo.q - 0.4) / 0.55) ** 2 + (geo.p / 0.8) ** 2)
    gland = coarse + np.float32(0.4) * fine + np.float32(1.5) * prior
    inside = geo.edge > 0
    tissue = inside if pectoral is None else inside & (pectoral < 0.5)
    threshold = _quantile(gland, tissue, 1.0 - dense_target)
    # A ramp rather than a step: partial-volume edges between fat and gland.
    dense_share = np.clip(0.5 + (gland - threshold) / np.float32(0.5), 0.0, 1.0)

    # Gland is more heterogeneous than fat, hence the larger texture weight.
    texture = (np.float32(0.03) + np.float32(0.05) * dense_share) * fine
    breast = fat + dense_share * (dense - fat) + texture
    image = background + thickness * breast
    skin = np.float32(max(1.5, 0.006 * min(shape)) / shape[1])  # ~1.5 mm, normalised
    image += np.float32(0.08) * ((geo.edge > 0) & (geo.edge < skin))
    body = inside
    if pectoral is not None:
        muscle = np.float32(rng.uniform(0.58, 0.70)) + np.float32(0.03) * fine
        image = image * (1.0 - pectoral) + (background + muscle) * pectoral
        body = inside | (pectoral > 0)
    return np.where(body, image, background).astype(np.float32)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int],
                  sigma_frac: float) -> np.ndarray:
    """Gaussian random field, unit variance, blobs ~``sigma_frac`` of the short side.

    Filtered on a coarse grid and upsampled bilinearly: a full-field image
    would need kernels hundreds of pixels wide. The grid has the same size
    whatever the resolution, so the anatomy scales with the image.
    """
    rows, cols = shape
    sigma_px = max(sigma_frac * min(rows, cols), 0.5)
    # A grid sigma of about 2 cells is smooth enough for bilinear upsampling.
    step = max(1, round(sigma_px / 2))
    grid = (-(-rows // step) + 1, -(-cols // step) + 1)
    low = ndimage.gaussian_filter(rng.standard_normal(grid), sigma_px / step, mode="wrap",
                                  truncate=3.0)
    low = ((low - low.mean()) / (low.std() + 1e-12)).astype(np.float32)
    return _upsample(low, shape, step)


def _upsample(low: np.ndarray, shape: tuple[int, int], step: int) -> np.ndarray:
    rows, cols = shape
    ys = np.arange(rows, dtype=np.float32) / np.float32(step)
    i0 = ys.astype(np.intp)
    fy = (ys - np.floor(ys))[:, None]
    tmp = low[i0] * (1 - fy) + low[i0 + 1] * fy
    xs = np.arange(cols, dtype=np.float32) / np.float32(step)
    j0 = xs.astype(np.intp)
    fx = (xs - np.floor(xs))[None, :]
    # np.take keeps C order (fancy indexing on axis 1 would not), and C order
    # keeps every later full-size operation on the fast path.
    return np.take(tmp, j0, axis=1) * (1 - fx) + np.take(tmp, j0 + 1, axis=1) * fx


def _quantile(values: np.ndarray, mask: np.ndarray, q: float) -> np.float32:
    # A regular subsample of ~16k pixels pins a threshold to well under 1 % of
    # the breast area, at any image size.
    stride = max(1, int(np.sqrt(values.size / 16384)))
    sample = values[::stride, ::stride][mask[::stride, ::stride]]
    if sample.size == 0:
        return np.float32(np.inf)
    return np.float32(np.quantile(sample, float(np.clip(q, 0.0, 1.0))))


def _quantum_noise(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    # Photon noise grows with the signal; a floor stands in for detector noise.
    sigma = np.float32(0.008) + np.float32(0.02) * np.sqrt(image)
    return _unit_noise(rng, image.shape) * sigma


def _unit_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-mean, unit-variance pixel noise.

    Uniform rather than Gaussian: four times cheaper to draw (it dominated the
    generation time) and indistinguishable once added to the texture.
    """
    noise = rng.random(shape, dtype=np.float32) - np.float32(0.5)
    noise *= np.float32(np.sqrt(12.0))
    return noise


def _degrade(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Class 5: under-exposed, very noisy, with detector line artefacts."""
    rows, cols = image.shape
    image = image * np.float32(rng.uniform(0.45, 0.7))
    image += _unit_noise(rng, (rows, cols)) * np.float32(rng.uniform(0.10, 0.18))
    image += rng.normal(0.0, 0.06, size=cols).astype(np.float32)[None, :]
    return image


def density_fraction(image01: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Share of breast pixels that are dense (brighter than ``DENSE_THRESHOLD``).

    Without ``mask`` the breast is everything brighter than the air background
    (``BREAST_THRESHOLD``); in MLO views that includes the pectoral muscle, so
    the value is an image statistic for tests, not a clinical measurement.
    """
    image = np.asarray(image01, dtype=np.float32)
    breast = image > BREAST_THRESHOLD if mask is None else np.asarray(mask, dtype=bool)
    n_breast = int(np.count_nonzero(breast))
    if n_breast == 0:
        return 0.0
    return int(np.count_nonzero(breast & (image > DENSE_THRESHOLD))) / n_breast


def _check_view(view: str, laterality: str) -> None:
    if view not in ("CC", "MLO"):
        raise ValueError(f"view must be 'CC' or 'MLO', got {view!r}")
    if laterality not in ("L", "R"):
        raise ValueError(f"laterality must be 'L' or 'R', got {laterality!r}")


# --------------------------------------------------------------------------- DICOM


def write_mammogram_dicom(
    path: str | Path,
    image01: np.ndarray,
    *,
    patient_id: str,
    accession: str,
    view: str,
    laterality: str,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    rescale_slope: float = 1.0,
    rescale_intercept: float = 0.0,
    compression: str = "none",
    for_processing: bool = False,
    window: bool = True,
    study_date: str = "20240115",
    seed_uid_suffix: str = "",
    manufacturer: str = "MAMMOGRAPHY-SYNTH",
) -> Path:
    """Write one MG DICOM file from a [0, 1] image (1 = dense/bright) and return its path.

    Intensity ``I = image01 * (2**bits_stored - 1)`` is what the modality LUT
    (``stored * slope + intercept``) gives back for MONOCHROME2. MONOCHROME1
    stores the inverse, so the modality LUT gives ``2**bits_stored - 1 - I``
    and a reader that inverts MONOCHROME1 (``max - value``, or negating and
    then min-max normalising) recovers the same image as from MONOCHROME2.
    Stored values must fit in ``[0, 2**bits_stored - 1]``, else ValueError.

    UIDs derive from (``seed_uid_suffix``, accession, laterality, view): the
    same call writes the same bytes; pass another suffix to get new UIDs.
    """
    _check_view(view, laterality)
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, got {photometric!r}")
    if compression not in TRANSFER_SYNTAXES:
        raise ValueError(f"compression must be one of {sorted(TRANSFER_SYNTAXES)}, "
                         f"got {compression!r}")
    if not 8 < bits_stored <= 16:
        raise ValueError(f"bits_stored must be 9-16 (16 bits allocated), got {bits_stored}")
    stored = _stored_values(image01, photometric, bits_stored, rescale_slope, rescale_intercept)

    uid = _uid_factory(seed_uid_suffix, accession)
    sop_class = MG_FOR_PROCESSING if for_processing else MG_FOR_PRESENTATION
    sop_uid = uid("image", laterality, view)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    _set_patient_study(ds, patient_id, accession, study_date, uid("study"))
    _set_series_image(ds, view, laterality, uid("series", laterality, view), for_processing,
                      photometric, manufacturer)
    _set_geometry(ds, stored.shape)
    ds.RescaleSlope = _ds(rescale_slope)
    ds.RescaleIntercept = _ds(rescale_intercept)
    ds.RescaleType = "US"  # unspecified units, as MG detectors report
    if window:
        center, width = _window(image01, photometric, bits_stored)
        ds.WindowCenter, ds.WindowWidth = _ds(center), _ds(width)
        ds.VOILUTFunction = "LINEAR"

    ds.set_pixel_data(stored, photometric, bits_stored, generate_instance_uid=False)
    if compression != "none":
        # Pinned plugin: encoders differ in their bytes (gdcm's RLE does), and
        # the same seed must give the same files wherever the deps are installed.
        ds.compress(TRANSFER_SYNTAXES[compression], stored, encoding_plugin="pylibjpeg",
                    generate_instance_uid=False)
    path = Path(path)
    ds.save_as(path, enforce_file_format=True)
    return path


def _stored_values(image01: np.ndarray, photometric: str, bits_stored: int, slope: float,
                   intercept: float) -> np.ndarray:
    image = np.asarray(image01)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {image.shape}")
    if slope <= 0:
        raise ValueError(f"rescale_slope must be positive, got {slope}")
    # NaN makes min/max NaN and fails the comparison too.
    if not (float(image.min()) >= 0.0 and float(image.max()) <= 1.0):
        raise ValueError("image01 must hold finite values in [0, 1]")
    max_value = 2**bits_stored - 1
    # stored = (intensity - intercept) / slope, with intensity = image * max
    # (MONOCHROME2) or max - image * max (MONOCHROME1), as one multiply-add.
    sign = -1.0 if photometric == "MONOCHROME1" else 1.0
    offset = (max_value if sign < 0 else 0.0) - intercept
    stored = image.astype(np.float64)
    stored *= sign * max_value / slope
    stored += offset / slope
    np.rint(stored, out=stored)
    if stored.min() < 0 or stored.max() > max_value:
        raise ValueError(
            f"slope {slope} / intercept {intercept} give stored values "
            f"{stored.min():.0f}..{stored.max():.0f}, outside 0..{max_value} for "
            f"{bits_stored} bits stored; use slope >= 1 and an intercept <= 0 that fits")
    return stored.astype(np.uint16)


def _window(image01: np.ndarray, photometric: str, bits_stored: int) -> tuple[float, float]:
    """VOI window covering the breast, in modality-LUT output units."""
    max_value = 2**bits_stored - 1
    stride = max(1, min(image01.shape) // 512)
    sample = np.asarray(image01, dtype=np.float32)[::stride, ::stride]
    body = sample[sample > BREAST_THRESHOLD]
    if body.size == 0:
        body = sample.ravel()
    low, high = (float(v) * max_value for v in np.percentile(body, [0.5, 99.5]))
    center, width = (low + high) / 2, max(high - low, 1.0) * 1.05
    if photometric == "MONOCHROME1":
        center = max_value - center
    return center, width


def _uid_factory(suffix: str, accession: str) -> Callable[..., str]:
    def uid(*parts: str) -> str:
        return generate_uid(entropy_srcs=["mammography-synth", suffix, accession, *parts])
    return uid


def _set_patient_study(ds: Dataset, patient_id: str, accession: str, study_date: str,
                       study_uid: str) -> None:
    ds.PatientName = f"SYNTH^{patient_id}"
    ds.PatientID = patient_id
    ds.PatientSex = "F"
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "090000"
    ds.AccessionNumber = accession
    ds.StudyID = accession[-16:]
    ds.StudyDescription = "SYNTHETIC SCREENING MAMMOGRAPHY"
    ds.ReferringPhysicianName = ""


def _set_series_image(ds: Dataset, view: str, laterality: str, series_uid: str,
                      for_processing: bool, photometric: str, manufacturer: str) -> None:
    ds.Modality = "MG"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = VIEWS.index((laterality, view)) + 1
    ds.InstanceNumber = 1
    ds.SeriesDescription = f"{laterality} {view}"
    ds.Manufacturer = manufacturer
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType = "FOR PROCESSING" if for_processing else "FOR PRESENTATION"
    ds.BodyPartExamined = "BREAST"
    ds.ViewPosition = view
    ds.ImageLaterality = ds.Laterality = laterality
    ds.PatientOrientation = _patient_orientation(view, laterality)
    ds.BurnedInAnnotation = "NO"
    # DX/MG rule: pixel values are log-exposure; INVERSE goes with MONOCHROME1.
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.PresentationLUTShape = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"


def _patient_orientation(view: str, laterality: str) -> list[str]:
    # Rows run from the chest wall to the nipple: anterior for a left breast
    # (chest wall on the left edge), posterior for a right one. Columns run
    # across the breast (CC) or obliquely towards the feet (MLO).
    if laterality == "L":
        return ["A", "R"] if view == "CC" else ["A", "FR"]
    return ["P", "L"] if view == "CC" else ["P", "FL"]


def _set_geometry(ds: Dataset, shape: tuple[int, ...]) -> None:
    # Same physical field of view whatever the pixel count, as if the detector
    # were binned: 70 um at the full-field 4096 rows.
    spacing = _ds(FIELD_ROWS_MM / shape[0])
    ds.PixelSpacing = ds.ImagerPixelSpacing = [spacing, spacing]


def _ds(value: float) -> str:
    """A Decimal String value: at most 16 characters, no float noise."""
    text = f"{value:.6g}"
    return text if len(text) <= 16 else f"{value:.8e}"
