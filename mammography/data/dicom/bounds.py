"""What one file may cost: hostile files are refused before they cost time or memory.

An archive is input, and input can be anything: a 2 GB file of zeros named
``.dcm`` (``truncate -s 2G``), a valid image followed by gigabytes of padding,
a 64 KB JPEG 2000 frame that decodes to 16000 x 16000. pydicom walks zeros
as elements (~8.7 s per 20 MB) and a decoder allocates whatever its
codestream declares. The reader therefore bounds each file before parsing
and before decoding:

* :func:`start_problem` - the file must start like DICOM: the 128-byte
  preamble and ``DICM``, or (old ACR-NEMA style files without a preamble) a
  plausible first element of group 0002 or 0008 with a real VR or length.
* :func:`stop_after_pixels` - parsing stops at the pixel data (header pass)
  or right after it (decoding): nothing after the image is ever parsed.
* :class:`BoundedReader` - the parser may call ``read`` at most
  ``MAX_HEADER_READS`` times (a real header needs a few thousand; values
  over the defer size are skipped, not read), whatever the bytes say.
* :func:`frame_size_problem` - a compressed frame's declared size (JPEG 2000
  SIZ, JPEG and JPEG-LS SOF) must be the header's Rows x Columns and under
  the 100-megapixel cap, checked on the codestream's first bytes before any
  decoder sees it.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from pathlib import Path

from pydicom.uid import JPEGLSTransferSyntaxes, JPEGTransferSyntaxes

from mammography.data.dicom import j2k
from mammography.data.dicom.header import MAX_FRAME_PIXELS

#: Calls of ``read`` a header parse may make: ~3 per element, so about 100,000
#: elements (real mammogram headers have hundreds, a few thousand with private
#: tags); walking 2 GB of zeros would need 268 million.
MAX_HEADER_READS = 300_000
PREAMBLE = 128
MAGIC = b"DICM"
#: Bytes :func:`start_problem` needs.
HEAD_BYTES = PREAMBLE + len(MAGIC) + 8
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
NOT_DICOM = "not a DICOM file (no DICM marker and no recognisable tags)"
_FIRST_GROUPS = (0x0002, 0x0008)
# JPEG start-of-frame markers (baseline ... lossless, JPEG-LS's SOF55) and the
# markers that carry no length.
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                  0xCF, 0xF7})
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})
_SOC_SIZ = b"\xff\x4f\xff\x51"  # a JPEG 2000 codestream starts with SOC, then SIZ


class HeaderTooLong(Exception):
    """A header parse hit ``MAX_HEADER_READS``."""


class BoundedReader(io.BufferedReader):
    """A binary file whose ``read`` may be called at most ``limit`` times.

    A real ``io.BufferedReader``, so pydicom keeps the file's name and re-opens
    it for deferred values (the pixel data) as it would for ``open(path, "rb")``.
    """

    def __init__(self, path: str | Path, limit: int = MAX_HEADER_READS) -> None:
        super().__init__(io.FileIO(str(path), "rb"))  # a str name: pydicom re-opens it
        self.limit = limit
        self.reads = 0

    def read(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        self.reads += 1
        if self.reads > self.limit:
            raise HeaderTooLong(f"the header does not end: more than {self.limit} reads "
                                "before its pixel data (a corrupt file, or not DICOM)")
        return super().read(size)


def start_problem(head: bytes) -> str | None:
    """Why a file that starts with ``head`` (its first ``HEAD_BYTES``) is not DICOM."""
    if head[PREAMBLE:PREAMBLE + len(MAGIC)] == MAGIC:
        return None
    if len(head) < 8:
        return NOT_DICOM
    for order in ("<", ">"):
        group = struct.unpack(f"{order}H", head[:2])[0]
        if group not in _FIRST_GROUPS:
            continue
        vr = head[4:6]
        if vr.isalpha() and vr.isupper():  # explicit VR
            return None
        if order == "<" and struct.unpack("<I", head[4:8])[0] < (1 << 24):  # implicit length
            return None
    return NOT_DICOM


def stop_after_pixels(before: bool) -> Callable[[int, str | None, int], bool]:
    """pydicom's ``stop_when``: stop at the pixel data (``before``) or right after it."""
    seen = False

    def stop(tag: int, vr: str | None, length: int) -> bool:
        nonlocal seen
        if seen:
            return True
        if tag in PIXEL_TAGS:
            if before:
                return True
            seen = True
        return False

    return stop


def declares_size(syntax: str) -> bool:
    """Whether frames of ``syntax`` carry their own size (checked by frame_size_problem)."""
    return j2k.is_j2k(syntax) or syntax in JPEGTransferSyntaxes \
        or syntax in JPEGLSTransferSyntaxes


def frame_size_problem(frame: bytes, syntax: str, rows: int, columns: int) -> str | None:
    """Why a compressed frame must not be decoded: its codestream declares a size
    other than the header's Rows x Columns, or over the cap; None when it fits (or
    the syntax declares no size of its own)."""
    if j2k.is_j2k(syntax):
        size = j2k_declared_size(frame)
        if size is None:
            return "no JPEG 2000 codestream (SOC and SIZ markers) in the pixel data"
        kind = "JPEG 2000 codestream"
    elif syntax in JPEGTransferSyntaxes or syntax in JPEGLSTransferSyntaxes:
        size = jpeg_declared_size(frame)
        if size is None or size[0] == 0:  # no SOF found, or its height is in a DNL marker
            return None
        kind = "JPEG-LS codestream" if syntax in JPEGLSTransferSyntaxes else "JPEG codestream"
    else:
        return None
    declared_rows, declared_columns = size
    if declared_rows * declared_columns > MAX_FRAME_PIXELS:
        return (f"the {kind} declares {declared_rows} x {declared_columns} pixels, more than "
                f"{MAX_FRAME_PIXELS // 1_000_000} megapixels: refused before decoding")
    if (declared_rows, declared_columns) != (rows, columns):
        return (f"the {kind} declares {declared_rows} x {declared_columns} pixels but the "
                f"header's Rows x Columns is {rows} x {columns}: refused before decoding "
                "(a corrupt or crafted file)")
    return None


def j2k_declared_size(frame: bytes) -> tuple[int, int] | None:
    """(rows, columns) of a JPEG 2000 codestream's SIZ marker (its image area); None
    when the frame holds no SOC+SIZ (a JP2 wrapper puts boxes before them)."""
    start = frame.find(_SOC_SIZ)
    if start < 0 or start + 24 > len(frame):
        return None
    x, y, x0, y0 = struct.unpack_from(">IIII", frame, start + 8)
    return max(0, y - y0), max(0, x - x0)


def jpeg_declared_size(frame: bytes) -> tuple[int, int] | None:
    """(rows, columns) of a JPEG or JPEG-LS frame's start-of-frame marker; None if none
    comes before the scan."""
    if frame[:2] != b"\xff\xd8":
        return None
    pos = 2
    end = min(len(frame), 1 << 20)  # markers before the scan are small
    while pos + 4 <= end:
        if frame[pos] != 0xFF:
            return None
        marker = frame[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker == 0xDA:  # start of scan: no SOF before it
            return None
        (length,) = struct.unpack_from(">H", frame, pos + 2)
        if marker in _SOF and pos + 9 <= len(frame):
            rows, columns = struct.unpack_from(">HH", frame, pos + 5)
            return rows, columns
        pos += 2 + length
    return None
