"""Writing a phantom image as a real MG DICOM file.

`write_mammogram_dicom` turns a [0, 1] image into stored values, a VOI window,
UIDs and the patient, study, series and geometry tags that the DICOM readers
look at. Its options vary the encoding the way a multi-vendor archive does -
MONOCHROME1 and MONOCHROME2, 12 and 14 bits stored (any of 9-16), non-trivial
rescale slope/intercept, FOR PROCESSING or FOR PRESENTATION, optionally RLE or
JPEG 2000 lossless - so readers are exercised on the cases that break naive
loaders; the reader's own tests build such files with it directly.

The same call must write the same bytes (the same seed gives the same
dataset): UIDs derive from the inputs instead of being random, and compression
is pinned to one encoder plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)

from mammography.data.synthetic.phantom import BREAST_THRESHOLD, _check_view
from mammography.data.synthetic.plan import VIEWS

MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
MG_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"
TRANSFER_SYNTAXES = {"none": ExplicitVRLittleEndian, "rle": RLELossless,
                     "j2k": JPEG2000Lossless}

# Physical field of view of a full-field detector (4096 rows at 70 um).
FIELD_ROWS_MM = 4096 * 0.07


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
