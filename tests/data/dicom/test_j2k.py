"""mammography.data.dicom.j2k: JPEG 2000 decoded at a reduced wavelet level."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import get_frame

from mammography.data.cache import ImageCache
from mammography.data.dicom import j2k
from mammography.data.preprocess import PreprocessSettings, load_preprocessed_with_info
from mammography.data.synthetic import synthesize_mammogram, write_mammogram_dicom

SHAPE = (1024, 832)


def write(path: Path, compression: str, bits: int = 12, seed: int = 1) -> Path:
    image = synthesize_mammogram(np.random.default_rng(seed), 3, SHAPE, "MLO", "L")
    return write_mammogram_dicom(path, image, patient_id="P", accession="A", view="MLO",
                                 laterality="L", bits_stored=bits, compression=compression)


@pytest.mark.parametrize("bits", [12, 14, 16])
def test_codestream_header_and_pillow_scaling_undone_exactly(tmp_path: Path, bits: int) -> None:
    path = write(tmp_path / "a.dcm", "j2k", bits)
    ds = pydicom.dcmread(path)
    frame = get_frame(ds.PixelData, 0, number_of_frames=1)
    info = j2k.parse_codestream(frame)
    assert info is not None and (info.rows, info.columns) == SHAPE
    assert (info.precision, info.signed, info.components) == (bits, False, 1)
    assert info.levels >= 3
    # Level 0 through Pillow, the shift undone, equals pydicom's decode bit for bit.
    np.testing.assert_array_equal(j2k._pillow_decode(frame, 0, info), ds.pixel_array)


def test_level_choice_keeps_twice_the_target() -> None:
    assert j2k.level_for((3328, 2560), (512, 512), 5) == 1  # 1664 x 1280 >= 2 x 512
    assert j2k.level_for((4096, 3328), (256, 256), 5) == 2
    assert j2k.level_for((4096, 3328), (256, 256), 1) == 1  # never past the codestream's
    assert j2k.level_for((600, 480), (512, 512), 5) == 0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(65535.0 ** 2 / mse)


def test_reduced_decode_is_close_to_the_uncompressed_pixels(tmp_path: Path) -> None:
    settings = PreprocessSettings(img_size=128)
    compressed, info = load_preprocessed_with_info(write(tmp_path / "j.dcm", "j2k"),
                                                   settings)[::2]
    plain, plain_info = load_preprocessed_with_info(write(tmp_path / "u.dcm", "none"),
                                                    settings)[::2]
    assert info["decode_level"] == 1 and plain_info["decode_level"] == 0  # 512 x 416 >= 2 x 128
    assert info["input_shape"] == list(SHAPE)  # decisions are in stored coordinates
    assert compressed.shape == plain.shape
    assert psnr(compressed, plain) >= 35
    full, full_info = load_preprocessed_with_info(
        tmp_path / "j.dcm", dataclasses.replace(settings, j2k_reduce=False))[::2]
    assert full_info["decode_level"] == 0 and psnr(full, plain) > 60


def test_a_small_crop_is_decoded_one_level_finer(tmp_path: Path) -> None:
    image = np.full(SHAPE, 0.03, np.float32)
    image[400:560, :60] = 0.6  # a small breast: the crop needs more than level 1 gives
    path = write_mammogram_dicom(tmp_path / "s.dcm", image, patient_id="P", accession="A",
                                 view="CC", laterality="L", compression="j2k")
    _, _, info = load_preprocessed_with_info(path, PreprocessSettings(img_size=128))
    assert info["decode_level"] == 0 and info["scale"] * (1 << info["decode_level"]) <= 1.0


def test_reduction_is_part_of_the_cache_key(tmp_path: Path) -> None:
    reduced = ImageCache(PreprocessSettings(img_size=128), tmp_path)
    full = ImageCache(PreprocessSettings(img_size=128, j2k_reduce=False), tmp_path)
    assert reduced.dir != full.dir
