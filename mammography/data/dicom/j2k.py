"""JPEG 2000 (and HTJ2K) frames decoded at the resolution the caller needs.

A JPEG 2000 codestream is a wavelet pyramid: resolution level n (of the
codestream's D decomposition levels) is the image at ``ceil(size / 2**n)``,
and decoding it skips the finer sub-bands altogether. Training at 512 px
from a 3328 x 2560 frame needs level 1 (1664 x 1280), which decodes about ten
times faster than the full frame (``benchmarks/bench_j2k.py``). The low-pass
band of the reversible 5/3 and irreversible 9/7 wavelets keeps the signal's
scale, so the values stay stored values that the modality LUT and VOI apply to.

Pillow (with OpenJPEG, which also decodes HTJ2K) does the decoding with its
``reduce`` option. It returns samples of more than 8 bits as 16-bit values
shifted up to use all 16 bits; the codestream's precision (its SIZ marker)
undoes that. Only what was checked to round-trip exactly at level 0 is
decoded here - one unsigned grayscale component of 2-16 bits whose size
matches the DICOM header, one tile, no image offset; anything else (and any
Pillow failure) returns None and goes through pydicom's full decode, which
:mod:`~mammography.data.dicom.wavelet` then reduces to the same level: for a
lossless (5/3) codestream both give the same values, bit for bit.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.uid import JPEG2000TransferSyntaxes

from mammography.data.dicom import wavelet

# HTJ2K (2021) postdates pydicom's JPEG2000TransferSyntaxes constant.
HTJ2K_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
                            "1.2.840.10008.1.2.4.203"})
_SOC_SIZ = b"\xff\x4f\xff\x51"
#: The level decoded keeps at least this many pixels per output pixel and side
#: (the working grid's rule, :mod:`mammography.data.dicom.wavelet`).
OVERSAMPLE = wavelet.OVERSAMPLE
_COD, _COC, _SOT = 0xFF52, 0xFF53, 0xFF90


@dataclass(frozen=True)
class Codestream:
    """What the main header of a JPEG 2000 codestream says."""

    rows: int
    columns: int
    components: int
    precision: int
    signed: bool
    levels: int  # wavelet decomposition levels (the coarsest reducible level)
    #: One tile with the image at the origin: then level n is the 5/3 low-pass of the
    #: whole image, the working grid every other encoding is reduced to.
    whole_image: bool = True


def is_j2k(syntax: str) -> bool:
    return syntax in JPEG2000TransferSyntaxes or str(syntax) in HTJ2K_SYNTAXES


def level_for(shape: tuple[int, int], target: tuple[int, int], levels: int) -> int:
    """The working level for ``target`` (:func:`~mammography.data.dicom.wavelet.working_level`),
    never past the codestream's ``levels``."""
    return max(0, min(levels, wavelet.working_level(shape, target)))


def parse_codestream(data: bytes) -> Codestream | None:
    """SIZ and COD/COC of the main header; None when ``data`` holds no codestream."""
    start = data.find(_SOC_SIZ, 0, 1 << 16)  # a JP2 wrapper puts boxes before it
    if start < 0:
        return None
    pos = start + 4
    try:
        (length,) = struct.unpack_from(">H", data, pos)
        x, y, x0, y0, tile_x, tile_y, tile_x0, tile_y0 = struct.unpack_from(">8I", data, pos + 4)
        (components,) = struct.unpack_from(">H", data, pos + 36)
        ssiz = data[pos + 38]
        pos += length
        levels = None
        while pos + 4 <= len(data):
            marker, seg = struct.unpack_from(">HH", data, pos)
            if marker == _SOT or marker < 0xFF00:
                break
            if marker == _COD:
                found = data[pos + 9]
                levels = found if levels is None else min(levels, found)
            elif marker == _COC:
                # Lcoc, Ccoc (1 or 2 bytes), Scoc, then SPcoc starts with the levels.
                skip = 2 if components >= 257 else 1
                found = data[pos + 4 + skip + 1]
                levels = found if levels is None else min(levels, found)
            pos += 2 + seg
    except (struct.error, IndexError):
        return None
    if levels is None:
        return None
    whole = (x0, y0, tile_x0, tile_y0) == (0, 0, 0, 0) and tile_x >= x and tile_y >= y
    return Codestream(rows=y - y0, columns=x - x0, components=components,
                      precision=(ssiz & 0x7F) + 1, signed=bool(ssiz & 0x80), levels=levels,
                      whole_image=whole)


def decode_reduced(ds: Any, header: Any, index: int, target: tuple[int, int],
                   max_level: int | None = None) -> tuple[np.ndarray, int] | None:
    """Frame ``index`` at the coarsest level covering ``target``, and that level.

    None when full resolution is needed (level 0), the codestream has fewer levels, or
    the frame is not one this decoder handles exactly; the caller then decodes it in
    full with pydicom and reduces it with
    :func:`~mammography.data.dicom.wavelet.reduce_levels`, to the same values.
    """
    from pydicom.encaps import get_frame

    frame = get_frame(ds.PixelData, index, number_of_frames=header.frames)
    info = parse_codestream(frame)
    if info is None or info.components != 1 or info.signed or not 2 <= info.precision <= 16:
        return None
    if (info.rows, info.columns) != (header.rows, header.columns):
        return None
    if int(ds.get("PixelRepresentation", 0) or 0) != 0 or not info.whole_image:
        return None  # tiles or an offset image: its levels are not the working grid
    wanted = wavelet.working_level((info.rows, info.columns), target)
    if max_level is not None:
        wanted = min(wanted, max(0, max_level))
    if wanted == 0 or wanted > info.levels:
        # Fewer levels than the working grid's: a coarser grid computed from a decoded
        # level would differ where the decoder clipped that level's values.
        return None
    arr = _pillow_decode(frame, wanted, info)
    if arr is None or arr.shape != wavelet.level_shape((info.rows, info.columns), wanted):
        return None  # e.g. Pillow refuses level 2 of 333 rows: "broken data stream"
    return arr, wanted


def _pillow_decode(frame: bytes, level: int, info: Codestream) -> np.ndarray | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(frame)) as image:
            image.reduce = level  # Pillow's JPEG 2000 plugin: decode resolution level n
            image.load()
            arr = np.array(image)
    except Exception:  # a codestream Pillow rejects: pydicom's decoders get their turn
        return None
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind not in "ui" or arr.dtype.itemsize != 2:
        return None
    arr = arr.astype(np.uint16, copy=False)
    if info.precision < 16:
        np.right_shift(arr, 16 - info.precision, out=arr)  # Pillow scaled it up to 16 bits
    return arr
