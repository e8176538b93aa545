"""mammography.data.segment: threshold, film edges, the largest component, what is blanked."""

from __future__ import annotations

import numpy as np
import pytest

from mammography.data import segment
from mammography.data.blocks import block_mean
from mammography.data.synthetic import synthesize_mammogram
from mammography.data.synthetic.film import film_mammogram


def half_disc(shape=(200, 160), radius=70, level=0.6, background=0.05) -> np.ndarray:
    """A breast-like half disc against the left edge, on a noisy background."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    image = np.full(shape, background, np.float32)
    image[(rows - shape[0] // 2) ** 2 + cols ** 2 < radius ** 2] = level
    image += np.random.default_rng(0).normal(0, 0.005, shape).astype(np.float32)
    return image


def test_threshold_sits_above_the_background_peak_not_between_fat_and_base() -> None:
    """A grey film base and a large fat area: the threshold stays just above the base,
    where the median of the dark class (base and fat) would have put it into the fat."""
    image = np.full((200, 200), 0.12, np.float32)  # film base
    image[:, :90] = 0.30                            # fat, 45 % of the image
    image[60:140, :40] = 0.75                       # some dense tissue
    image += np.random.default_rng(1).normal(0, 0.004, image.shape).astype(np.float32)
    threshold = segment.foreground_threshold(image)
    assert 0.12 < threshold < 0.2


def test_the_breast_is_the_largest_component_with_its_holes_filled() -> None:
    image = half_disc()
    image[95:105, 20:30] = 0.05      # a dark hole inside the breast (a fat lobule)
    image[10:20, 130:150] = 0.95     # a lead marker
    result = segment.segment_breast(image, "L")
    assert result.breast[100, 25]    # the hole belongs to the breast
    assert not result.breast[15, 140] and result.blank[15, 140]
    assert not (result.breast & result.blank).any()
    assert result.objects == 1 and result.touches() == ["left"]
    assert result.area_fraction == pytest.approx(np.pi * 70 ** 2 / 2 / image.size, rel=0.05)
    assert result.problems() == []
    assert not result.flip and result.orientation_source == "content"


def test_a_thin_bridge_to_a_label_does_not_make_it_breast() -> None:
    image = half_disc()
    image[150:180, 110:150] = 0.9    # a film label
    image[165, 60:111] = 0.9         # joined to the breast by a one-pixel scratch
    result = segment.segment_breast(image, "L")
    assert not result.breast[165, 130] and result.blank[165, 130]
    assert segment.crop_box(result, 1, image.shape)[3] <= 75


def test_film_edge_strips_are_cut_where_they_run_past_the_breast_and_over_it() -> None:
    sheet = film_mammogram(np.random.default_rng(7), 2, (900, 676), "MLO", "L")
    small = block_mean(sheet.image, 2)
    result = segment.segment_breast(small, "L")
    edges = block_mean(sheet.edges.astype(np.float32), 2) > 0.5
    # No film-edge pixel is breast, so none holds the crop open.
    assert not (result.breast & edges & ~block_mean(sheet.breast.astype(np.float32),
                                                   2).astype(bool)).any()
    visible = block_mean((sheet.breast & ~sheet.edges).astype(np.float32), 2) > 0.5
    assert (result.breast & visible).sum() >= 0.97 * visible.sum()


def test_full_field_phantoms_have_no_film_edge_and_nothing_blanked() -> None:
    rng = np.random.default_rng(11)
    for k in range(12):
        view, laterality = ("CC", "MLO")[k % 2], "LR"[(k // 2) % 2]
        image = block_mean(synthesize_mammogram(rng, 1 + k % 4, (512, 416), view, laterality),
                           2)
        foreground = image > segment.foreground_threshold(image)
        assert segment.film_edge_sides(foreground) == []
        result = segment.segment_breast(image, laterality)
        assert result.flip == (laterality == "R") and result.problems() == []
        assert result.blank.sum() <= 0.001 * image.size  # at most a stray noise pixel


def test_crop_is_flush_on_the_chest_wall_side_with_a_margin_elsewhere() -> None:
    image = half_disc()
    left = segment.segment_breast(image, "L")
    box = segment.crop_box(left, 2, (400, 320))
    assert box[2] == 0                       # chest wall: the image edge
    rows, cols = np.flatnonzero(left.breast.any(1)), np.flatnonzero(left.breast.any(0))
    assert box[0] == 2 * (rows[0] - segment.CROP_MARGIN)
    assert box[3] == 2 * (cols[-1] + 1 + segment.CROP_MARGIN)
    right = segment.segment_breast(image[:, ::-1].copy(), "R")
    box = segment.crop_box(right, 1, image.shape)
    assert right.flip and box[3] == image.shape[1]


@pytest.mark.parametrize(("paint", "problem"), [
    (lambda im: im.fill(0.6), "> 95%"),
    (lambda im: im.__setitem__((slice(90, 100), slice(0, 10)), 0.6), "< 5%"),
])
def test_problems_name_what_looks_wrong(paint, problem) -> None:
    image = np.full((200, 160), 0.05, np.float32)
    image += np.random.default_rng(2).normal(0, 0.004, image.shape).astype(np.float32)
    paint(image)
    result = segment.segment_breast(image, "L")
    assert any(problem in p for p in result.problems()), result.problems()


def test_a_breast_running_along_three_sides_is_suspect() -> None:
    image = np.full((200, 160), 0.05, np.float32)
    image[:, :60] = 0.6       # chest-wall side ...
    image[:12, :] = 0.6       # ... and a film frame the segmentation could not cut:
    image[-12:, :] = 0.6      # top and bottom, full width
    result = segment.segment_breast(image, "L")
    assert len(result.touches()) >= 3
    assert any("sides of the image" in p for p in result.problems())
