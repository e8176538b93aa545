"""Where the breast is: foreground threshold, breast mask, chest-wall side, crop box.

Every decision is made on a small strided copy of the mapped image (about 256
pixels on the long side, see :mod:`mammography.data.preprocess`).

The mask has to survive digitised film, where the breast shares the image
with burned-in film labels (bright blobs and text) and the bright unexposed
edge of the film (a thin frame along the borders, often touching the
breast). So:

1. **Threshold** just above the background: its level plus noise, never above
   Otsu's split between background and tissue (:func:`foreground_threshold`).
2. **Film edge** (:func:`film_edge_sides`): when foreground runs along nearly
   the whole length of two or more sides, those are framed by a film edge;
   there every run of foreground from the edge that ends close to it is
   removed (where the breast reaches the edge the run goes on and is kept),
   so the breast no longer connects to the frame around the film.
3. **Components**: the largest one is the breast; others are kept only when
   at least ``KEEP_COMPONENT_SHARE`` of it (a breast split in two by a dark
   band must not lose a piece), so labels, text and markers - far smaller -
   fall away.

On full-field images, which have no film edge, step 2 finds nothing and the
crop is what it was before film support (checked on the demo dataset).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

#: Foreground threshold bounds on the [0, 1] scale: at least this far above the
#: background level, at most the Otsu split between background and tissue.
MIN_CONTRAST = 0.02
#: Background noise multiple the threshold must clear (robust sigma units).
NOISE_SIGMAS = 5.0
#: Connected components at least this share of the largest one count as breast.
KEEP_COMPONENT_SHARE = 0.10
#: Film edge (see film_edge_sides): foreground along at least this share of
#: a side, in runs from the edge that end within this share of the image.
STRIP_MIN_COVER = 0.9
STRIP_MAX_DEPTH = 0.06
#: Crop margin as a share of the image's long side (and at least 2 strides).
CROP_MARGIN_SHARE = 0.01
#: Left and right thirds whose breast area differs by less than this share of
#: the larger one are "ambiguous"; laterality decides then.
ORIENTATION_TIE_SHARE = 0.10


def foreground_threshold(small: np.ndarray) -> float:
    """Just above the background: its level plus noise, but never above the Otsu split.

    A low threshold keeps the thin breast periphery (skin line, nipple) inside
    the mask; the Otsu cap keeps a noisy background from swallowing it all.
    Everything comes from one histogram (bins of 1/1024), which is plenty for
    a threshold and much cheaper than medians over the pixels.
    """
    bins = 1024
    index = np.clip(small, np.float32(0), np.float32(1)) * np.float32(bins - 1)
    hist = np.bincount(index.astype(np.intp).ravel(), minlength=bins).astype(np.float64)
    centres = np.arange(bins) / (bins - 1)
    otsu_bin = _otsu_bin(hist)
    dark = hist[: otsu_bin + 1]
    if dark.sum() == 0:
        return float(centres[otsu_bin])
    level_bin = _weighted_median(np.arange(dark.size), dark)
    deviation = np.abs(np.arange(dark.size) - level_bin)
    sigma = 1.4826 * _weighted_median(deviation, dark) / (bins - 1)
    level = level_bin / (bins - 1)
    return float(min(centres[otsu_bin], level + max(NOISE_SIGMAS * sigma, MIN_CONTRAST)))


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def _otsu_bin(hist: np.ndarray) -> int:
    """Last bin of the dark class under Otsu's split (maximal between-class variance)."""
    bins = np.arange(hist.size, dtype=np.float64)
    weight0 = np.cumsum(hist)
    weight1 = weight0[-1] - weight0
    mass0 = np.cumsum(hist * bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = weight0 * weight1 * (mass0 / weight0 - (mass0[-1] - mass0) / weight1) ** 2
    return int(np.argmax(np.nan_to_num(between[:-1], nan=-1.0)))


def breast_mask(foreground: np.ndarray) -> np.ndarray:
    """The breast in a thresholded image: no film-edge strips, text or small blobs."""
    if not foreground.any():
        return foreground
    return _large_components(_without_edge_strips(foreground))


def film_edge_sides(foreground: np.ndarray) -> list[str]:
    """Sides along which foreground runs nearly the whole length (``STRIP_MIN_COVER``).

    A film's unexposed edge frames it on several sides; a full-field image
    has at most one such side (the chest wall of an MLO view), so only two or
    more count as a film edge.
    """
    sides = [side for side, view in _side_views(foreground).items()
             if view[0].mean() >= STRIP_MIN_COVER]
    return sides if len(sides) >= 2 else []


def _side_views(image: np.ndarray) -> dict[str, np.ndarray]:
    """Each side's view of ``image`` with that side as row 0 (views: writes go through)."""
    return {"top": image, "bottom": image[::-1], "left": image.T, "right": image.T[::-1]}


def _without_edge_strips(foreground: np.ndarray) -> np.ndarray:
    """``foreground`` less the film edge.

    On each framed side, the edge's width is the median length of the runs of
    foreground from the edge that end within ``STRIP_MAX_DEPTH``; runs about
    that long are the edge and go. Where tissue touches the edge the run is
    longer and stays whole, so the crop keeps that tissue and gets its pixels
    of film edge with it.
    """
    sides = film_edge_sides(foreground)
    if not sides:
        return foreground
    cleaned = foreground.copy()
    source, target = _side_views(foreground), _side_views(cleaned)
    for side in sides:
        band = source[side][: max(2, math.ceil(STRIP_MAX_DEPTH * source[side].shape[0]))]
        depth = band.shape[0]
        run = np.where(band.all(axis=0), depth, np.argmin(band, axis=0))
        short = run[run < depth]
        if short.size == 0:
            continue
        # The edge's own width; a longer run is tissue touching the edge, kept whole.
        width = float(np.median(short))
        strip = np.where(run <= width + max(1.0, width / 4), run, 0)
        target[side][:depth][np.arange(depth)[:, None] < strip[None, :]] = False
    return cleaned


def _large_components(mask: np.ndarray) -> np.ndarray:
    """The largest connected component, plus any at least KEEP_COMPONENT_SHARE of it."""
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0  # background
    keep = sizes >= KEEP_COMPONENT_SHARE * sizes.max()
    keep[0] = False
    return keep[labels]


def chest_wall_on_right(breast: np.ndarray, laterality: str) -> tuple[bool, str]:
    """Is the chest wall on the right edge? Plus what decided it."""
    columns = breast.sum(axis=0, dtype=np.int64)
    third = max(1, columns.size // 3)
    left, right = int(columns[:third].sum()), int(columns[-third:].sum())
    if abs(left - right) > ORIENTATION_TIE_SHARE * max(left, right, 1):
        return right > left, "content"
    side = laterality.strip().upper()[:1]
    if side in ("L", "R"):
        # Stored convention (PatientOrientation A\R for a left breast): the
        # chest wall is on the image side of the breast's laterality.
        return side == "R", "laterality"
    return False, "default"


def crop_box(breast: np.ndarray, stride: int,
             shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Rows r0:r1, columns c0:c1 of the full image holding every breast pixel, plus a margin."""
    rows, cols = shape
    hit_rows = np.flatnonzero(breast.any(axis=1))
    hit_cols = np.flatnonzero(breast.any(axis=0))
    if hit_rows.size == 0:
        return (0, rows, 0, cols)
    # A strided copy sees every stride-th pixel: tissue may reach stride - 1
    # pixels past the last one it saw, hence at least two strides of margin.
    margin = max(2 * stride, math.ceil(CROP_MARGIN_SHARE * max(rows, cols)))
    return (max(0, int(hit_rows[0]) * stride - margin),
            min(rows, int(hit_rows[-1]) * stride + 1 + margin),
            max(0, int(hit_cols[0]) * stride - margin),
            min(cols, int(hit_cols[-1]) * stride + 1 + margin))
