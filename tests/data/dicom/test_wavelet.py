"""mammography.data.dicom.wavelet: the working grid is JPEG 2000's own low-pass, bit for bit."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import get_frame

from mammography.data.dicom import wavelet
from mammography.data.synthetic import synthesize_mammogram, write_mammogram_dicom


def lifting_reference(x: np.ndarray) -> np.ndarray:
    """ITU-T T.800 Annex F reversible 5/3 analysis, low-pass only, one sample at a time."""
    def one_axis(line: list[int]) -> list[int]:
        n = len(line)
        if n == 1:
            return list(line)

        def at(i: int) -> int:  # whole-sample symmetric extension
            period = 2 * (n - 1)
            i = abs(i) % period
            return line[period - i] if i >= n else line[i]

        def detail(k: int) -> int:
            return at(2 * k + 1) - (at(2 * k) + at(2 * k + 2)) // 2

        return [at(2 * k) + (detail(k - 1) + detail(k) + 2) // 4 for k in range((n + 1) // 2)]

    rows = [one_axis(list(column)) for column in x.astype(np.int64).T]
    vertical = np.array(rows, dtype=np.int64).T
    return np.array([one_axis(list(row)) for row in vertical], dtype=np.int64)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (2, 2), (5, 8), (8, 5), (9, 11),
                                   (16, 33), (70, 3)])
@pytest.mark.parametrize(("dtype", "bits"), [("uint16", 12), ("uint16", 16), ("uint8", 8),
                                             ("int16", 16)])
def test_one_level_equals_the_standard_lifting(shape, dtype, bits) -> None:
    info = np.iinfo(dtype)
    low = info.min if dtype.startswith("int") else 0
    high = info.max if bits == info.bits else (1 << bits) - 1
    x = np.random.default_rng(hash(shape) % 1000).integers(low, high + 1, size=shape,
                                                          dtype=dtype)
    expected = np.clip(lifting_reference(x), low, high)
    np.testing.assert_array_equal(wavelet.reduce_levels(x, 1, bits), expected)


@pytest.mark.parametrize("bits", [12, 13, 16])
def test_no_overflow_on_the_worst_pattern(bits: int) -> None:
    """Alternating extremes drive every lifting sum to its bound; the narrow int16 path
    (12-bit data) must give what the int64 one does."""
    high = (1 << bits) - 1
    x = np.zeros((64, 64), dtype=np.uint16)
    x[1::2, :] = high
    x[:, 1::2] ^= np.uint16(high)
    for levels in (1, 2, 3):
        reference = lifting_reference(x)
        for _ in range(levels - 1):
            reference = lifting_reference(reference)
        np.testing.assert_array_equal(wavelet.reduce_levels(x, levels, bits),
                                      np.clip(reference, 0, high))
    assert wavelet._work_dtype(np.dtype(np.uint16), 0, 4095, 0) == np.int16
    assert wavelet._work_dtype(np.dtype(np.uint16), 0, 8191, 0) == np.int32


def _pillow_level(frame: bytes, level: int, bits: int) -> np.ndarray:
    with Image.open(io.BytesIO(frame)) as image:
        image.reduce = level
        image.load()
        return np.array(image) >> (16 - bits)


@pytest.mark.parametrize(("shape", "bits"), [((1024, 831), 12), ((700, 512), 14),
                                             ((600, 452), 16)])
def test_reduced_levels_equal_the_jpeg2000_decoders(tmp_path, shape, bits) -> None:
    """What OpenJPEG returns at level n of a lossless codestream, computed from the pixels."""
    image = synthesize_mammogram(np.random.default_rng(bits), 3, shape, "MLO", "R")
    path = write_mammogram_dicom(tmp_path / "j.dcm", image, patient_id="P", accession="A",
                                 view="MLO", laterality="R", bits_stored=bits,
                                 compression="j2k", window=False)
    ds = pydicom.dcmread(path)
    frame = get_frame(ds.PixelData, 0, number_of_frames=1)
    for level in (1, 2, 3):
        np.testing.assert_array_equal(wavelet.reduce_levels(ds.pixel_array, level, bits),
                                      _pillow_level(frame, level, bits))


def test_working_level_and_level_shape() -> None:
    assert wavelet.working_level((3328, 2560), (512, 512)) == 1   # 1664 x 1280 >= 2 x 512
    assert wavelet.working_level((4096, 3328), (1024, 512)) == 1
    assert wavelet.working_level((4096, 3328), (256, 256)) == 2
    assert wavelet.working_level((600, 480), (512, 512)) == 0
    assert wavelet.working_level((4096, 3328), None) == 0
    assert wavelet.level_shape((2294, 1915), 3) == (287, 240)
    for rows, cols, levels in itertools.product((1, 7, 8), (3, 64), (0, 1, 2, 4)):
        x = np.zeros((rows, cols), np.uint16)
        assert wavelet.reduce_levels(x, levels).shape == wavelet.level_shape(x.shape, levels)


def test_float_images_get_the_same_filter_without_rounding() -> None:
    rng = np.random.default_rng(5)
    x = rng.integers(1000, 3000, size=(61, 48)).astype(np.uint16)
    as_float = wavelet.reduce_levels(x.astype(np.float32), 2)
    assert as_float.dtype == np.float32
    # The integer lifting's floor divisions move a value by less than 1.5 per level.
    assert np.abs(as_float - wavelet.reduce_levels(x, 2, 12)).max() < 3
    flat = np.full((33, 20), 0.25, np.float32)
    np.testing.assert_allclose(wavelet.reduce_levels(flat, 3), 0.25, atol=1e-6)
    assert wavelet.reduce_levels(x, 0) is x
