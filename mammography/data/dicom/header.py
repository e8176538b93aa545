"""The tags the data layer indexes, and what they already rule out.

:class:`DicomHeader` is what one file's header says, as plain strings and
numbers: identity (patient, accession, study), view and laterality with where
each came from (:mod:`mammography.data.dicom.views`), the acquisition (manufacturer,
model, SOP class, For Processing, synthetic 2-D), the encoding (photometric
interpretation, bits, frames, transfer syntax) and the pixel data's declared
and actual length. :func:`image_problem` says why a file is not a usable 2-D
grayscale mammogram from the header alone - the same reasons the decoder
gives, so ``data check --no-decode`` and training exclude the same files.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from pydicom.uid import UID

from mammography.data.dicom.views import laterality_of, view_of

#: What to do with multi-frame objects (tomosynthesis, cine, enhanced MR/CT).
FramePolicy = Literal["exclude", "first", "middle"]
FRAME_POLICIES = ("exclude", "first", "middle")

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
#: Largest frame decoded (rows x columns): 4x the largest full-field detectors
#: (~5900 x 4700). A corrupt header claiming more (e.g. 60000 x 60000) would
#: make a compressed-syntax decoder allocate gigabytes and run for many seconds
#: per file - per worker - before failing; it is refused up front instead.
MAX_FRAME_PIXELS = 10_000 * 10_000

#: SOP classes by what they hold (short names for the fingerprint and messages).
SOP_KINDS = {
    "1.2.840.10008.5.1.4.1.1.1.2": "MG For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.2.1": "MG For Processing",
    "1.2.840.10008.5.1.4.1.1.1.1": "DX For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "DX For Processing",
    "1.2.840.10008.5.1.4.1.1.1": "CR",
    "1.2.840.10008.5.1.4.1.1.13.1.3": "DBT",
    "1.2.840.10008.5.1.4.1.1.13.1.4": "Breast Projection For Presentation",
    "1.2.840.10008.5.1.4.1.1.13.1.5": "Breast Projection For Processing",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture",
}
#: SOP classes whose pixels are raw detector data ("for processing").
FOR_PROCESSING_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.1.2.1", "1.2.840.10008.5.1.4.1.1.1.1.1",
    "1.2.840.10008.5.1.4.1.1.13.1.5",
})
TOMOSYNTHESIS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.13.1.3"
#: ImageType values by which vendors mark a 2-D image synthesised from a
#: tomosynthesis volume (Hologic C-View: GENERATED_2D).
SYNTHETIC_2D_TYPES = frozenset({"GENERATED_2D", "SYNTHESIZED", "SYNTHETIC", "SYNTHESIZED_2D"})

PixelKind = Literal["native", "encapsulated", "float", "none", "unknown"]


@dataclass(frozen=True)
class PixelInfo:
    """Where the pixel data is and how long: the header's and the file's word."""

    kind: PixelKind = "unknown"
    declared: int = -1     # length in the element header (-1: undefined or unknown)
    in_file: int = -1      # bytes of it actually in the file (-1: unknown)


@dataclass(frozen=True)
class DicomHeader:
    """The tags the data layer indexes, as plain strings and numbers."""

    path: Path
    patient_id: str
    accession: str
    study_uid: str
    view: str            # "CC", "MLO", ... (see views.py), "" when no source has one
    laterality: str      # "L" or "R", "" when no source has one
    photometric: str
    rows: int
    columns: int
    bits_stored: int
    transfer_syntax: str  # the UID's name, e.g. "JPEG 2000 Image Compression (Lossless Only)"
    modality: str
    for_processing: bool
    view_source: str = ""        # ViewPosition, ViewCodeSequence, PatientOrientation, ...
    laterality_source: str = ""  # ImageLaterality, Laterality, FrameLaterality, ...
    manufacturer: str = ""
    model: str = ""
    sop_class_uid: str = ""
    sop_class: str = ""          # short name (SOP_KINDS) or the UID's name
    synthetic_2d: bool = False
    voi_lut_function: str = ""   # LINEAR, LINEAR_EXACT, SIGMOID, VOI LUT, none
    pixel_spacing: tuple[float, float] | None = None  # mm (row, column)
    frames: int = 1
    samples_per_pixel: int = 1
    bits_allocated: int = 0
    pixel: PixelInfo = PixelInfo()
    transfer_syntax_uid: str = ""

    @property
    def image_kind(self) -> str:
        """One label of what the object is: DBT, synthetic 2D, For Processing, ..."""
        if self.sop_class_uid == TOMOSYNTHESIS_SOP_CLASS:
            return "DBT"
        if self.synthetic_2d:
            return "synthetic 2D"
        if self.frames > 1:
            return "multi-frame"
        return "For Processing" if self.for_processing else "For Presentation"


#: DicomHeader's fields after ``path``: what the header memo stores.
MEMO_FIELDS = tuple(f.name for f in fields(DicomHeader))[1:]
#: The fields that differ from file to file; the others describe the acquisition
#: and repeat across an archive's files, so the memo parses each distinct set once.
FILE_FIELDS = ("patient_id", "accession", "study_uid", "view", "laterality", "view_source",
               "laterality_source")
ACQUISITION_FIELDS = tuple(name for name in MEMO_FIELDS if name not in FILE_FIELDS)
#: Between the two JSON arrays of a memo text; never in json.dumps output, which
#: escapes every control character.
TEXT_SEPARATOR = "\x1e"
_PIXEL_AT = ACQUISITION_FIELDS.index("pixel")
_SPACING_AT = ACQUISITION_FIELDS.index("pixel_spacing")
_PIXEL_KINDS = frozenset({"native", "encapsulated", "float", "none", "unknown"})
#: The plain type of every acquisition field but ``pixel`` and ``pixel_spacing``
#: (checked apart): a memo row of other types is refused, not trusted.
_PLAIN_TYPES = {"str": str, "int": int, "bool": bool}
_ACQUISITION_TYPES = tuple(_PLAIN_TYPES.get(str(f.type)) for f in fields(DicomHeader)
                           if f.name in ACQUISITION_FIELDS)


def header_to_text(header: DicomHeader) -> str:
    """The header without its path, as the header memo stores it: the file's own
    fields and the acquisition's, two compact JSON arrays joined by TEXT_SEPARATOR."""
    own = [getattr(header, name) for name in FILE_FIELDS]
    acquisition = [getattr(header, name) for name in ACQUISITION_FIELDS]
    acquisition[_PIXEL_AT] = [header.pixel.kind, header.pixel.declared, header.pixel.in_file]
    return (json.dumps(own, separators=(",", ":"), ensure_ascii=False) + TEXT_SEPARATOR
            + json.dumps(acquisition, separators=(",", ":"), ensure_ascii=False))


class HeaderDecoder:
    """Headers back from :func:`header_to_text`, each distinct acquisition parsed once.

    Headers are filled through ``__dict__`` rather than ``__init__``: the frozen
    dataclass's generated ``__init__`` costs 9 us for 27 fields, and a warm
    start builds one header per image. Headers of one decoder share their
    (frozen) acquisition values. The result compares equal to the header read
    from the file (tested); ``ValueError`` when a text does not fit the fields.
    """

    def __init__(self) -> None:
        self._acquisitions: dict[str, dict[str, Any]] = {}

    def decode(self, path: Path, own: list[Any], acquisition: str) -> DicomHeader:
        """The header of ``path`` from its parsed own fields and its acquisition text."""
        if not isinstance(own, list) or len(own) != len(FILE_FIELDS) \
                or not all(type(value) is str for value in own):
            raise ValueError("header text does not match DicomHeader's fields")
        shared = self._acquisitions.get(acquisition)
        if shared is None:
            shared = self._acquisitions[acquisition] = _acquisition(json.loads(acquisition))
        header = object.__new__(DicomHeader)
        state = header.__dict__
        state.update(shared)
        state["path"] = path
        state.update(zip(FILE_FIELDS, own, strict=True))
        return header


def header_from_text(path: Path, text: str) -> DicomHeader:
    """The inverse of :func:`header_to_text`, for the file at ``path``."""
    own, separator, acquisition = text.partition(TEXT_SEPARATOR)
    if not separator:
        raise ValueError("not a header text")
    return HeaderDecoder().decode(path, json.loads(own), acquisition)


def _acquisition(values: Any) -> dict[str, Any]:
    """The acquisition fields of a memo text, each of its declared type (``ValueError``
    otherwise: a damaged or edited memo row must be a miss, not a wrong header)."""
    if not isinstance(values, list) or len(values) != len(ACQUISITION_FIELDS):
        raise ValueError("header text does not match DicomHeader's fields")
    for value, kind in zip(values, _ACQUISITION_TYPES, strict=True):
        if kind is not None and type(value) is not kind:
            raise ValueError("header text does not match DicomHeader's field types")
    pixel = values[_PIXEL_AT]
    if not (isinstance(pixel, list) and len(pixel) == 3 and pixel[0] in _PIXEL_KINDS
            and type(pixel[1]) is int and type(pixel[2]) is int):
        raise ValueError("header text has no valid pixel data location")
    values[_PIXEL_AT] = PixelInfo(*pixel)
    spacing = values[_SPACING_AT]
    if spacing is not None:
        if not (isinstance(spacing, list) and len(spacing) == 2 and all(
                type(v) in (int, float) and math.isfinite(v) and v > 0 for v in spacing)):
            raise ValueError("header text has no valid pixel spacing")
        values[_SPACING_AT] = tuple(spacing)
    return dict(zip(ACQUISITION_FIELDS, values, strict=True))


def header_from_dataset(ds: Any, path: Path, pixel: PixelInfo) -> DicomHeader:
    meta = getattr(ds, "file_meta", None)
    syntax = None if meta is None else meta.get("TransferSyntaxUID", None)
    media_uid = str(meta.get("MediaStorageSOPClassUID", "") or "").strip() if meta else ""
    sop_uid = text(ds, "SOPClassUID") or media_uid
    intent = text(ds, "PresentationIntentType").upper()
    view, view_source = view_of(ds)
    laterality, laterality_source = laterality_of(ds)
    image_type = {v.strip().upper() for v in values(ds, "ImageType")}
    return DicomHeader(
        path=path,
        patient_id=text(ds, "PatientID"),
        accession=text(ds, "AccessionNumber"),
        study_uid=text(ds, "StudyInstanceUID"),
        view=view,
        laterality=laterality,
        photometric=text(ds, "PhotometricInterpretation").upper(),
        rows=integer(ds, "Rows"),
        columns=integer(ds, "Columns"),
        bits_stored=integer(ds, "BitsStored"),
        transfer_syntax="" if syntax is None else str(syntax.name),
        modality=text(ds, "Modality"),
        for_processing=intent == "FOR PROCESSING" or bool(
            {sop_uid, media_uid} & FOR_PROCESSING_SOP_CLASSES),
        view_source=view_source,
        laterality_source=laterality_source,
        manufacturer=text(ds, "Manufacturer"),
        model=text(ds, "ManufacturerModelName"),
        sop_class_uid=sop_uid,
        sop_class=sop_class_name(sop_uid),
        synthetic_2d=bool(image_type & SYNTHETIC_2D_TYPES),
        voi_lut_function=_voi_function(ds),
        pixel_spacing=_spacing(ds),
        frames=max(1, integer(ds, "NumberOfFrames")),
        samples_per_pixel=integer(ds, "SamplesPerPixel") or 1,
        bits_allocated=integer(ds, "BitsAllocated"),
        pixel=pixel,
        transfer_syntax_uid="" if syntax is None else str(syntax),
    )


def sop_class_name(uid: str) -> str:
    if not uid:
        return ""
    return SOP_KINDS.get(uid) or str(UID(uid).name)


def image_problem(header: DicomHeader, frames: FramePolicy = "exclude") -> str | None:
    """Why the header alone rules the file out as a 2-D grayscale image (None: it does not)."""
    if header.pixel.kind == "none":
        what = header.modality or header.sop_class or "object of unknown type"
        return f"no pixel data ({what}: not an image)"
    if not header.photometric:
        return "no Photometric Interpretation (0028,0004): not a valid image"
    if header.photometric not in MONOCHROME or header.samples_per_pixel != 1:
        return (f"unsupported photometric interpretation {header.photometric!r} with "
                f"{header.samples_per_pixel} sample(s) per pixel: only grayscale "
                "(MONOCHROME1/MONOCHROME2) images are supported")
    if header.rows <= 0 or header.columns <= 0:
        return f"bad image size {header.rows} x {header.columns}"
    if header.rows * header.columns > MAX_FRAME_PIXELS:
        return (f"image size {header.rows} x {header.columns} is implausibly large (more "
                f"than {MAX_FRAME_PIXELS // 1_000_000} megapixels): a corrupt Rows/Columns "
                "header?")
    if not header.transfer_syntax_uid:
        return "no transfer syntax (file meta header missing)"
    if header.frames > 1 and frames == "exclude":
        return multiframe_reason(header)
    return _short_pixel_data(header)


def multiframe_reason(header: DicomHeader) -> str:
    what = ("breast tomosynthesis volume" if header.image_kind == "DBT" else
            f"multi-frame object ({header.sop_class or header.modality or 'unknown type'})")
    return (f"{what} with {header.frames} frames: not a 2-D mammogram (--multiframe first "
            "or middle takes one frame deliberately)")


def _short_pixel_data(header: DicomHeader) -> str | None:
    """Native pixel data shorter than Rows x Columns x frames x Bits Allocated needs."""
    pixel = header.pixel
    if pixel.kind != "native" or header.bits_allocated <= 0:
        return None
    needed = math.ceil(header.rows * header.columns * header.frames * header.bits_allocated / 8)
    have = [n for n in (pixel.declared, pixel.in_file) if n >= 0]
    if have and min(have) < needed:
        return (f"truncated pixel data: {min(have)} bytes, the header needs {needed} "
                f"({header.rows} x {header.columns} x {header.frames} frame(s) x "
                f"{header.bits_allocated} bits)")
    return None


def _voi_function(ds: Any) -> str:
    if ds.get("VOILUTSequence"):
        return "VOI LUT"
    if ds.get("WindowCenter") is None or ds.get("WindowWidth") is None:
        return "none"
    return text(ds, "VOILUTFunction").upper() or "LINEAR"


def _spacing(ds: Any) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            found = [float(v) for v in values(ds, keyword)]
        except (TypeError, ValueError):
            continue
        if len(found) == 2 and all(math.isfinite(v) and v > 0 for v in found):
            return (round(found[0], 6), round(found[1], 6))
    return None


def text(ds: Any, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


def integer(ds: Any, keyword: str) -> int:
    value = ds.get(keyword, None)
    return 0 if value in (None, "") else int(value)


def values(ds: Any, keyword: str) -> list[str]:
    value = ds.get(keyword, None)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    try:
        return [str(v) for v in value]
    except TypeError:
        return [str(value)]
