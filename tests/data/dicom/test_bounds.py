"""bounds.py: what a file must look like before it is parsed or decoded."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

from mammography.data.dicom import bounds


def test_start_problem():
    assert bounds.start_problem(b"\0" * 128 + b"DICM" + b"\2\0\0\0UL") is None
    assert bounds.start_problem(b"\0" * bounds.HEAD_BYTES) == bounds.NOT_DICOM  # zeros
    assert bounds.start_problem(b"not a dicom file at all, just text" * 5) == bounds.NOT_DICOM
    explicit = struct.pack("<HH", 0x0008, 0x0005) + b"CS" + struct.pack("<H", 10)
    implicit = struct.pack("<HHI", 0x0008, 0x0016, 26)
    meta = struct.pack("<HH", 0x0002, 0x0000) + b"UL" + struct.pack("<H", 4)
    for head in (explicit, implicit, meta):
        assert bounds.start_problem(head + b"\0" * 200) is None, head
    assert bounds.start_problem(struct.pack("<HHI", 0x0000, 0x0000, 0) + b"\0" * 200)


def test_parsing_stops_at_or_after_the_pixel_data():
    before, after = bounds.stop_after_pixels(True), bounds.stop_after_pixels(False)
    assert not before(0x00080016, "UI", 26) and before(0x7FE00010, "OW", 100)
    assert not after(0x00280010, "US", 2) and not after(0x7FE00010, "OW", 100)
    assert after(0x00000000, None, 0)  # anything after the pixel data: never parsed


def test_bounded_reader_limits_the_calls(tmp_path: Path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    with bounds.BoundedReader(path, limit=3) as handle:
        assert handle.name == str(path)
        for _ in range(3):
            handle.read(1)
        with pytest.raises(bounds.HeaderTooLong):
            handle.read(1)


def _j2k(rows: int, columns: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((rows, columns), np.uint8)).save(buffer, "JPEG2000", no_jp2=True)
    return buffer.getvalue()


def _jpeg(rows: int, columns: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((rows, columns), np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_declared_sizes():
    assert bounds.j2k_declared_size(_j2k(40, 30)) == (40, 30)
    assert bounds.jpeg_declared_size(_jpeg(40, 30)) == (40, 30)
    assert bounds.j2k_declared_size(b"no codestream") is None
    assert bounds.jpeg_declared_size(b"\xff\xd8\xff\xda") is None


def test_frame_size_problem():
    assert bounds.frame_size_problem(_j2k(40, 30), JPEG2000Lossless, 40, 30) is None
    mismatch = bounds.frame_size_problem(_j2k(40, 30), JPEG2000Lossless, 400, 300)
    assert "declares 40 x 30 pixels but the header's Rows x Columns is 400 x 300" in mismatch
    assert "declares 40 x 30" in bounds.frame_size_problem(_jpeg(40, 30), JPEGBaseline8Bit,
                                                           41, 30)
    huge = bytearray(_j2k(40, 30))
    at = huge.find(b"\xff\x4f\xff\x51")
    struct.pack_into(">II", huge, at + 8, 20000, 20000)
    assert "more than 100 megapixels" in bounds.frame_size_problem(bytes(huge),
                                                                   JPEG2000Lossless, 40, 30)
    assert "no JPEG 2000 codestream" in bounds.frame_size_problem(b"x" * 50, JPEG2000Lossless,
                                                                  40, 30)
    assert bounds.frame_size_problem(b"anything", RLELossless, 40, 30) is None
