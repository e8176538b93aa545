"""mammography.data.preprocess: orientation, crop, resize, pad, and the fast DICOM path."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, JPEGLSLossless

from mammography.data import preprocess as pp
from mammography.data import segment
from mammography.data.blocks import block_mean
from mammography.data.dicom import wavelet
from mammography.data.dicom.decode import DicomReadError, decode
from mammography.data.preprocess import (
    PREPROCESS_VERSION,
    PreprocessSettings,
    load_preprocessed,
    load_preprocessed_with_info,
    preprocess,
    preprocess_with_info,
)
from mammography.data.synthetic import (
    BREAST_THRESHOLD,
    synthesize_mammogram,
    write_mammogram_dicom,
)
from mammography.data.synthetic.film import Film, film_mammogram

SMALL = PreprocessSettings(img_size=128)


def mammogram(laterality: str = "L", view: str = "CC", shape: tuple[int, int] = (512, 416),
              seed: int = 11, density: int = 2) -> np.ndarray:
    """Synthetic image01: chest wall on the left for L, on the right for R."""
    return synthesize_mammogram(np.random.default_rng(seed), density, shape, view, laterality)


def side_mass(image: np.ndarray, threshold: float = BREAST_THRESHOLD) -> tuple[int, int]:
    """Foreground pixels in the left and right thirds."""
    third = image.shape[1] // 3
    fg = image > threshold
    return int(fg[:, :third].sum()), int(fg[:, -third:].sum())


def content(out: np.ndarray, info: dict) -> np.ndarray:
    """The resized image without its padding, as [0, 1] floats."""
    rows, cols = info["resized_shape"]
    return out[:rows, :cols].astype(np.float32) / np.iinfo(out.dtype).max


# --------------------------------------------------------------------------- settings


def test_settings_defaults_key_and_dict() -> None:
    settings = PreprocessSettings()
    assert settings.as_dict() == {"img_size": 512, "crop_breast": True,
                                  "orientation": "chest_left", "dtype": "uint16",
                                  "img_width": None, "multiframe": "exclude",
                                  "j2k_reduce": True}
    assert PreprocessSettings(**settings.as_dict()) == settings
    # Stable across runs and machines: the cache depends on it. A change here
    # means every cached image is recomputed - bump PREPROCESS_VERSION instead
    # of editing this literal only when the output really changed.
    assert PREPROCESS_VERSION == 2
    assert settings.key() == "ddcf7eb8391711dc"
    variants = [settings, SMALL, PreprocessSettings(crop_breast=False),
                PreprocessSettings(dtype="uint8"), PreprocessSettings(img_width=256),
                PreprocessSettings(multiframe="middle"), PreprocessSettings(j2k_reduce=False)]
    assert len({v.key() for v in variants}) == len(variants)
    # A checkpoint written before these fields existed still loads.
    old = {"img_size": 512, "crop_breast": True, "orientation": "chest_left", "dtype": "uint16"}
    assert PreprocessSettings(**old) == settings


@pytest.mark.parametrize(("text", "shape"), [(512, (512, 512)), ("512", (512, 512)),
                                             ("512x256", (512, 256)), (" 640 X 320 ", (640, 320))])
def test_image_size_is_square_or_height_by_width(text, shape) -> None:
    assert pp.parse_image_size(text) == shape
    settings = PreprocessSettings.for_size(text)
    assert settings.shape == shape
    assert settings.img_width == (None if shape[0] == shape[1] else shape[1])


@pytest.mark.parametrize("bad", ["512x", "x256", "big", True, "512x256x3"])
def test_image_size_refuses_other_text(bad) -> None:
    with pytest.raises(ValueError, match="HxW"):
        pp.parse_image_size(bad)


@pytest.mark.parametrize("laterality", ["L", "R"])
def test_non_square_input_is_filled_by_the_breast_and_padded_right_bottom(
        laterality: str) -> None:
    image = mammogram(laterality, "CC", shape=(640, 512), seed=4)
    settings = PreprocessSettings.for_size("256x128")
    out, info = preprocess_with_info(image, settings, laterality)
    assert out.shape == (256, 128)
    rows, cols = info["resized_shape"]
    assert rows == 256 or cols == 128
    assert not out[:, cols:].any() and not out[rows:, :].any()
    square, _ = preprocess_with_info(image, PreprocessSettings(img_size=256), laterality)
    assert (out > 0).mean() > (square > 0).mean()


def test_key_includes_the_version(monkeypatch: pytest.MonkeyPatch) -> None:
    before = PreprocessSettings().key()
    monkeypatch.setattr(pp, "PREPROCESS_VERSION", PREPROCESS_VERSION + 1)
    assert PreprocessSettings().key() != before


@pytest.mark.parametrize("bad", [{"img_size": 0}, {"img_size": 2.5}, {"img_size": True},
                                 {"dtype": "float32"}, {"orientation": "chest_right"},
                                 {"crop_breast": "yes"}])
def test_settings_validate(bad: dict) -> None:
    with pytest.raises(ValueError):
        PreprocessSettings(**bad)


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        PreprocessSettings().img_size = 3  # type: ignore[misc]


# --------------------------------------------------------------------------- output


@pytest.mark.parametrize(("dtype", "top"), [("uint8", 255), ("uint16", 65535)])
@pytest.mark.parametrize("size", [64, 224, 512])
def test_output_shape_dtype_and_range(dtype: str, top: int, size: int) -> None:
    out = preprocess(mammogram(), PreprocessSettings(img_size=size, dtype=dtype))
    assert out.shape == (size, size) and out.dtype == np.dtype(dtype)
    assert out.min() == 0 and out.max() >= 0.9 * top


def test_non_float32_input_and_bad_shapes() -> None:
    image = mammogram(shape=(256, 208))
    np.testing.assert_array_equal(preprocess(image.astype(np.float64), SMALL),
                                  preprocess(image, SMALL))
    for bad in (np.zeros((4, 4, 3)), np.zeros((0, 5))):
        with pytest.raises(ValueError):
            preprocess(bad, SMALL)


def test_small_images_are_enlarged() -> None:
    image = mammogram(shape=(64, 52))
    out, info = preprocess_with_info(image, PreprocessSettings(img_size=256))
    assert out.shape == (256, 256) and info["scale"] > 1 and info["block"] == 1
    assert info["resized_shape"][0] == 256  # the long side fills the square


# --------------------------------------------------------------------------- orientation


@pytest.mark.parametrize("view", ["CC", "MLO"])
@pytest.mark.parametrize("laterality", ["L", "R"])
def test_both_breasts_come_out_chest_left(laterality: str, view: str) -> None:
    image = mammogram(laterality, view)
    left, right = side_mass(image)
    assert (left > right) == (laterality == "L")  # the generator's convention
    # Content decides: a wrong or missing laterality tag does not matter.
    for tag in (laterality, "", "R" if laterality == "L" else "L"):
        out, info = preprocess_with_info(image, SMALL, laterality=tag)
        assert info["flipped"] == (laterality == "R")
        assert info["orientation_source"] == "content"
        left, right = side_mass(content(out, info))
        assert left > 1.5 * right


@pytest.mark.parametrize("laterality", ["L", "R"])
def test_chest_wall_sits_at_the_left_edge(laterality: str) -> None:
    out, info = preprocess_with_info(mammogram(laterality, "MLO"), SMALL)
    tissue = content(out, info) > BREAST_THRESHOLD
    # The crop removed the air before the chest wall: the first columns are
    # mostly tissue, the last (nipple side) mostly not.
    assert tissue[:, :3].mean() > 0.5 > tissue[:, -3:].mean()


@pytest.mark.parametrize(("laterality", "flipped", "source"),
                         [("L", False, "laterality"), ("R", True, "laterality"),
                          ("", False, "default")])
def test_laterality_breaks_ties(laterality: str, flipped: bool, source: str) -> None:
    rows, cols = np.mgrid[0:200, 0:200]
    disc = (((rows - 100) ** 2 + (cols - 100) ** 2) < 60**2).astype(np.float32) * 0.8
    _, info = preprocess_with_info(disc, SMALL, laterality=laterality)
    assert (info["flipped"], info["orientation_source"]) == (flipped, source)


# --------------------------------------------------------------------------- crop


@pytest.mark.parametrize("view", ["CC", "MLO"])
@pytest.mark.parametrize("laterality", ["L", "R"])
def test_crop_keeps_every_tissue_pixel(laterality: str, view: str) -> None:
    image = mammogram(laterality, view, seed=5)
    _, info = preprocess_with_info(image, SMALL)
    r0, r1, c0, c1 = info["crop_box"]
    foreground = image > BREAST_THRESHOLD
    assert foreground[r0:r1, c0:c1].sum() == foreground.sum()
    assert (r1 - r0) * (c1 - c0) < image.size  # and it did crop something


def test_crop_gives_tissue_more_pixels_and_loses_none() -> None:
    image = mammogram("L", "CC", shape=(600, 480), seed=2, density=1)
    cropped, info = preprocess_with_info(image, SMALL)
    full, info_full = preprocess_with_info(image, dataclasses.replace(SMALL, crop_breast=False))
    assert info_full["crop_box"] == [0, 600, 0, 480]
    tissue_in = (image > BREAST_THRESHOLD).sum()
    for out, meta in ((cropped, info), (full, info_full)):
        tissue_out = (out.astype(np.float32) / 65535 > BREAST_THRESHOLD).sum()
        # Area scales with scale**2; boundaries blur a little when resizing.
        assert tissue_out / meta["scale"] ** 2 == pytest.approx(tissue_in, rel=0.05)
    assert info["scale"] > info_full["scale"]


def test_padding_goes_right_and_bottom() -> None:
    image = mammogram("L", "CC", shape=(512, 416))
    out, info = preprocess_with_info(image, SMALL)
    rows, cols = info["resized_shape"]
    assert rows == 128 and cols < 128
    assert not out[:, cols:].any() and not out[rows:, :].any()


def test_markers_are_cropped_away_and_blanked() -> None:
    image = mammogram("L", "CC", shape=(512, 416), seed=3)
    image[10:18, 380:400] = 1.0  # a small bright "L CC" marker in the far corner
    out, info = preprocess_with_info(image, SMALL)
    r0, r1, c0, c1 = info["crop_box"]
    assert not (r0 <= 10 and c1 >= 400)
    assert info["objects_blanked"] >= 1 and info["segmentation_problems"] == []

    two = np.zeros((400, 400), np.float32)
    two[40:200, 0:150] = 0.7   # the breast, and a second piece cut off by a dark band:
    two[230:360, 0:100] = 0.7  # only the largest component is the breast
    out, info = preprocess_with_info(two, SMALL)
    assert info["crop_box"][0] <= 40 and info["crop_box"][1] < 230
    assert any("second piece" in p for p in info["segmentation_problems"])
    # and the piece's top rows, inside the crop margin, are blanked out of the input
    rows = info["resized_shape"][0]
    assert not out[rows - 1:, :].any()


def test_blank_image_is_not_cropped() -> None:
    out, info = preprocess_with_info(np.zeros((300, 200), np.float32), SMALL)
    assert info["crop_box"] == [0, 300, 0, 200] and not out.any()


# --------------------------------------------------------------------------- DICOM fast path


def write(path: Path, image: np.ndarray, laterality: str = "L", view: str = "CC",
          **kwargs) -> Path:
    return write_mammogram_dicom(path, image, patient_id="P1", accession="A1", view=view,
                                 laterality=laterality, **kwargs)


def assert_equivalent(path: Path, settings: PreprocessSettings) -> None:
    image, header = decode(path)
    expected, expected_info = preprocess_with_info(image, settings, header.laterality)
    got, got_header, info = load_preprocessed_with_info(path, settings)
    assert got_header == header
    # The analysis image averages mapped floats on one side, clipped integers on the
    # other: a mask pixel at the threshold may differ, never the crop.
    counts = ("mask_area_fraction", "breast_share")
    assert {k: v for k, v in info.items() if k not in counts} == {
        k: v for k, v in expected_info.items() if k not in counts}
    for key in counts:
        assert info[key] == pytest.approx(expected_info[key], abs=2e-3)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    top = np.iinfo(got.dtype).max
    diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
    # A block straddling a window end may differ by up to one window step
    # (~1/2000 here); anything else only by rounding (one output step) - but for
    # the odd pixel blanked on one side only (a mask pixel at the threshold).
    assert np.count_nonzero(diff > max(1, 2e-3 * top)) <= 2e-3 * diff.size
    assert diff.mean() <= 2e-4 * top


CASES = {
    "mono2-window": {},
    "mono1-window": {"photometric": "MONOCHROME1"},
    "mono1-percentile": {"photometric": "MONOCHROME1", "window": False},
    "rescale-14bit": {"bits_stored": 14, "rescale_slope": 2.0, "rescale_intercept": -1024.0},
    "rle": {"compression": "rle"},
    "j2k": {"compression": "j2k"},
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("laterality", ["L", "R"])
def test_load_preprocessed_matches_decode_then_preprocess(tmp_path: Path, case: str,
                                                          laterality: str) -> None:
    image = mammogram(laterality, "MLO", shape=(600, 488))
    path = write(tmp_path / f"{case}.dcm", image, laterality, "MLO", **CASES[case])
    # At full resolution the two paths see the same pixels: decode() maps them all,
    # load_preprocessed averages the integers first. On the working grid they differ
    # by design (integers are reduced before mapping); see the encoding tests below.
    for settings in (dataclasses.replace(SMALL, j2k_reduce=False),
                     PreprocessSettings(img_size=224, dtype="uint8", crop_breast=False,
                                        j2k_reduce=False)):
        assert_equivalent(path, settings)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm",
                                  "rtdose_1frame.dcm", "image_dfl.dcm"])
def test_load_preprocessed_matches_on_pydicom_files(name: str) -> None:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is only in pydicom-data")
    for settings in (PreprocessSettings(img_size=32, j2k_reduce=False),
                     PreprocessSettings(img_size=256, j2k_reduce=False)):
        assert_equivalent(Path(path), settings)
    # On the working grid (level 1 or 2 of these for a 16 px input) they still load.
    out, _, info = load_preprocessed_with_info(Path(path), PreprocessSettings(img_size=16))
    assert out.shape == (16, 16) and info["decode_level"] == wavelet.working_level(
        info["input_shape"], (16, 16))


def test_load_preprocessed_returns_the_header_and_orients(tmp_path: Path) -> None:
    path = write(tmp_path / "r.dcm", mammogram("R", "CC"), "R", "CC")
    out, header = load_preprocessed(path, SMALL)
    assert (header.laterality, header.view) == ("R", "CC")
    _, _, info = load_preprocessed_with_info(path, SMALL)
    assert info["flipped"]
    left, right = side_mass(content(out, info))
    assert left > 2 * right


def test_load_preprocessed_errors_are_dicom_read_errors(tmp_path: Path) -> None:
    text = tmp_path / "labels.csv"
    text.write_text("a,b\n1,2\n")
    with pytest.raises(DicomReadError, match="not a DICOM file"):
        load_preprocessed(text, SMALL)


# --------------------------------------------------------------------------- film


def film(laterality: str, view: str, seed: int = 3, shape=(900, 676)) -> Film:
    """A digitised film (edge strips, lead marker, label) with its truth."""
    return film_mammogram(np.random.default_rng(seed), 2, shape, view, laterality)


def breast_coverage(truth: np.ndarray, info: dict, settings: PreprocessSettings) -> float:
    """Share of the network input covered by breast (truth pixels in the crop, scaled)."""
    r0, r1, c0, c1 = info["crop_box"]
    height, width = settings.shape
    return float(truth[r0:r1, c0:c1].sum()) * info["scale"] ** 2 / (height * width)


def marker_pixels_left(sheet: Film, out: np.ndarray, info: dict) -> int:
    """Marker/label pixels inside the crop whose input pixel is not blanked (not 0)."""
    r0, r1, c0, c1 = info["crop_box"]
    rows, cols = np.nonzero(sheet.markers[r0:r1, c0:c1])
    cols = (c1 - c0 - 1 - cols) if info["flipped"] else cols
    y = np.minimum((rows * info["scale"]).astype(np.intp), info["resized_shape"][0] - 1)
    x = np.minimum((cols * info["scale"]).astype(np.intp), info["resized_shape"][1] - 1)
    return int(np.count_nonzero(out[y, x]))


@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize("view", ["CC", "MLO"])
@pytest.mark.parametrize("laterality", ["L", "R"])
def test_film_edges_marker_and_label_stay_out_of_the_input(laterality: str, view: str,
                                                           seed: int) -> None:
    sheet = film(laterality, view, seed)
    assert sheet.markers.any() and sheet.edges.any()
    out, info = preprocess_with_info(sheet.image, SMALL, laterality)
    r0, r1, c0, c1 = info["crop_box"]
    truth = sheet.breast & ~sheet.edges  # what a film edge covers is not seen
    # Tissue lost: at most slivers along a film edge, whose ragged border the cut
    # (one width per side) does not follow.
    lost = truth.copy()
    lost[r0:r1, c0:c1] = False
    assert lost.sum() <= 0.02 * truth.sum()
    rows_lost, cols_lost = np.nonzero(lost)
    to_border = np.minimum.reduce([rows_lost, truth.shape[0] - 1 - rows_lost, cols_lost,
                                   truth.shape[1] - 1 - cols_lost])
    assert (to_border <= 0.03 * max(truth.shape)).all()
    rows, cols = np.flatnonzero(truth.any(1)), np.flatnonzero(truth.any(0))
    margin = 0.02 * max(truth.shape)
    assert r0 >= rows[0] - margin and r1 <= rows[-1] + 1 + margin
    assert c0 >= cols[0] - margin and c1 <= cols[-1] + 1 + margin
    assert info["flipped"] == (laterality == "R")
    assert marker_pixels_left(sheet, out, info) == 0
    assert info["objects_blanked"] >= 1 and info["segmentation_problems"] == []
    # The mask's box is the breast's, within a block of the analysis image.
    box = info["mask_box"]
    block = max(truth.shape) / 256 * 2 ** info["decode_level"] * 2
    assert abs(box[0] - rows[0]) <= block and abs(box[1] - rows[-1] - 1) <= block


def test_the_chest_wall_is_flush_with_the_input_edge() -> None:
    """No margin on the chest-wall side: the breast starts in the input's first column."""
    for laterality in ("L", "R"):
        out, info = preprocess_with_info(film(laterality, "CC", 5).image, SMALL, laterality)
        rows = info["resized_shape"][0]
        tissue = out[:rows].astype(np.float32) / 65535 > 0.1
        assert tissue[:, 0].mean() > 0.5


def test_film_crop_and_a_tall_input_raise_breast_coverage() -> None:
    sheet = film("L", "CC", 6)
    square = PreprocessSettings(img_size=256)
    tall = PreprocessSettings.for_size("256x128")
    _, info_square = preprocess_with_info(sheet.image, square, "L")
    _, info_tall = preprocess_with_info(sheet.image, tall, "L")
    rows, cols = sheet.image.shape
    full = {"crop_box": [0, rows, 0, cols], "scale": min(256 / rows, 256 / cols)}
    coverage = [breast_coverage(sheet.breast, full, square),
                breast_coverage(sheet.breast, info_square, square),
                breast_coverage(sheet.breast, info_tall, tall)]
    assert coverage[0] < coverage[1] < coverage[2]
    assert coverage[2] > 0.6
    # The record's own estimate (mask pixels) agrees with the truth's.
    assert info_tall["breast_share"] == pytest.approx(coverage[2], abs=0.08)


def test_full_field_images_have_no_film_edge() -> None:
    """Nothing is cut from a full-field image: no side looks like a film's border."""
    for seed in range(8):
        for laterality, view in (("L", "CC"), ("R", "MLO")):
            image = mammogram(laterality, view, shape=(320, 256), seed=seed, density=1 + seed % 4)
            small = block_mean(image, 2)
            foreground = small > segment.foreground_threshold(small)
            assert segment.film_edge_sides(foreground) == []
            np.testing.assert_array_equal(segment._without_edge_strips(foreground, small),
                                          foreground)


# --------------------------------------------------------------------------- encodings


ENCODINGS = {"rle": "rle", "j2k": "j2k", "jpegls": "jpegls"}


def write_encoded(path: Path, image: np.ndarray, encoding: str, **kwargs) -> Path:
    written = write(path, image, "R", "MLO", compression="none" if encoding == "jpegls"
                    else encoding, **kwargs)
    if encoding == "jpegls":
        ds = pydicom.dcmread(written)
        ds.compress(JPEGLSLossless, generate_instance_uid=False)
        ds.save_as(written)
    return written


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize(("bits", "photometric", "window"), [
    (12, "MONOCHROME2", True), (12, "MONOCHROME1", False), (14, "MONOCHROME2", False),
    (14, "MONOCHROME1", True), (16, "MONOCHROME2", False), (16, "MONOCHROME1", True)])
def test_every_lossless_encoding_gives_the_same_input(tmp_path: Path, encoding: str, bits: int,
                                                      photometric: str, window: bool) -> None:
    """The same pixels stored uncompressed, RLE, JPEG-LS or lossless J2K: the same array,
    bit for bit, and the same decisions (the percentile window included)."""
    image = mammogram("R", "MLO", shape=(640, 520), seed=bits)
    options = {"bits_stored": bits, "photometric": photometric, "window": window}
    plain = write_encoded(tmp_path / "plain.dcm", image, "none", **options)
    other = write_encoded(tmp_path / f"{encoding}.dcm", image, encoding, **options)
    for settings in (SMALL, PreprocessSettings.for_size("64x32")):
        want, _, want_info = load_preprocessed_with_info(plain, settings)
        got, _, got_info = load_preprocessed_with_info(other, settings)
        assert got_info["decode_level"] == want_info["decode_level"] >= 1
        np.testing.assert_array_equal(got, want)
        assert got_info == want_info


def test_jpeg_baseline_goes_through_the_same_working_grid(tmp_path: Path) -> None:
    """8-bit JPEG baseline is lossy: close to the same 8-bit pixels uncompressed, on the
    same level, with the same crop."""
    image = mammogram("L", "CC", shape=(640, 520), seed=9)
    source = np.rint(image * 255).astype(np.uint8)
    plain = write(tmp_path / "p.dcm", image, bits_stored=9, window=False)
    ds = pydicom.dcmread(plain)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = source.tobytes()
    ds.save_as(plain)
    buffer = io.BytesIO()
    Image.fromarray(source).save(buffer, format="JPEG", quality=95)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    lossy = tmp_path / "j.dcm"
    ds.save_as(lossy, enforce_file_format=True)
    want, _, want_info = load_preprocessed_with_info(plain, SMALL)
    got, _, got_info = load_preprocessed_with_info(lossy, SMALL)
    assert got_info["decode_level"] == want_info["decode_level"] == 1
    assert got_info["crop_box"] == want_info["crop_box"]
    mse = float(np.mean((got.astype(np.float64) - want.astype(np.float64)) ** 2))
    assert 10 * np.log10(65535.0 ** 2 / mse) > 40
