"""Reading DICOM files robustly: header index, pixel decode, display intensities.

Two entry points, both of which raise :class:`DicomReadError` (and nothing else)
for any per-file problem, so callers can skip the file with a WARNING and record
it in the data manifest:

* :func:`read_header` - tags only (the pixel data is located, never read), to
  index thousands of files quickly; :func:`image_problem` on its result says
  what the header already rules out (no pixels, colour, multi-frame, short
  pixel data), with the reasons the decoder would give.
* :func:`decode` - a float32 2-D image in ``[0, 1]`` where **1 = bright = dense
  tissue**, whatever the photometric interpretation.

How :func:`read_frame` gets there:

1. The header checks of :func:`image_problem`. Multi-frame objects
   (tomosynthesis, cine, enhanced MR) are refused unless ``frames`` asks for
   the first or the middle frame deliberately.
2. Pixel data of that frame through pydicom's decoder plugins
   (pylibjpeg-openjpeg, pyjpegls, pylibjpeg-rle, pillow; python-gdcm only when
   no other can). JPEG 2000 and HTJ2K frames can instead be decoded at a
   reduced wavelet resolution when the caller needs fewer pixels
   (``target``, see :mod:`mammography.data.dicom.j2k`). Uncompressed little-endian
   pixel data is memory-mapped rather than read (:func:`_mapped_frame`), so a
   crop never pays for the pixels it drops.
3. The modality LUT / VOI / inversion chain of :mod:`mammography.data.dicom.intensity`,
   then :func:`~mammography.data.dicom.intensity.blank_reason` on the mapped values:
   a constant or saturated image is refused.

Not thread-safe in one respect: pydicom's warnings are silenced with
``warnings.catch_warnings``, which swaps process-wide filters. Use processes
(not threads) to decode in parallel.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_partial
from pydicom.pixels import get_decoder, pixel_array
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    RLELossless,
)

from mammography.data.dicom import bounds, j2k, wavelet
from mammography.data.dicom.errors import DicomReadError, guard, is_panic
from mammography.data.dicom.header import (
    FOR_PROCESSING_SOP_CLASSES,
    FRAME_POLICIES,
    MAX_FRAME_PIXELS,
    MONOCHROME,
    DicomHeader,
    FramePolicy,
    PixelInfo,
    header_from_dataset,
    image_problem,
    integer,
)
from mammography.data.dicom.intensity import Affine, IntensityMap, blank_reason, intensity_map
from mammography.data.file_identity import missing_file_reason

__all__ = [
    "FOR_PROCESSING_SOP_CLASSES",
    "FRAME_POLICIES",
    "MAX_FRAME_PIXELS",
    "MONOCHROME",
    "Affine",
    "DicomHeader",
    "DicomReadError",
    "FramePolicy",
    "IntensityMap",
    "RawFrame",
    "decode",
    "image_problem",
    "read_frame",
    "read_header",
]

#: Values larger than this are read from the file only when used (the pixel
#: data: memory-mapped when uncompressed, see _mapped_frame).
DEFER_BYTES = 1 << 18
PIXEL_DATA_TAG = 0x7FE00010
FLOAT_PIXEL_TAGS = (0x7FE00008, 0x7FE00009)
UNDEFINED_LENGTH = 0xFFFFFFFF
GZIP_MAGIC = b"\x1f\x8b"

#: Decoder plugins used only when no other can decode a syntax (see _pixel_array).
_ABORTING_PLUGINS = frozenset({"gdcm"})
_ALL_PLUGINS_FAILED = "Unable to decode as exceptions were raised by all available plugins"


@dataclass(frozen=True)
class RawFrame:
    """One frame's stored values, the header and the map to intensities.

    ``raw`` may be a read-only view on the file's bytes: never write to it.
    ``level`` is the JPEG 2000 resolution level it was decoded at (0 = full
    resolution; level n has ``ceil(rows / 2**n)`` rows), ``frame`` its index.
    """

    raw: np.ndarray
    header: DicomHeader
    mapping: IntensityMap
    level: int = 0
    frame: int = 0


# --------------------------------------------------------------------------- public API


def read_header(path: str | Path) -> DicomHeader:
    """The indexed tags of one file; its pixel data is located but not read."""
    path = Path(path)
    with _quiet():
        ds, pixel = _read_dataset(path, stop_before_pixels=True)
        return guard(path, "cannot read the header", lambda: header_from_dataset(ds, path, pixel))


def decode(path: str | Path, frames: FramePolicy = "exclude") -> tuple[np.ndarray, DicomHeader]:
    """The image as float32 in ``[0, 1]`` (1 = bright = dense) and its header."""
    frame = read_frame(path, frames=frames)
    image = guard(frame.header.path, "cannot map pixel values",
                  lambda: frame.mapping.apply(frame.raw))
    return image, frame.header


def read_frame(path: str | Path, *, frames: FramePolicy = "exclude",
               target: tuple[int, int] | None = None, max_level: int | None = None) -> RawFrame:
    """Stored values of one frame on its working grid, plus the map to intensities.

    ``target`` (rows, columns) is the size the caller will shrink the image to:
    the frame then comes at the working level of :mod:`~mammography.data.dicom.wavelet`
    (the coarsest power-of-two level still covering twice ``target``, never coarser
    than ``max_level``) - a JPEG 2000 frame decoded at that wavelet level, every other
    encoding decoded in full and reduced to the same level by the same 5/3 low-pass,
    so the values are identical whatever the encoding. Without ``target``: full
    resolution. The intensity map (its percentile window included) is computed on
    these values, and :mod:`mammography.data.preprocess` works on them (crop,
    downsample) before mapping them.
    """
    path = Path(path)
    with _quiet():
        ds, pixel = _read_dataset(path, stop_before_pixels=False)
        header = guard(path, "cannot read the header", lambda: header_from_dataset(ds, path, pixel))
        problem = image_problem(header, frames)
        if problem:
            raise DicomReadError(path, problem)
        index = header.frames // 2 if frames == "middle" else 0
        level = _working_level(header, target, max_level)
        raw, table_bits, decoded = _frame_values(ds, header, index, target, level)
        if decoded < level:
            raw = guard(path, "cannot reduce the pixel data to the working grid",
                        lambda: wavelet.reduce_levels(raw, level - decoded, table_bits))
        mapping = guard(path, "cannot apply the modality/VOI LUT",
                        lambda: intensity_map(ds, raw, path, table_bits))
        reason = guard(path, "cannot map pixel values", lambda: blank_reason(mapping, raw))
    if reason:
        raise DicomReadError(path, reason)
    return RawFrame(raw=raw, header=header, mapping=mapping, level=level, frame=index)


def _working_level(header: DicomHeader, target: tuple[int, int] | None,
                   max_level: int | None) -> int:
    """The level every encoding of this frame is brought to (0 without a ``target``)."""
    level = wavelet.working_level((header.rows, header.columns), target)
    return level if max_level is None else min(level, max(0, max_level))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """pydicom warns while converting values lazily, long after ``dcmread`` returned
    (an over-long UID, an odd VR): per-file noise that would land in run.log as
    ``WARNING:`` lines, once per image and epoch. Real problems raise instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# --------------------------------------------------------------------------- reading


def _read_dataset(path: Path, *, stop_before_pixels: bool) -> tuple[Dataset, PixelInfo]:
    """The parsed file and where its pixel data is; large values stay on disk until used."""
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise DicomReadError(path, "file not found", io_error=True) from exc
    except OSError as exc:
        raise DicomReadError(path, f"cannot access the file: {exc}", io_error=True) from exc
    if path.is_dir():
        raise DicomReadError(path, "is a directory, not a file")
    if not path.is_file():  # a FIFO would block, /dev/zero never end
        raise DicomReadError(path, missing_file_reason(path))
    if size == 0:
        raise DicomReadError(path, "empty file (0 bytes)")
    try:
        with bounds.BoundedReader(path) as handle:
            head = handle.read(bounds.HEAD_BYTES)
            if head[:2] == GZIP_MAGIC:
                raise DicomReadError(path, "gzip-compressed file: decompress it first "
                                     "(gunzip), then point the CSV at the .dcm")
            problem = bounds.start_problem(head)  # before any parsing (bounds.py)
            if problem:
                raise DicomReadError(path, problem)
            handle.seek(0)
            ds = _parse(path, handle, stop_before_pixels)
            pixel = (_pixel_info_here(ds, handle, size) if stop_before_pixels
                     else _pixel_info(ds, size))
    except OSError as exc:
        raise DicomReadError(path, f"cannot read the file: {exc.strerror or exc}",
                             io_error=True) from exc
    guard(path, "cannot determine the transfer syntax", lambda: _ensure_transfer_syntax(ds))
    return ds, pixel


def _read(handle: BinaryIO, stop_before_pixels: bool, force: bool = False) -> Dataset:
    """``dcmread``, but parsing stops at (or right after) the pixel data: nothing
    after the image is ever parsed (bounds.py)."""
    return read_partial(handle, bounds.stop_after_pixels(stop_before_pixels),
                        defer_size=DEFER_BYTES, force=force)


def _parse(path: Path, handle: BinaryIO, stop_before_pixels: bool) -> Dataset:
    with warnings.catch_warnings():
        # pydicom warns about many harmless deviations (odd VRs, lengths);
        # real problems surface as exceptions below.
        warnings.simplefilter("ignore")
        try:
            return _read(handle, stop_before_pixels)
        except InvalidDicomError:
            handle.seek(0)
            return _read_without_preamble(path, handle, stop_before_pixels)
        except bounds.HeaderTooLong as exc:
            raise DicomReadError(path, str(exc)) from None
        except (OSError, DicomReadError):
            raise
        except Exception as exc:  # pydicom raises many types on bad bytes
            raise DicomReadError(
                path, f"not a readable DICOM file (truncated or corrupt header?): "
                f"{type(exc).__name__}: {exc}") from exc


def _read_without_preamble(path: Path, handle: BinaryIO, stop_before_pixels: bool) -> Dataset:
    """Old files (ACR-NEMA style) lack the 128-byte preamble and "DICM" marker.

    ``force=True`` parses anything, so the result must look like an image or
    composite object before we believe it is DICOM at all.
    """
    try:
        ds = _read(handle, stop_before_pixels, force=True)
        plausible = "SOPClassUID" in ds or ("Rows" in ds and "Columns" in ds)
    except bounds.HeaderTooLong as exc:
        raise DicomReadError(path, str(exc)) from None
    except Exception:  # garbage bytes fail in arbitrary ways
        plausible = False
    if not plausible:
        raise DicomReadError(path, "not a DICOM file (no DICM marker and no recognisable tags)")
    return ds


def _pixel_info(ds: Dataset, size: int) -> PixelInfo:
    """The pixel data element of a fully parsed (deferred) dataset."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID", None) == DeflatedExplicitVRLittleEndian:
        return PixelInfo("unknown")  # as _pixel_info_here: the header pass cannot see inside
    elem = ds.get_item(PIXEL_DATA_TAG, keep_deferred=True)
    if elem is None:
        return PixelInfo("float" if any(t in ds for t in FLOAT_PIXEL_TAGS) else "none")
    if not isinstance(elem, RawDataElement):
        return PixelInfo("unknown")
    if elem.length == UNDEFINED_LENGTH:
        return PixelInfo("encapsulated")
    if elem.value is not None:
        return PixelInfo("native", elem.length, min(elem.length, len(elem.value)))
    return PixelInfo("native", elem.length, max(0, min(elem.length, size - elem.value_tell)))


def _pixel_info_here(ds: Dataset, handle: BinaryIO, size: int) -> PixelInfo:
    """The pixel data element at the handle's position, where ``stop_before_pixels`` left it.

    pydicom stops *before* the element's header, so its tag and length are
    read here without reading the pixels: a header-only pass can then tell an
    SR document (no pixel data) or a short file from an image.
    """
    implicit, little = ds.original_encoding
    meta = getattr(ds, "file_meta", None)
    syntax = None if meta is None else meta.get("TransferSyntaxUID", None)
    if implicit is None or syntax == DeflatedExplicitVRLittleEndian:
        return PixelInfo("unknown")  # a deflated stream has no file positions to speak of
    start = handle.tell()
    head = handle.read(12)
    if len(head) < 8:
        return PixelInfo("none") if start + len(head) >= size else PixelInfo("unknown")
    order = "<" if little else ">"
    group, element = np.frombuffer(head[:4], dtype=f"{order}u2")
    tag = (int(group) << 16) | int(element)
    if tag in FLOAT_PIXEL_TAGS:
        return PixelInfo("float")
    if tag != PIXEL_DATA_TAG:
        return PixelInfo("unknown")
    if implicit:
        length, offset = int(np.frombuffer(head[4:8], dtype=f"{order}u4")[0]), 8
    elif head[4:6] in (b"OB", b"OW", b"UN", b"OV", b"OF", b"OD", b"OL") and len(head) == 12:
        length, offset = int(np.frombuffer(head[8:12], dtype=f"{order}u4")[0]), 12
    else:
        length, offset = int(np.frombuffer(head[6:8], dtype=f"{order}u2")[0]), 8
    if length == UNDEFINED_LENGTH:
        return PixelInfo("encapsulated")
    return PixelInfo("native", length, max(0, min(length, size - (start + offset))))


def _ensure_transfer_syntax(ds: Dataset) -> None:
    """Files without a meta header still need a transfer syntax to decode pixels."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID"):
        return
    implicit, little = ds.original_encoding
    if implicit is None:
        return  # nothing parsed; image_problem reports what is missing
    syntax = (ImplicitVRLittleEndian if implicit else
              ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    if meta is None:
        ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax


def _transfer_syntax(ds: Dataset) -> UID | None:
    meta = getattr(ds, "file_meta", None)
    return None if meta is None else meta.get("TransferSyntaxUID", None)


# --------------------------------------------------------------------------- pixels


def _codec_hint(syntax: UID) -> str:
    """Which package decodes ``syntax`` - the part of the message the user acts on."""
    if syntax in JPEGTransferSyntaxes:
        return ("install pylibjpeg-libjpeg (python-gdcm and pillow cover 8-bit and lossless "
                "JPEG but not 12-bit JPEG Extended)")
    if syntax in JPEGLSTransferSyntaxes:
        return "install pyjpegls or pylibjpeg-libjpeg"
    if syntax in JPEG2000TransferSyntaxes or syntax in j2k.HTJ2K_SYNTAXES:
        return "install pylibjpeg-openjpeg"
    if syntax == RLELossless:
        return "install pylibjpeg-rle"
    return ("pydicom has no decoder for it; convert the file to an uncompressed transfer "
            "syntax first (e.g. gdcmconv --raw or dcmtk dcmdjpeg)")


def _syntax_label(syntax: UID) -> str:
    name = str(syntax.name)
    return name if name == str(syntax) else f"{name} ({syntax})"


def _frame_values(ds: Dataset, header: DicomHeader, index: int,
                  target: tuple[int, int] | None,
                  max_level: int | None) -> tuple[np.ndarray, int, int]:
    """Frame ``index``'s stored values (native byte order), the bits they fit in, the level.

    Full resolution (level 0), except a JPEG 2000 frame with a ``target``: decoded at
    the coarsest wavelet level it has up to ``max_level``."""
    path = header.path
    syntax = _transfer_syntax(ds)
    assert syntax is not None  # checked by image_problem
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as exc:
        raise DicomReadError(path, f"no decoder for transfer syntax {_syntax_label(syntax)}: "
                             f"{_codec_hint(syntax)}") from exc
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "no plugin installed"
        raise DicomReadError(path, f"no decoder available for transfer syntax "
                             f"{_syntax_label(syntax)} ({missing}): {_codec_hint(syntax)}")
    if bounds.declares_size(syntax):  # what the codestream declares, before decoding
        _check_declared_size(ds, header, index, syntax)
    if target is not None and j2k.is_j2k(syntax):
        reduced = guard(path, f"cannot decode {_syntax_label(syntax)} pixel data",
                        lambda: j2k.decode_reduced(ds, header, index, target, max_level))
        if reduced is not None:
            arr, level = reduced
            return (*_fit_bits_stored(arr, header.bits_stored, may_mask=False), level)
    native = not syntax.is_encapsulated
    mapped = guard(path, "cannot map the pixel data", lambda: _mapped_frame(ds, header, index))
    if mapped is not None:
        return (*_fit_bits_stored(mapped, header.bits_stored, may_mask=True), 0)
    # A view on the file's bytes saves pydicom's copy and unused-bit masking
    # (the main cost of decoding an uncompressed image); _fit_bits_stored
    # masks only when a value actually uses those bits.
    as_view = native and header.bits_allocated in (8, 16)
    opts = {"view_only": True, "correct_unused_bits": False} if as_view else {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = _pixel_array(ds, decoder, index, opts)
    except Exception as exc:  # decoders raise anything
        raise DicomReadError(path, _decode_failure(syntax, decoder, exc)) from exc
    except BaseException as exc:  # ... including a Rust panic (see is_panic)
        if not is_panic(exc):
            raise
        raise DicomReadError(path, _decode_failure(syntax, decoder, exc)) from None
    if arr.ndim != 2:
        raise DicomReadError(path, f"decoded pixel data has shape {arr.shape}, expected 2-D")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return (*_fit_bits_stored(arr, header.bits_stored, may_mask=as_view), 0)


def _check_declared_size(ds: Dataset, header: DicomHeader, index: int, syntax: UID) -> None:
    """Refuse a compressed frame whose codestream declares another size than the
    header, or one over the cap (``bounds.frame_size_problem``)."""
    from pydicom.encaps import get_frame

    path = header.path
    frame = guard(path, f"cannot read the {_syntax_label(syntax)} frame",
                  lambda: get_frame(ds.PixelData, index, number_of_frames=header.frames))
    problem = bounds.frame_size_problem(frame, syntax, header.rows, header.columns)
    if problem:
        raise DicomReadError(path, problem)


def _pixel_array(ds: Dataset, decoder: object, index: int,
                 opts: dict[str, bool]) -> np.ndarray:
    """Frame ``index`` through pydicom's plugins, python-gdcm only when no other one can.

    pydicom tries gdcm *first* for JPEG, JPEG-LS and JPEG 2000. On some corrupt
    files gdcm throws a C++ exception its binding does not catch, and
    ``std::terminate`` aborts the whole process (fuzzing found one: a JPEG-LS
    file whose Rows disagree with its codestream) - a crash of the run, not a
    per-file error. pylibjpeg, pyjpegls and pillow fail with Python exceptions.
    """
    plugins = list(getattr(decoder, "_available", None) or decoder.available_plugins)
    safe = [name for name in plugins if name not in _ABORTING_PLUGINS]
    if not safe or len(safe) == len(plugins):
        return pixel_array(ds, index=index, **opts)
    failures = []
    for name in safe:
        try:
            return pixel_array(ds, index=index, decoding_plugin=name, **opts)
        except Exception as exc:
            failures.append(_plugin_failure(name, exc))
        except BaseException as exc:  # a Rust decoder's panic (see is_panic)
            if not is_panic(exc):
                raise
            failures.append(_plugin_failure(name, exc))
    raise RuntimeError("; ".join(failures) + " (gdcm not tried: it can abort the process on "
                       "corrupt data)")


def _plugin_failure(name: str, exc: BaseException) -> str:
    """"plugin: what it said", without pydicom's "Unable to decode ..." preamble."""
    message = " ".join(str(exc).split())
    if message.startswith(_ALL_PLUGINS_FAILED):
        message = message[len(_ALL_PLUGINS_FAILED):].lstrip(": ")
        if message.startswith(f"{name}:"):
            message = message[len(name) + 1:].lstrip()
    return f"{name}: {message or type(exc).__name__}"


def _mapped_frame(ds: Dataset, header: DicomHeader, index: int) -> np.ndarray | None:
    """Frame ``index`` of uncompressed little-endian pixel data, memory-mapped from the file.

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
    bits_allocated = header.bits_allocated
    if bits_allocated not in (8, 16) or header.samples_per_pixel != 1:
        return None
    itemsize = bits_allocated // 8
    frame_bytes = header.rows * header.columns * itemsize
    # Short pixel data is reported by image_problem / pydicom ("truncated pixel data").
    offset = elem.value_tell + index * frame_bytes
    if elem.length < header.frames * frame_bytes \
            or header.path.stat().st_size < offset + frame_bytes:
        return None
    kind = "i" if integer(ds, "PixelRepresentation") == 1 else "u"
    mapped = np.memmap(header.path, dtype=np.dtype(f"<{kind}{itemsize}"), mode="r",
                       offset=offset, shape=(header.rows, header.columns))
    return mapped.view(np.ndarray)  # a plain array; the mapping lives on as its base


def _decode_failure(syntax: UID, decoder: object, exc: BaseException) -> str:
    """One statement of what failed; the codec hint only when a plugin is really missing."""
    message = " ".join(str(exc).split())
    if message.startswith(_ALL_PLUGINS_FAILED):
        message = message[len(_ALL_PLUGINS_FAILED):].lstrip(": ")
    if "less than expected" in message or "truncated" in message.lower():
        return f"truncated pixel data: {message}"
    reason = f"cannot decode {_syntax_label(syntax)} pixel data: {message}"
    missing = " ".join(getattr(decoder, "missing_dependencies", None) or [])
    hint = _codec_hint(syntax)
    package = hint.split()[1] if hint.startswith("install ") else ""
    if syntax.is_encapsulated and package and package.split("-", 1)[-1] in missing:
        reason += f" ({hint})"
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
