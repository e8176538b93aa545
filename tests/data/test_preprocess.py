"""mammography.data.preprocess: orientation, crop, resize, pad, and the fast DICOM path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from mammography.data import preprocess as pp
from mammography.data import segment
from mammography.data.dicom.decode import Affine, DicomReadError, decode
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
from mammography.data.synthetic.film import add_film_artefacts

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
    assert PREPROCESS_VERSION == 1
    assert settings.key() == "f8963b4e29ff3328"
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


def test_markers_are_cropped_away_but_big_pieces_kept() -> None:
    image = mammogram("L", "CC", shape=(512, 416), seed=3)
    image[10:18, 380:400] = 1.0  # a small bright "L CC" marker in the far corner
    _, info = preprocess_with_info(image, SMALL)
    r0, r1, c0, c1 = info["crop_box"]
    assert not (r0 <= 10 and c1 >= 400)

    two = np.zeros((400, 400), np.float32)
    two[40:200, 0:150] = 0.7   # a breast cut in two by a dark band:
    two[230:360, 0:100] = 0.7  # both pieces are tissue
    _, info = preprocess_with_info(two, SMALL)
    assert info["crop_box"][0] <= 40 and info["crop_box"][1] >= 360


def test_blank_image_is_not_cropped() -> None:
    out, info = preprocess_with_info(np.zeros((300, 200), np.float32), SMALL)
    assert info["crop_box"] == [0, 300, 0, 200] and not out.any()


# --------------------------------------------------------------------------- block means


def _naive_block_mean(image: np.ndarray, k: int) -> np.ndarray:
    rows, cols = image.shape
    out = np.empty((-(-rows // k), -(-cols // k)))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = image[i * k:(i + 1) * k, j * k:(j + 1) * k].mean()
    return out


@pytest.mark.parametrize("shape", [(64, 48), (67, 50), (9, 70)])
@pytest.mark.parametrize("k", [1, 2, 8])
@pytest.mark.parametrize("flip", [False, True])
def test_block_mean_handles_partial_blocks_and_flip(shape: tuple[int, int], k: int,
                                                    flip: bool) -> None:
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    expected = _naive_block_mean(image[:, ::-1] if flip else image, k)
    np.testing.assert_allclose(pp._block_mean(image, k, flip), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("dtype", "lo", "hi"), [
    ("uint16", 500, 3500),    # typical 12-bit window: one uint16 group per block
    ("uint16", 0, 65535),     # full 16-bit span: uint16 groups of one row
    ("int16", -1200, 2400),   # signed (CT-like)
    ("uint8", 20, 230),       # 8-bit data is widened before adding
])
@pytest.mark.parametrize("flip", [False, True])
def test_affine_block_mean_equals_mean_of_mapped_values(dtype: str, lo: int, hi: int,
                                                        flip: bool) -> None:
    info = np.iinfo(dtype)
    raw = np.random.default_rng(1).integers(info.min, int(info.max) + 1, size=(203, 150),
                                            dtype=dtype)
    # The lo/hi of Affine are where the line is <= 0 and >= 1.
    alpha = 1.0 / (hi - lo - 2)
    affine = Affine(alpha=alpha, beta=-(lo + 1) * alpha, lo=lo, hi=hi)
    mapped = np.clip(affine.alpha * raw.astype(np.float64) + affine.beta, 0, 1)
    for k in (3, 8):
        expected = _naive_block_mean(mapped[:, ::-1] if flip else mapped, k)
        got = pp._block_mean_affine(raw, affine, k, flip)
        # Exact but where a block mixes clipped and sloped values (< alpha).
        np.testing.assert_allclose(got, expected, atol=alpha + 1e-6)


# --------------------------------------------------------------------------- DICOM fast path


def write(path: Path, image: np.ndarray, laterality: str = "L", view: str = "CC",
          **kwargs) -> Path:
    return write_mammogram_dicom(path, image, patient_id="P1", accession="A1", view=view,
                                 laterality=laterality, **kwargs)


def assert_equivalent(path: Path, settings: PreprocessSettings) -> None:
    image, header = decode(path)
    expected, expected_info = preprocess_with_info(image, settings, header.laterality)
    got, got_header, info = load_preprocessed_with_info(path, settings)
    assert got_header == header and info == expected_info
    assert got.dtype == expected.dtype and got.shape == expected.shape
    top = np.iinfo(got.dtype).max
    diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
    # A block straddling a window end may differ by up to one window step
    # (~1/2000 here); anything else only by rounding (one output step).
    assert diff.max() <= max(1, 2e-3 * top) and diff.mean() <= 1e-4 * top


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
    # Full-resolution J2K decode here; the reduced one is compared in test_j2k.py.
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
    for settings in (PreprocessSettings(img_size=32), PreprocessSettings(img_size=256)):
        assert_equivalent(Path(path), settings)


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


def film_mammogram(laterality: str, view: str, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A digitised-film-like image (film edge, burned-in label) and its breast truth."""
    image = mammogram(laterality, view, shape=(640, 512), seed=seed, density=2)
    film = add_film_artefacts(image, np.random.default_rng(seed + 1), laterality)
    return film, image > BREAST_THRESHOLD


def breast_coverage(truth: np.ndarray, info: dict, settings: PreprocessSettings) -> float:
    """Share of the network input covered by breast (truth pixels in the crop, scaled)."""
    r0, r1, c0, c1 = info["crop_box"]
    height, width = settings.shape
    return float(truth[r0:r1, c0:c1].sum()) * info["scale"] ** 2 / (height * width)


@pytest.mark.parametrize("view", ["CC", "MLO"])
@pytest.mark.parametrize("laterality", ["L", "R"])
def test_film_edge_and_label_are_cropped_away(laterality: str, view: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    film, truth = film_mammogram(laterality, view)
    _, info = preprocess_with_info(film, SMALL, laterality)
    r0, r1, c0, c1 = info["crop_box"]
    assert truth[r0:r1, c0:c1].sum() >= 0.999 * truth.sum()  # (almost) no tissue lost
    rows, cols = np.flatnonzero(truth.any(1)), np.flatnonzero(truth.any(0))
    margin = 0.03 * 640
    assert r0 >= rows[0] - margin and r1 <= rows[-1] + 1 + margin
    assert c0 >= cols[0] - margin and c1 <= cols[-1] + 1 + margin
    assert info["flipped"] == (laterality == "R")
    # The rule before film support (largest blobs of the thresholded image)
    # takes the film edge for breast and keeps the whole image.
    monkeypatch.setattr(segment, "_without_edge_strips", lambda foreground: foreground)
    _, before = preprocess_with_info(film, SMALL, laterality)
    assert before["crop_box"] == [0, 640, 0, 512]


def test_film_crop_and_a_tall_input_raise_breast_coverage() -> None:
    film, truth = film_mammogram("L", "CC")
    square = PreprocessSettings(img_size=256)
    tall = PreprocessSettings.for_size("256x128")
    _, info_square = preprocess_with_info(film, square, "L")
    _, info_tall = preprocess_with_info(film, tall, "L")
    full = {"crop_box": [0, 640, 0, 512], "scale": 256 / 640}
    coverage = [breast_coverage(truth, full, square), breast_coverage(truth, info_square, square),
                breast_coverage(truth, info_tall, tall)]
    assert coverage[0] < coverage[1] < coverage[2]
    assert coverage[2] > 0.6


def test_full_field_crops_do_not_change_for_film_support() -> None:
    """No film edge, no change: the strip removal finds nothing on full-field phantoms."""
    for seed in range(8):
        for laterality, view in (("L", "CC"), ("R", "MLO")):
            image = mammogram(laterality, view, shape=(320, 256), seed=seed, density=1 + seed % 4)
            stride = pp._analysis_stride(image.shape)
            small = image[::stride, ::stride]
            foreground = small > segment.foreground_threshold(small)
            assert segment.film_edge_sides(foreground) == []
