"""mammography.data.dicom.j2k: JPEG 2000 decoded at a reduced wavelet level."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, get_frame

from mammography.data.cache import ImageCache
from mammography.data.dicom import j2k
from mammography.data.dicom.decode import read_frame
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


def test_reduced_decode_gives_the_uncompressed_files_input(tmp_path: Path) -> None:
    """JPEG 2000 decoded at level 1, uncompressed reduced to level 1: the same input."""
    settings = PreprocessSettings(img_size=128)
    compressed, info = load_preprocessed_with_info(write(tmp_path / "j.dcm", "j2k"),
                                                   settings)[::2]
    plain, plain_info = load_preprocessed_with_info(write(tmp_path / "u.dcm", "none"),
                                                    settings)[::2]
    assert info["decode_level"] == plain_info["decode_level"] == 1  # 512 x 416 >= 2 x 128
    assert info["input_shape"] == list(SHAPE)  # decisions are in stored coordinates
    np.testing.assert_array_equal(compressed, plain)
    assert info == plain_info
    # --no-j2k-reduce: the whole pipeline at full resolution, again alike for both.
    full = dataclasses.replace(settings, j2k_reduce=False)
    at_full, full_info = load_preprocessed_with_info(tmp_path / "j.dcm", full)[::2]
    assert full_info["decode_level"] == 0
    np.testing.assert_array_equal(at_full, load_preprocessed_with_info(tmp_path / "u.dcm",
                                                                       full)[0])


def _with_siz(path: Path, offset: int, value: int) -> Path:
    """The file with one 32-bit SIZ field of its codestream replaced (same length)."""
    ds = pydicom.dcmread(path)
    frame = bytearray(get_frame(ds.PixelData, 0, number_of_frames=1))
    siz = frame.find(b"\xff\x4f\xff\x51") + 4
    frame[siz + offset: siz + offset + 4] = value.to_bytes(4, "big")
    ds.PixelData = encapsulate([bytes(frame)])
    ds.save_as(path)
    return path


def test_tiled_codestreams_are_decoded_whole_and_reduced_in_software(tmp_path: Path) -> None:
    """Tiles have their own wavelet borders: their levels are not the working grid, so
    such a file is decoded in full and reduced like any other encoding."""
    path = write(tmp_path / "t.dcm", "j2k")
    ds = pydicom.dcmread(path)
    frame = get_frame(ds.PixelData, 0, number_of_frames=1)
    assert j2k.parse_codestream(frame).whole_image
    # SIZ: Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz, XTsiz (offset 20), YTsiz (24), ...
    claims_tiles = _with_siz(tmp_path / "t.dcm", 20, 256)
    frame = get_frame(pydicom.dcmread(claims_tiles).PixelData, 0, number_of_frames=1)
    assert not j2k.parse_codestream(frame).whole_image
    assert j2k.decode_reduced(pydicom.dcmread(claims_tiles), _Header(*SHAPE), 0,
                              (128, 128)) is None


class _Header:
    def __init__(self, rows: int, columns: int) -> None:
        self.rows, self.columns, self.frames = rows, columns, 1


def test_a_level_the_decoder_cannot_give_is_computed_from_the_full_decode(
        tmp_path: Path) -> None:
    """Pillow cannot decode level 2 of a 333 x 257 codestream ("broken data stream"), and
    level 1 reduced once more would differ where the decoder clipped level 1: the frame
    is decoded in full and reduced in software, to the uncompressed file's values."""
    image = synthesize_mammogram(np.random.default_rng(2), 3, (333, 257), "CC", "L")
    paths = [write_mammogram_dicom(tmp_path / f"{c}.dcm", image, patient_id="P",
                                   accession="A", view="CC", laterality="L", compression=c)
             for c in ("j2k", "none")]
    assert j2k.decode_reduced(pydicom.dcmread(paths[0]), _Header(333, 257), 0,
                              (32, 32)) is None
    got, want = (read_frame(p, target=(32, 32)) for p in paths)
    assert got.level == want.level == 2
    np.testing.assert_array_equal(got.raw, want.raw)
    # A finer level asked for (the re-read of a small crop) Pillow does decode.
    assert j2k.decode_reduced(pydicom.dcmread(paths[0]), _Header(333, 257), 0, (32, 32),
                              max_level=1)[1] == 1


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
