"""Where the breast is: one segmentation step, and everything it decides.

:func:`segment_breast` works on the *analysis image* - the working grid averaged down
to about 256 pixels on the long side, mapped to [0, 1] (see
:mod:`mammography.data.preprocess`) - with the field's usual method:

1. **Threshold** just above the background (:func:`foreground_threshold`): the
   background's level - the peak of the dark part of the histogram - plus its noise,
   never above Otsu's split between background and tissue.
2. **Film edges** (:func:`film_edge_sides`): along a side where runs of foreground
   from the edge end within a few per cent of the image on at least a quarter of the
   length tissue does not reach, those short runs are a film's unexposed border and
   are cut away; where the breast reaches that edge only the border's width goes. A
   border lying over tissue along a whole side shows as a band brighter than the
   tissue behind it, and goes too.
3. **Opening** (3 x 3): one-pixel strips and thin bridges between the breast and a
   label fall apart.
4. **Largest connected component** (scipy.ndimage), grown back by a pixel into the
   foreground the opening trimmed, holes filled: the breast.
5. **Everything else** that is foreground - labels, lead markers, film edges - is an
   object to blank out of the input (:attr:`Segmentation.blank`), so nothing but the
   breast is left inside the crop box.

The crop box (:func:`crop_box`) is the breast's bounding box with a small margin,
flush with the image edge on the chest-wall side. The chest-wall side
(:func:`chest_wall_on_right`) is read from the breast itself; DICOM laterality only
breaks ties.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Foreground threshold bounds on the [0, 1] scale: at least this far above the
#: background level, at most the Otsu split between background and tissue.
MIN_CONTRAST = 0.02
#: Background noise multiple the threshold must clear (robust sigma units).
NOISE_SIGMAS = 5.0
#: Film edge (see film_edge_sides): runs of foreground from the edge that end within
#: STRIP_MAX_DEPTH of the image, on at least STRIP_MIN_SHARE of the side's length
#: that tissue does not reach, and on STRIP_MIN_LENGTH of the whole side.
STRIP_MIN_SHARE = 0.25
STRIP_MIN_LENGTH = 0.05
STRIP_MAX_DEPTH = 0.06
#: A film edge over tissue: rows at the edge this much brighter (on [0, 1]) than the
#: tissue STRIP_MAX_DEPTH in, in the median along the side.
BRIGHT_EDGE_STEP = 0.12
#: Crop margin in analysis pixels around the breast (none on the chest-wall side).
CROP_MARGIN = 1
#: Left and right thirds whose breast area differs by less than this share of
#: the larger one are "ambiguous"; laterality decides then.
ORIENTATION_TIE_SHARE = 0.10
#: The breast "runs along" a side of the frame when it covers this share of it.
TOUCH_SHARE = 0.5
#: A segmentation looks wrong (``data check``) with the breast running along this many
#: sides, or covering less or more than these shares of the frame.
SUSPECT_TOUCHES = 3
SUSPECT_AREA = (0.05, 0.95)
#: ... or with an object blanked out that is this share of the breast's size or more.
SUSPECT_OBJECT_SHARE = 0.25
#: Objects smaller than this (analysis pixels) are noise, not counted as objects.
MIN_OBJECT_PIXELS = 4

SIDES = ("top", "bottom", "left", "right")


@dataclass(frozen=True)
class Segmentation:
    """The breast on the analysis image, and what else is there."""

    breast: np.ndarray
    """The breast (bool): the largest component of the foreground, holes filled."""
    blank: np.ndarray
    """Other objects - labels, markers, film edges - with a one-pixel rim (bool)."""
    threshold: float
    flip: bool
    """The chest wall is on the right edge (the input flips it to the left)."""
    orientation_source: str
    """What decided ``flip``: "content", "laterality" or "default"."""
    objects: int
    """How many objects other than the breast were found (and are blanked), not
    counting stray pixels (smaller than ``MIN_OBJECT_PIXELS``)."""
    largest_object: int = 0
    """Pixels of the largest of those objects."""

    @property
    def area_fraction(self) -> float:
        """The breast's share of the frame."""
        return float(self.breast.mean()) if self.breast.size else 0.0

    def touches(self) -> list[str]:
        """The sides of the frame the breast runs along (``TOUCH_SHARE`` of their length)."""
        return [side for side, view in _side_views(self.breast).items()
                if view.shape[1] and view[0].mean() >= TOUCH_SHARE]

    def box(self) -> tuple[int, int, int, int] | None:
        """Rows r0:r1, columns c0:c1 of the breast on the analysis image; None if empty."""
        rows, cols = np.flatnonzero(self.breast.any(axis=1)), np.flatnonzero(
            self.breast.any(axis=0))
        if rows.size == 0:
            return None
        return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1

    def problems(self) -> list[str]:
        """Why this segmentation looks wrong (empty when it looks right)."""
        found = []
        touched = self.touches()
        if len(touched) >= SUSPECT_TOUCHES:
            found.append(f"breast runs along {len(touched)} sides of the image "
                         f"({', '.join(touched)})")
        breast = int(np.count_nonzero(self.breast))
        if breast and self.largest_object >= SUSPECT_OBJECT_SHARE * breast:
            found.append(f"an object {self.largest_object / breast:.0%} the breast's size was "
                         "blanked out (a second piece of breast?)")
        area = self.area_fraction
        if area < SUSPECT_AREA[0]:
            found.append(f"breast covers {area:.1%} of the image (< {SUSPECT_AREA[0]:.0%})")
        elif area > SUSPECT_AREA[1]:
            found.append(f"breast covers {area:.1%} of the image (> {SUSPECT_AREA[1]:.0%})")
        return found


def segment_breast(analysis: np.ndarray, laterality: str = "") -> Segmentation:
    """The breast and the objects to blank on ``analysis`` (float [0, 1], 1 = dense)."""
    threshold = foreground_threshold(analysis)
    foreground = analysis > threshold
    body = _without_edge_strips(foreground, analysis)
    opened = _dilate(_erode(body))
    breast = _largest_component(opened if opened.any() else body)
    if breast.any():
        # Give back the rim the opening trimmed (skin line, nipple), not what it cut off.
        breast = _fill_holes(_largest_component(_dilate(breast) & body))
    others = foreground & ~_dilate(breast)
    labels, count = ndimage.label(others, structure=_EIGHT)
    sizes = np.bincount(labels.ravel())[1:]
    objects = int(np.count_nonzero(sizes >= MIN_OBJECT_PIXELS))  # not stray noise pixels
    largest = int(sizes.max()) if count else 0
    blank = _fill_holes(_dilate(others)) & ~breast
    flip, source = chest_wall_on_right(breast, laterality)
    return Segmentation(breast=breast, blank=blank, threshold=threshold, flip=flip,
                        orientation_source=source, objects=objects, largest_object=largest)


def foreground_threshold(small: np.ndarray) -> float:
    """Just above the background: its level plus noise, but never above the Otsu split.

    The background's level is the peak of the histogram below the Otsu split (air, or
    a film's base: the commonest dark value, whatever the share of fat); its noise is
    measured on the peak's dark flank, where no tissue is. A low threshold keeps the
    thin breast periphery (skin line, nipple) inside the mask; the Otsu cap keeps a
    noisy background from swallowing it all. Histogram bins of 1/1024.
    """
    bins = 1024
    index = np.clip(small, np.float32(0), np.float32(1)) * np.float32(bins - 1)
    hist = np.bincount(index.astype(np.intp).ravel(), minlength=bins).astype(np.float64)
    centres = np.arange(bins) / (bins - 1)
    otsu_bin = _otsu_bin(hist)
    dark = hist[: otsu_bin + 1]
    if dark.sum() == 0:
        return float(centres[otsu_bin])
    peak = int(np.argmax(dark))
    flank = dark[: peak + 1]
    # Half-normal: the median distance below the peak is 0.6745 sigma.
    below = _weighted_median(peak - np.arange(flank.size), flank) if flank.sum() else 0.0
    sigma = below / 0.6745 / (bins - 1)
    level = peak / (bins - 1)
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


def film_edge_sides(foreground: np.ndarray) -> list[str]:
    """Sides framed by a film edge: short runs of foreground from the edge on at least
    ``STRIP_MIN_SHARE`` of the side where tissue does not reach it (and on at least
    ``STRIP_MIN_LENGTH`` of the whole side).

    A full-field image has none: where its breast or pectoral muscle reaches an edge
    the runs are long (tissue), elsewhere there is no foreground at the edge; only the
    few rows where the skin line meets the edge give short runs.
    """
    sides = []
    for side, (runs, depth) in _edge_runs(foreground).items():
        short = np.count_nonzero((runs > 0) & (runs < depth))
        free = runs.size - np.count_nonzero(runs >= depth)  # where tissue does not reach
        if short >= max(STRIP_MIN_SHARE * free, STRIP_MIN_LENGTH * runs.size, 2):
            sides.append(side)
    return sides


def _side_views(image: np.ndarray) -> dict[str, np.ndarray]:
    """Each side's view of ``image`` with that side as row 0 (views: writes go through)."""
    return {"top": image, "bottom": image[::-1], "left": image.T, "right": image.T[::-1]}


def _edge_runs(foreground: np.ndarray) -> dict[str, tuple[np.ndarray, int]]:
    """Per side: the length of the foreground run from the edge at each position
    (``depth`` when it reaches ``STRIP_MAX_DEPTH`` of the image or more), and ``depth``."""
    runs = {}
    for side, view in _side_views(foreground).items():
        depth = max(2, math.ceil(STRIP_MAX_DEPTH * view.shape[0]))
        band = view[:depth]
        runs[side] = (np.where(band.all(axis=0), depth, np.argmin(band, axis=0)), depth)
    return runs


def _without_edge_strips(foreground: np.ndarray, analysis: np.ndarray) -> np.ndarray:
    """``foreground`` less the film edge.

    On each framed side (:func:`film_edge_sides`), the edge's width is the median length
    of the short runs; runs about that long are the edge and go whole. Where tissue
    touches the edge the run is longer: only its first ``width`` pixels go (the film
    edge lies over the breast there, it is not breast), the tissue behind them stays.
    A film edge that lies over tissue along most of a side (an MLO breast down the
    film) has few short runs; it shows as a band brighter than the tissue behind it
    (:func:`_bright_band`), and that side is cut the same way, with that width.
    """
    framed = film_edge_sides(foreground)
    runs = _edge_runs(foreground)
    values = _side_views(analysis)
    cleaned = foreground.copy()
    target = _side_views(cleaned)
    for side, (run, depth) in runs.items():
        width = float(np.median(run[(run > 0) & (run < depth)])) if side in framed else 0.0
        width = max(width, float(_bright_band(values[side], run, depth)))
        if width == 0:
            continue
        # Runs about the edge's width are edge; longer ones lose the edge's width.
        cut = np.where(run <= width + max(1.0, width / 4), run,
                       np.minimum(run, math.ceil(width)))
        target[side][:depth][np.arange(depth)[:, None] < cut[None, :]] = False
    return cleaned


def _bright_band(values: np.ndarray, run: np.ndarray, depth: int) -> int:
    """Rows of a film edge lying over tissue at row 0 of ``values`` (0: none).

    Where tissue reaches ``depth`` rows in (a run that long), a film edge is a band of
    rows brighter than the tissue ``depth`` rows in, in the median over all those
    positions (``BRIGHT_EDGE_STEP``): a pectoral muscle or a dense patch at the edge
    covers too little of a side to move the median, and a full-field image's edge is
    never much brighter than the tissue behind it (at most 0.05 on the phantoms).
    """
    tissue = run >= depth
    if np.count_nonzero(tissue) < max(2, STRIP_MIN_LENGTH * run.size):
        return 0
    step = np.median(values[:depth - 1, tissue] - values[depth - 1, tissue][None, :], axis=1)
    return int(np.argmin(np.append(step > BRIGHT_EDGE_STEP, False)))


_EIGHT = np.ones((3, 3), dtype=bool)


def _dilate(mask: np.ndarray) -> np.ndarray:
    """3 x 3 dilation (nothing outside the image), by shifted ORs: scipy's is ~10x slower
    on these small images."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    rows = out.copy()
    out[:, 1:] |= rows[:, :-1]
    out[:, :-1] |= rows[:, 1:]
    return out


def _erode(mask: np.ndarray) -> np.ndarray:
    """3 x 3 erosion (the image edge counts as foreground, so a breast touching it keeps
    its edge pixels)."""
    return ~_dilate(~mask)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every background region that does not reach the image edge filled."""
    labels, count = ndimage.label(~mask)
    if count == 0:
        return mask.copy()
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    holes = np.ones(count + 1, dtype=bool)
    holes[edge] = False
    holes[0] = False
    return mask | holes[labels]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of ``mask`` (all False when there is none)."""
    labels, count = ndimage.label(mask, structure=_EIGHT)
    if count <= 1:
        return mask.copy() if count else np.zeros_like(mask)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0  # background
    return labels == int(np.argmax(sizes))


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


def crop_box(segmentation: Segmentation, block: int,
             shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Rows r0:r1, columns c0:c1 of the image (``block`` pixels per analysis pixel) holding
    the breast plus ``CROP_MARGIN`` analysis pixels - none on the chest-wall side."""
    rows, cols = shape
    box = segmentation.box()
    if box is None:
        return (0, rows, 0, cols)
    margin = CROP_MARGIN * block
    r0, r1, c0, c1 = box
    left_margin = 0 if not segmentation.flip else margin
    right_margin = margin if not segmentation.flip else 0
    return (max(0, r0 * block - margin), min(rows, r1 * block + margin),
            max(0, c0 * block - left_margin), min(cols, c1 * block + right_margin))
