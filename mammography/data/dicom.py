"""Reading DICOM files robustly: header index, pixel decode, display intensities.

Two entry points, both of which raise :class:`DicomReadError` (and nothing else)
for any per-file problem, so callers can skip the file with a WARNING and record
it in the data manifest:

* :func:`read_header` - tags only (``stop_before_pixels``), to index thousands
  of files quickly.
* :func:`decode` - a float32 2-D image in ``[0, 1]`` where **1 = bright = dense
  tissue**, whatever the photometric interpretation.

How :func:`decode` turns stored values into intensities (DICOM PS3.4 N.2, the
grayscale pipeline):

1. Pixel data of the **first frame** (a multi-frame object - tomosynthesis,
   cine - contributes its first frame only; screening mammograms are single
   frame). All transfer syntaxes go through pydicom's decoder plugins
   (pylibjpeg-openjpeg, pyjpegls, pylibjpeg-rle, python-gdcm, pillow).
2. Modality LUT: Modality LUT Sequence or Rescale Slope/Intercept.
3. VOI: VOI LUT Sequence, else Window Center/Width (first value when several;
   VOI LUT Function LINEAR, LINEAR_EXACT or SIGMOID), else - or when pydicom
   rejects the VOI tags - a robust percentile window (0.5-99.5 % of the
   non-background pixels, see :func:`_percentile_window`).
4. MONOCHROME1 inversion, so that bright always means dense.
5. Scaling to ``[0, 1]`` by the VOI output range (not by the image's own
   min/max, which would stretch every image differently).

For speed, steps 2-5 are folded into one lookup table over every value the
stored pixels can take (``2**BitsStored`` entries for unsigned data, 65536 for
signed 16-bit) and applied with one indexing pass; the table is built by
running pydicom's own functions on the table's domain, so the result means
exactly what the step-by-step chain means (the tests compare the two). When
the table is a clipped straight line (a linear window, or the percentile
window - the common cases) :class:`IntensityMap` also carries that line, which
lets :mod:`mammography.data.preprocess` average raw integers before mapping.
Uncompressed little-endian pixel data is memory-mapped rather than read
(:func:`_mapped_frame`), so a crop never pays for the pixels it drops.

Not thread-safe in one respect: pydicom's warnings are silenced with
``warnings.catch_warnings``, which swaps process-wide filters. Use processes
(not threads) to decode in parallel.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder, pixel_array
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    RLELossless,
)

__all__ = [
    "Affine",
    "DicomHeader",
    "DicomReadError",
    "IntensityMap",
    "RawFrame",
    "decode",
    "read_frame",
    "read_header",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: SOP classes whose pixels are raw detector data ("for processing").
FOR_PROCESSING_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.1.2.1",  # Digital Mammography X-Ray Image - For Processing
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image - For Processing
})
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")

#: Values larger than this are read from the file only when used (the pixel
#: data: memory-mapped when uncompressed, see _mapped_frame).
DEFER_BYTES = 1 << 18
PIXEL_DATA_TAG = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF

#: Percentile window used when a file has no usable VOI tags.
PERCENTILE_WINDOW = (0.5, 99.5)
#: Pixels sampled (on a regular grid) to estimate the percentile window: 16k
#: samples put ~80 in each 0.5 % tail, plenty for a window and 4x cheaper than 65k.
WINDOW_SAMPLE_PIXELS = 1 << 14
#: Background = the darkest part of the value range, as a share of the range
#: between the darkest value and the 99.9th percentile. Air in a mammogram (and
#: in CT/MR) sits at the dark end; markers at the bright end are excluded by
#: the percentile itself.
BACKGROUND_RANGE_SHARE = 0.10
#: Largest frame decoded (rows x columns): 4x the largest full-field detectors
#: (~5900 x 4700). A corrupt header claiming more (e.g. 60000 x 60000) would
#: make a compressed-syntax decoder allocate gigabytes and run for many seconds
#: per file - per worker - before failing; it is refused up front instead.
MAX_FRAME_PIXELS = 10_000 * 10_000

#: Decoder plugins used only when no other can decode a syntax (see _pixel_array).
_ABORTING_PLUGINS = frozenset({"gdcm"})

# HTJ2K (2021) postdates pydicom's JPEG2000TransferSyntaxes constant.
_HTJ2K = frozenset({"1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
                    "1.2.840.10008.1.2.4.203"})


class DicomReadError(Exception):
    """A DICOM file that cannot be used, with a reason meant for a log line."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[Path, str]]:
        # Exceptions pickle through ``args`` (the joined message) by default;
        # worker processes must hand back path and reason intact.
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class DicomHeader:
    """The tags the data layer indexes, as plain strings and numbers."""

    path: Path
    patient_id: str
    accession: str
    study_uid: str
    view: str            # ViewPosition ("CC", "MLO", ...), "" when absent
    laterality: str      # ImageLaterality, else Laterality, "" when absent
    photometric: str
    rows: int
    columns: int
    bits_stored: int
    transfer_syntax: str  # the UID's name, e.g. "JPEG 2000 Image Compression (Lossless Only)"
    modality: str
    for_processing: bool


@dataclass(frozen=True)
class Affine:
    """``y = clip(alpha * clip(x, lo, hi) + beta, 0, 1)`` equals the table for every stored x.

    ``lo``/``hi`` are the last stored values on the flat parts of the table, so
    the straight line is already <= 0 (>= 1) there: averaging ``clip(x, lo, hi)``
    over a block and then applying the line differs from averaging the table
    only in blocks that mix flat and sloped values, by less than ``|alpha|``.
    """

    alpha: float
    beta: float
    lo: int
    hi: int


@dataclass(frozen=True)
class IntensityMap:
    """Stored pixel value -> display intensity in ``[0, 1]`` (1 = bright = dense).

    ``lut`` (float32) is indexed by the stored values viewed as unsigned
    integers; it is ``None`` for 32-bit or float pixel data, where ``chain``
    maps values directly (those are rare and small, so no table is built).
    ``source`` says which VOI step was used: "voi_lut", "window" or "percentile".
    """

    lut: np.ndarray | None
    affine: Affine | None
    source: str
    chain: _Chain | None = None

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Map stored values (any shape, views welcome) to float32 intensities."""
        if self.lut is None:
            assert self.chain is not None
            return self.chain(raw)
        return self.lut[_as_index(raw)]  # fancy indexing beats np.take here


@dataclass(frozen=True)
class RawFrame:
    """The first frame's stored values, the header and the map to intensities.

    ``raw`` may be a read-only view on the file's bytes: never write to it.
    """

    raw: np.ndarray
    header: DicomHeader
    mapping: IntensityMap


# --------------------------------------------------------------------------- public API


def read_header(path: str | Path) -> DicomHeader:
    """The indexed tags of one file, without reading its pixel data."""
    path = Path(path)
    with _quiet():
        ds = _read_dataset(path, stop_before_pixels=True)
        return _guard(path, "cannot read the header", lambda: _header(ds, path))


def decode(path: str | Path) -> tuple[np.ndarray, DicomHeader]:
    """The first frame as float32 in ``[0, 1]`` (1 = bright = dense) and its header."""
    frame = read_frame(path)
    image = _guard(frame.header.path, "cannot map pixel values",
                   lambda: frame.mapping.apply(frame.raw))
    return image, frame.header


def read_frame(path: str | Path) -> RawFrame:
    """Stored values of the first frame plus the map to intensities (what decode applies).

    :mod:`mammography.data.preprocess` uses this to work on the integer
    values (crop, downsample) before mapping them.
    """
    path = Path(path)
    with _quiet():
        ds = _read_dataset(path, stop_before_pixels=False)
        header = _guard(path, "cannot read the header", lambda: _header(ds, path))
        _check_image(ds, header)
        raw, table_bits = _first_frame(ds, header)
        mapping = _guard(path, "cannot apply the modality/VOI LUT",
                         lambda: _intensity_map(ds, raw, path, table_bits))
    return RawFrame(raw=raw, header=header, mapping=mapping)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """pydicom warns while converting values lazily, long after ``dcmread`` returned
    (an over-long UID, an odd VR): per-file noise that would land in run.log as
    ``WARNING:`` lines, once per image and epoch. Real problems raise instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# --------------------------------------------------------------------------- reading


def _guard(path: Path, what: str, func: Callable[[], T]) -> T:
    """Run ``func``; turn anything it raises into DicomReadError ("what: Type: message")."""
    try:
        return func()
    except DicomReadError:
        raise
    except Exception as exc:  # per-file errors must never escape unwrapped
        raise DicomReadError(path, f"{what}: {type(exc).__name__}: {exc}") from exc
    except BaseException as exc:
        if not _is_panic(exc):
            raise
        raise DicomReadError(path, f"{what}: {type(exc).__name__}: {exc}") from None


def _is_panic(exc: BaseException) -> bool:
    """A Rust decoder's panic on bad bytes (pylibjpeg-rle: "index out of bounds").

    pyo3 raises it as ``PanicException``, a ``BaseException`` so that ``except
    Exception`` does not swallow it - which let one corrupt RLE file end a
    whole run. It is a per-file failure like any other decoder error. (Ctrl-C,
    SystemExit and RunInterrupted are BaseExceptions too, and stay untouched.)
    """
    return type(exc).__name__ == "PanicException"


def _read_dataset(path: Path, *, stop_before_pixels: bool) -> Dataset:
    """The parsed file; large values (the pixel data) stay on disk until used."""
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise DicomReadError(path, "file not found") from exc
    except OSError as exc:
        raise DicomReadError(path, f"cannot access the file: {exc}") from exc
    if path.is_dir():
        raise DicomReadError(path, "is a directory, not a file")
    if size == 0:
        raise DicomReadError(path, "empty file (0 bytes)")
    with warnings.catch_warnings():
        # pydicom warns about many harmless deviations (odd VRs, lengths);
        # real problems surface as exceptions below.
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels,
                                 defer_size=DEFER_BYTES)
        except InvalidDicomError:
            ds = _read_without_preamble(path, stop_before_pixels)
        except OSError as exc:
            raise DicomReadError(path, f"cannot read the file: {exc}") from exc
        except Exception as exc:  # pydicom raises many types on bad bytes
            raise DicomReadError(
                path, f"not a readable DICOM file (truncated or corrupt header?): "
                f"{type(exc).__name__}: {exc}") from exc
    _guard(path, "cannot determine the transfer syntax", lambda: _ensure_transfer_syntax(ds))
    return ds


def _read_without_preamble(path: Path, stop_before_pixels: bool) -> Dataset:
    """Old files (ACR-NEMA style) lack the 128-byte preamble and "DICM" marker.

    ``force=True`` parses anything, so the result must look like an image or
    composite object before we believe it is DICOM at all.
    """
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True,
                             defer_size=DEFER_BYTES)
        plausible = "SOPClassUID" in ds or ("Rows" in ds and "Columns" in ds)
    except Exception:  # garbage bytes fail in arbitrary ways
        plausible = False
    if not plausible:
        raise DicomReadError(path, "not a DICOM file (no DICM marker and no recognisable tags)")
    return ds


def _ensure_transfer_syntax(ds: Dataset) -> None:
    """Files without a meta header still need a transfer syntax to decode pixels."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID"):
        return
    implicit, little = ds.original_encoding
    if implicit is None:
        return  # nothing parsed; _check_image reports what is missing
    syntax = (ImplicitVRLittleEndian if implicit else
              ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    if meta is None:
        ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


def _int(ds: Dataset, keyword: str) -> int:
    value = ds.get(keyword, None)
    return 0 if value in (None, "") else int(value)


def _transfer_syntax(ds: Dataset) -> UID | None:
    meta = getattr(ds, "file_meta", None)
    return None if meta is None else meta.get("TransferSyntaxUID", None)


def _header(ds: Dataset, path: Path) -> DicomHeader:
    syntax = _transfer_syntax(ds)
    sop_classes = {_text(ds, "SOPClassUID")}
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        sop_classes.add(str(meta.get("MediaStorageSOPClassUID", "")))
    intent = _text(ds, "PresentationIntentType").upper()
    return DicomHeader(
        path=path,
        patient_id=_text(ds, "PatientID"),
        accession=_text(ds, "AccessionNumber"),
        study_uid=_text(ds, "StudyInstanceUID"),
        view=_text(ds, "ViewPosition"),
        laterality=_text(ds, "ImageLaterality") or _text(ds, "Laterality"),
        photometric=_text(ds, "PhotometricInterpretation").upper(),
        rows=_int(ds, "Rows"),
        columns=_int(ds, "Columns"),
        bits_stored=_int(ds, "BitsStored"),
        transfer_syntax="" if syntax is None else str(syntax.name),
        modality=_text(ds, "Modality"),
        for_processing=intent == "FOR PROCESSING" or bool(sop_classes & FOR_PROCESSING_SOP_CLASSES),
    )


def _check_image(ds: Dataset, header: DicomHeader) -> None:
    """Refuse what is not a grayscale image before spending time on decoding."""
    path = header.path
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        what = header.modality or _sop_class_name(ds)
        raise DicomReadError(path, f"no pixel data ({what}: not an image)")
    samples = _guard(path, "bad Samples per Pixel", lambda: _int(ds, "SamplesPerPixel") or 1)
    if not header.photometric:
        raise DicomReadError(path, "no Photometric Interpretation (0028,0004): not a valid image")
    if header.photometric not in MONOCHROME or samples != 1:
        raise DicomReadError(
            path, f"unsupported photometric interpretation {header.photometric!r} with "
            f"{samples} sample(s) "
            "per pixel: only grayscale (MONOCHROME1/MONOCHROME2) images are supported")
    if header.rows <= 0 or header.columns <= 0:
        raise DicomReadError(path, f"bad image size {header.rows} x {header.columns}")
    if header.rows * header.columns > MAX_FRAME_PIXELS:
        raise DicomReadError(
            path, f"image size {header.rows} x {header.columns} is implausibly large (more "
            f"than {MAX_FRAME_PIXELS // 1_000_000} megapixels): a corrupt Rows/Columns header?")
    if _transfer_syntax(ds) is None:
        raise DicomReadError(path, "no transfer syntax (file meta header missing)")


def _sop_class_name(ds: Dataset) -> str:
    uid = _text(ds, "SOPClassUID")
    return str(UID(uid).name) if uid else "object of unknown type"


def _codec_hint(syntax: UID) -> str:
    """Which package decodes ``syntax`` - the part of the message the user acts on."""
    if syntax in JPEGTransferSyntaxes:
        return ("install pylibjpeg-libjpeg (python-gdcm and pillow cover 8-bit and lossless "
                "JPEG but not 12-bit JPEG Extended)")
    if syntax in JPEGLSTransferSyntaxes:
        return "install pyjpegls or pylibjpeg-libjpeg"
    if syntax in JPEG2000TransferSyntaxes or syntax in _HTJ2K:
        return "install pylibjpeg-openjpeg"
    if syntax == RLELossless:
        return "install pylibjpeg-rle"
    return ("pydicom has no decoder for it; convert the file to an uncompressed transfer "
            "syntax first (e.g. gdcmconv --raw or dcmtk dcmdjpeg)")


def _syntax_label(syntax: UID) -> str:
    name = str(syntax.name)
    return name if name == str(syntax) else f"{name} ({syntax})"


def _first_frame(ds: Dataset, header: DicomHeader) -> tuple[np.ndarray, int]:
    """The first frame's stored values, native byte order, and the bits they fit in."""
    path = header.path
    syntax = _transfer_syntax(ds)
    assert syntax is not None  # checked in _check_image
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as exc:
        raise DicomReadError(path, f"no decoder for transfer syntax {_syntax_label(syntax)}: "
                             f"{_codec_hint(syntax)}") from exc
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "no plugin installed"
        raise DicomReadError(path, f"no decoder available for transfer syntax "
                             f"{_syntax_label(syntax)} ({missing}): {_codec_hint(syntax)}")
    native = not syntax.is_encapsulated
    bits_allocated = _guard(path, "bad Bits Allocated", lambda: _int(ds, "BitsAllocated"))
    mapped = _guard(path, "cannot map the pixel data", lambda: _mapped_frame(ds, header))
    if mapped is not None:
        return _fit_bits_stored(mapped, header.bits_stored, may_mask=True)
    # A view on the file's bytes saves pydicom's copy and unused-bit masking
    # (the main cost of decoding an uncompressed image); _fit_bits_stored
    # masks only when a value actually uses those bits.
    as_view = native and bits_allocated in (8, 16)
    opts = {"view_only": True, "correct_unused_bits": False} if as_view else {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = _pixel_array(ds, decoder, opts)
    except Exception as exc:  # decoders raise anything
        raise DicomReadError(path, _decode_failure(syntax, exc)) from exc
    except BaseException as exc:  # ... including a Rust panic (see _is_panic)
        if not _is_panic(exc):
            raise
        raise DicomReadError(path, _decode_failure(syntax, exc)) from None
    if arr.ndim != 2:
        raise DicomReadError(path, f"decoded pixel data has shape {arr.shape}, expected 2-D")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return _fit_bits_stored(arr, header.bits_stored, may_mask=as_view)


def _pixel_array(ds: Dataset, decoder: object, opts: dict[str, bool]) -> np.ndarray:
    """Frame 0 through pydicom's plugins, python-gdcm only when no other one can decode it.

    pydicom tries gdcm *first* for JPEG, JPEG-LS and JPEG 2000. On some corrupt
    files gdcm throws a C++ exception its binding does not catch, and
    ``std::terminate`` aborts the whole process (fuzzing found one: a JPEG-LS
    file whose Rows disagree with its codestream) - a crash of the run, not a
    per-file error. pylibjpeg, pyjpegls and pillow fail with Python exceptions.
    """
    plugins = list(getattr(decoder, "_available", None) or decoder.available_plugins)
    safe = [name for name in plugins if name not in _ABORTING_PLUGINS]
    if not safe or len(safe) == len(plugins):
        return pixel_array(ds, index=0, **opts)
    failures = []
    for name in safe:
        try:
            return pixel_array(ds, index=0, decoding_plugin=name, **opts)
        except Exception as exc:
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
        except BaseException as exc:  # a Rust decoder's panic (see _is_panic)
            if not _is_panic(exc):
                raise
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
    raise RuntimeError("Unable to decode as exceptions were raised by all available plugins "
                       "(gdcm not tried: it can abort the process on corrupt data): "
                       + "; ".join(failures))


def _mapped_frame(ds: Dataset, header: DicomHeader) -> np.ndarray | None:
    """Frame 0 of uncompressed little-endian pixel data, memory-mapped from the file.

    For a full-field image this replaces reading 27 MB into memory and
    copying it (pydicom's path) by mapping pages on demand: the crop and the
    strided analysis never touch some of them. It is a plain reinterpretation
    of the bytes - the same values pydicom's native decoder returns before its
    unused-bit masking - and applies only while the pixel data is still
    deferred and complete; everything else goes through pydicom.
    """
    syntax = _transfer_syntax(ds)
    if syntax not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        return None
    elem = ds.get_item(PIXEL_DATA_TAG, keep_deferred=True)
    if not isinstance(elem, RawDataElement) or elem.value is not None \
            or not elem.is_little_endian or elem.length == UNDEFINED_LENGTH:
        return None
    bits_allocated = _int(ds, "BitsAllocated")
    if bits_allocated not in (8, 16) or (_int(ds, "SamplesPerPixel") or 1) != 1:
        return None
    frames = _int(ds, "NumberOfFrames") or 1
    itemsize = bits_allocated // 8
    frame_bytes = header.rows * header.columns * itemsize
    # Short pixel data is reported by pydicom ("truncated pixel data").
    if elem.length < frames * frame_bytes \
            or header.path.stat().st_size < elem.value_tell + frame_bytes:
        return None
    kind = "i" if _int(ds, "PixelRepresentation") == 1 else "u"
    mapped = np.memmap(header.path, dtype=np.dtype(f"<{kind}{itemsize}"), mode="r",
                       offset=elem.value_tell, shape=(header.rows, header.columns))
    return mapped.view(np.ndarray)  # a plain array; the mapping lives on as its base


def _decode_failure(syntax: UID, exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    if "less than expected" in message or "truncated" in message.lower():
        return f"truncated pixel data: {message}"
    reason = f"cannot decode {_syntax_label(syntax)} pixel data: {type(exc).__name__}: {message}"
    if syntax.is_encapsulated:
        reason += f" (if a codec is missing: {_codec_hint(syntax)})"
    return reason


def _fit_bits_stored(arr: np.ndarray, bits_stored: int,
                     may_mask: bool) -> tuple[np.ndarray, int]:
    """Values within Bits Stored, plus the bits a lookup table needs to index them.

    Masking the unused high bits is what pydicom's ``correct_unused_bits`` does
    for uncompressed data (``may_mask``); here it happens only when a value
    actually uses those bits. Unsigned values that fit get a table of
    ``2**bits_stored`` entries (4096 for 12 bits: cheap to build); anything
    else gets one entry per value of the dtype.
    """
    bits = arr.dtype.itemsize * 8
    if arr.dtype.kind not in "ui" or not 0 < bits_stored < bits:
        return arr, bits
    unsigned = arr.dtype.kind == "u"
    if unsigned:
        fits = int(arr.max()) < (1 << bits_stored)
    else:
        half = 1 << (bits_stored - 1)
        fits = -half <= int(arr.min()) and int(arr.max()) < half
    if not fits and may_mask:
        shift = bits - bits_stored
        arr = np.left_shift(arr, shift)  # a new, writeable array
        np.right_shift(arr, shift, out=arr)  # arithmetic shift sign-extends signed types
        fits = True
    return arr, bits_stored if fits and unsigned else bits


# --------------------------------------------------------------------------- intensity map


def _as_index(raw: np.ndarray) -> np.ndarray:
    """Stored values as unsigned table indices (a free view; int16 -1 -> 65535)."""
    return raw if raw.dtype.kind == "u" else raw.view(f"u{raw.dtype.itemsize}")


def _domain(dtype: np.dtype, bits: int) -> np.ndarray:
    """Table entries in index order: entry i holds the value whose bits are i.

    Signed tables always span the whole dtype (negative values index the top
    half); unsigned ones only ``2**bits`` entries.
    """
    if dtype.kind == "u":
        return np.arange(1 << bits, dtype=dtype)
    unsigned = np.dtype(f"u{dtype.itemsize}")
    return np.arange(1 << (8 * dtype.itemsize), dtype=unsigned).view(dtype)


def _intensity_map(ds: Dataset, raw: np.ndarray, path: Path, table_bits: int) -> IntensityMap:
    chain = _Chain(ds, raw, path)
    if raw.dtype.kind not in "ui" or raw.dtype.itemsize > 2:
        return IntensityMap(lut=None, affine=None, source=chain.source, chain=chain)
    domain = _domain(raw.dtype, table_bits)
    table = chain.table(domain)
    return IntensityMap(lut=table.astype(np.float32), affine=_fit_affine(domain, table),
                        source=chain.source)


class _Chain:
    """Modality LUT -> VOI -> inversion -> [0, 1], done step by step with pydicom.

    Built once per file: the VOI choice and, for the percentile window, the
    window itself come from the image; then ``table``/``__call__`` apply the
    same chain to any values (the LUT domain, or the pixels themselves).
    """

    def __init__(self, ds: Dataset, raw: np.ndarray, path: Path) -> None:
        self.ds = ds
        self.path = path
        self.invert = _text(ds, "PhotometricInterpretation").upper() == "MONOCHROME1"
        self.source, self.voi_range = self._choose_voi()
        self.window: tuple[float, float] | None = None
        if self.source == "percentile":
            self.window = self._percentile_window(raw)

    def _choose_voi(self) -> tuple[str, tuple[float, float] | None]:
        """The first usable of VOI LUT Sequence, window, percentile - and its output range."""
        for source, output_range in (("voi_lut", self._voi_lut_range),
                                     ("window", self._window_range)):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    found = output_range()
            except Exception as exc:  # bad VOI tags: try the next option
                log.debug("ignoring unusable %s tags: %s: %s", source, type(exc).__name__, exc)
                continue
            if found is not None:
                return source, found
        return "percentile", None

    def _voi_lut_range(self) -> tuple[float, float] | None:
        ds = self.ds
        return _voi_lut_range(ds) if ds.get("VOILUTSequence") and _voi_lut_usable(ds) else None

    def _window_range(self) -> tuple[float, float] | None:
        if self.ds.get("WindowCenter") is None or self.ds.get("WindowWidth") is None:
            return None
        # pydicom maps the window onto a fixed output range; the range is what
        # it gives for the most extreme inputs.
        with np.errstate(all="ignore"):
            ends = apply_voi_lut(np.array([-np.inf, np.inf]), self.ds, prefer_lut=False)
        low, high = float(ends[0]), float(ends[1])
        return (low, high) if math.isfinite(low) and math.isfinite(high) and high > low else None

    def modality(self, values: np.ndarray) -> np.ndarray:
        out = apply_modality_lut(values, self.ds)
        if out.dtype.kind == "f" and not np.isfinite(out).all():
            # A NaN/inf Rescale Slope or Intercept (or an overflowing slope) would
            # otherwise come out as NaN pixels, which clip() keeps, in a network input.
            raise DicomReadError(
                self.path, "the modality LUT gives non-finite values (Rescale Slope "
                f"{_text(self.ds, 'RescaleSlope')!r}, Intercept "
                f"{_text(self.ds, 'RescaleIntercept')!r}): a corrupt header?")
        return out

    def table(self, values: np.ndarray) -> np.ndarray:
        """float64 intensities in [0, 1] for ``values`` (stored pixel values)."""
        m = self.modality(values)
        if self.source == "percentile":
            assert self.window is not None
            low, high = self.window
            sense = -m.astype(np.float64) if self.invert else m.astype(np.float64)
            return np.clip((sense - low) / (high - low), 0.0, 1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.source == "voi_lut":
                y = apply_voi_lut(_integral(m), self.ds, prefer_lut=True)
            else:
                y = apply_voi_lut(m, self.ds, prefer_lut=False)
        assert self.voi_range is not None
        low, high = self.voi_range
        t = np.clip((y.astype(np.float64) - low) / (high - low), 0.0, 1.0)
        return 1.0 - t if self.invert else t

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return self.table(raw).astype(np.float32)

    def _percentile_window(self, raw: np.ndarray) -> tuple[float, float]:
        step = max(1, math.ceil(math.sqrt(raw.size / WINDOW_SAMPLE_PIXELS)))
        m = self.modality(raw[::step, ::step]).astype(np.float64).ravel()
        sense = -m if self.invert else m
        window = _percentile_window(sense)
        if window is None:
            full = self.modality(raw).astype(np.float64)
            full = -full if self.invert else full
            low, high = float(full.min()), float(full.max())
            if high <= low:
                raise DicomReadError(self.path, f"blank image: every pixel has the value {low:g}")
            window = (low, high)
        return window


def _percentile_window(values: np.ndarray) -> tuple[float, float] | None:
    """(low, high) percentiles of the non-background values; bright = dense in ``values``.

    Background is the darkest ``BACKGROUND_RANGE_SHARE`` of the range: excluding
    it keeps a large air region from pulling the window down. If nearly
    everything is "background" (an image without air), all values are used.
    None when the sample holds a single value.
    """
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    darkest, top = float(values.min()), float(np.percentile(values, 99.9))
    body = values[values > darkest + BACKGROUND_RANGE_SHARE * (top - darkest)]
    if body.size < 0.01 * values.size:
        body = values
    low, high = (float(v) for v in np.percentile(body, PERCENTILE_WINDOW))
    if high <= low:
        low, high = float(values.min()), float(values.max())
    return (low, high) if high > low else None


def _integral(m: np.ndarray) -> np.ndarray:
    """Modality output as integers when it is integral (pydicom's VOI LUT indexes with it)."""
    if m.dtype.kind in "ui":
        return m
    rounded = np.rint(m)
    return rounded.astype(np.int64) if np.array_equal(rounded, m) else m


def _voi_lut_usable(ds: Dataset) -> bool:
    item = ds.VOILUTSequence[0]
    return item.get("LUTDescriptor") is not None and item.get("LUTData") is not None


def _voi_lut_range(ds: Dataset) -> tuple[float, float]:
    """Output range of the first VOI LUT: the min and max of its entries.

    Not ``2**bits - 1`` from the descriptor: vendors often declare 16 bits and
    fill 12, which would leave every image dim.
    """
    descriptor = ds.VOILUTSequence[0].LUTDescriptor
    entries = int(descriptor[0]) or 1 << 16
    first = int(descriptor[1])
    data = apply_voi_lut(np.arange(first, first + entries, dtype=np.int64), ds, prefer_lut=True)
    low, high = float(data.min()), float(data.max())
    if high <= low:
        raise ValueError("VOI LUT is constant")
    return low, high


def _fit_affine(domain: np.ndarray, table: np.ndarray) -> Affine | None:
    """The clipped straight line equal to ``table`` on every stored value, if there is one."""
    if domain.dtype.kind == "u":
        x, y = domain.astype(np.float64), table  # already in value order
    else:
        order = np.argsort(domain, kind="stable")
        x, y = domain[order].astype(np.float64), table[order]
    inside = np.flatnonzero((y > 0.0) & (y < 1.0))
    if inside.size < 2 or inside[-1] - inside[0] + 1 != inside.size:
        return None
    i0, i1 = int(inside[0]), int(inside[-1])
    alpha = (y[i1] - y[i0]) / (x[i1] - x[i0])
    beta = y[i0] - alpha * x[i0]
    lo = int(x[max(i0 - 1, 0)])
    hi = int(x[min(i1 + 1, x.size - 1)])
    line = np.clip(alpha * np.clip(x, lo, hi) + beta, 0.0, 1.0)
    if not np.allclose(line, y, rtol=0.0, atol=1e-6):
        return None
    return Affine(alpha=float(alpha), beta=float(beta), lo=lo, hi=hi)
