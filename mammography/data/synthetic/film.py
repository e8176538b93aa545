"""Digitised-film mammograms (the CBIS-DDSM layout), with the truth of what is on them.

Screen-film mammograms scanned for public datasets carry what full-field images do not,
and what a breast crop must not keep:

* **film-edge strips** - the unexposed border of the film scans white: a strip a few
  rows deep along some sides (4-5 rows at the top of MLO films), sometimes only along
  part of a side, touching the breast where the breast reaches that edge;
* a **view marker** - lead letters ("LCC", "RMLO") burned in white in an upper corner,
  away from the chest wall;
* a **film label** - a bright patch with dark lettering in a lower corner;
* a **film base** that is not black: grey, grainy and slightly uneven.

The breast is the phantom's (:func:`~mammography.data.synthetic.phantom.synthesize_mammogram`),
laid against the chest-wall edge of the film: a CC breast drawn on a smaller canvas with
empty film around it, as a compressed breast lies on an 18 x 24 cm film; an MLO breast
down the whole film, its pectoral muscle meeting the top strip.

:func:`film_mammogram` returns the film with its truth masks (breast, markers, edges), so
tests and ``benchmarks/bench_segment.py`` can measure a crop against them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mammography.data.synthetic.phantom import BREAST_THRESHOLD, synthesize_mammogram

#: The CC breast's canvas as a share of the film's rows and columns (the rest is empty
#: film): its bounding box comes out about 1.7 times as tall as wide, as the MLO
#: breast's does down a whole 18 x 24 cm film (rows / columns 1.33).
CC_CANVAS_SHARE = ((0.80, 0.92), (0.70, 0.85))
#: Top-of-MLO strip depth as a share of the film's rows (4-5 rows of a 4000-row film).
TOP_STRIP_SHARE = (0.0009, 0.0013)
#: Depth of other film-edge strips as a share of the short side, and their brightness.
EDGE_SHARE = (0.004, 0.02)
EDGE_LEVEL = (0.85, 0.97)
#: Chance that a side other than the MLO top carries a strip.
EDGE_CHANCE = 0.4
#: Marker letter height and label size, as shares of the film's rows (label: rows, columns).
LETTER_SHARE = (0.025, 0.04)
LABEL_SHARE = ((0.05, 0.09), (0.16, 0.28))

# 5 x 7 glyphs of the letters view markers use (1 = lead).
_GLYPHS = {
    "L": ["10000", "10000", "10000", "10000", "10000", "10000", "11111"],
    "R": ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
    "C": ["01111", "10000", "10000", "10000", "10000", "10000", "01111"],
    "M": ["10001", "11011", "10101", "10101", "10001", "10001", "10001"],
    "O": ["01110", "10001", "10001", "10001", "10001", "10001", "01110"],
}


@dataclass(frozen=True)
class Film:
    """A digitised film and the truth of its pixels."""

    image: np.ndarray
    """float32 in [0, 1], 1 = bright (dense tissue, lead letters, unexposed film)."""
    breast: np.ndarray
    """The breast: the phantom brighter than ``BREAST_THRESHOLD`` (bool)."""
    markers: np.ndarray
    """The view marker's letters and the film label (bool)."""
    edges: np.ndarray
    """The film-edge strips (bool)."""


def film_mammogram(rng: np.random.Generator, density_class: int, shape: tuple[int, int],
                   view: str, laterality: str) -> Film:
    """A digitised film of ``shape`` (rows, columns) with a phantom breast on it."""
    rows, cols = shape
    if view == "MLO":  # from the axilla at the top edge down the whole film
        height, width = rows, cols
    else:
        height = round(rows * rng.uniform(*CC_CANVAS_SHARE[0]))
        width = round(cols * rng.uniform(*CC_CANVAS_SHARE[1]))
    phantom = synthesize_mammogram(rng, density_class, (height, width), view, laterality)
    image = _film_base(rng, phantom, shape)
    top = 0 if view == "MLO" else int(rng.integers(0, rows - height + 1))
    # Against the chest-wall edge: left for a left breast, right for a right one.
    left = 0 if laterality == "L" else cols - width
    window = (slice(top, top + height), slice(left, left + width))
    image[window] = phantom + (image[window] - _background(phantom))
    breast = np.zeros(shape, dtype=bool)
    breast[window] = phantom > BREAST_THRESHOLD
    return add_film_artefacts(image, rng, laterality, view, breast=breast)


def add_film_artefacts(image01: np.ndarray, rng: np.random.Generator, laterality: str = "L",
                       view: str = "CC", *, breast: np.ndarray | None = None) -> Film:
    """``image01`` with film-edge strips, a view marker and a film label painted on.

    ``breast`` (default: ``image01 > BREAST_THRESHOLD``) is kept clear of the marker
    and the label, as a radiographer places them beside the breast, not on it.
    """
    image = np.array(image01, dtype=np.float32, copy=True)
    breast = image > BREAST_THRESHOLD if breast is None else np.asarray(breast, dtype=bool)
    clear = ~ndimage.binary_dilation(breast, iterations=max(2, min(image.shape) // 50))
    edges = _edge_strips(rng, image.shape, view, laterality)
    level = rng.uniform(*EDGE_LEVEL)
    image[edges] = level + rng.normal(0.0, 0.01, size=int(edges.sum()))
    clear &= ~ndimage.binary_dilation(edges, iterations=2)
    markers = np.zeros(image.shape, dtype=bool)
    _paint_marker(image, markers, clear, rng, f"{laterality}{view}", laterality)
    if rng.random() < 0.6:
        _paint_label(image, markers, clear, rng, laterality)
    return Film(image=np.clip(image, 0.0, 1.0), breast=breast, markers=markers, edges=edges)


# --------------------------------------------------------------------------- film


def _background(phantom: np.ndarray) -> float:
    """The phantom's air level: the median of its nipple-side column (no breast there)."""
    column = phantom[:, -1] if float(phantom[:, 0].mean()) > float(phantom[:, -1].mean()) \
        else phantom[:, 0]
    return float(np.median(column))


def _film_base(rng: np.random.Generator, phantom: np.ndarray,
               shape: tuple[int, int]) -> np.ndarray:
    """Grey, grainy film base with a gentle density gradient across the film."""
    rows, cols = shape
    level = _background(phantom) + rng.uniform(0.01, 0.05)
    y = np.linspace(-1.0, 1.0, rows, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, cols, dtype=np.float32)[None, :]
    tilt = rng.uniform(-0.015, 0.015, size=2).astype(np.float32)
    grain = rng.normal(0.0, 0.01, size=shape).astype(np.float32)
    return (np.float32(level) + tilt[0] * y + tilt[1] * x + grain).astype(np.float32)


def _edge_strips(rng: np.random.Generator, shape: tuple[int, int], view: str,
                 laterality: str) -> np.ndarray:
    """Film-edge strips: the top of an MLO film always, other sides by chance, some partial."""
    rows, cols = shape
    strips = np.zeros(shape, dtype=bool)
    views = {"top": strips, "bottom": strips[::-1], "left": strips.T, "right": strips.T[::-1]}
    for side, view_of_side in views.items():
        length = view_of_side.shape[1]
        if side == "top" and view == "MLO":
            depth = max(2, round(rows * rng.uniform(*TOP_STRIP_SHARE)))
            start, stop = 0, length
        elif rng.random() < EDGE_CHANCE:
            depth = max(2, round(min(rows, cols) * rng.uniform(*EDGE_SHARE)))
            cover = round(length * rng.uniform(0.5, 1.0))
            start = int(rng.integers(0, length - cover + 1))
            stop = start + cover
        else:
            continue
        # A ragged inner border: the film holder's shadow is not a ruler line.
        ragged = depth + np.round(rng.normal(0.0, max(0.5, depth / 6), size=stop - start))
        ragged = np.clip(ragged, 1, 2 * depth).astype(np.intp)
        view_of_side[:, start:stop] |= np.arange(view_of_side.shape[0])[:, None] < ragged
    return strips


def _glyphs(text: str, height: int) -> np.ndarray:
    """``text`` in 5 x 7 block letters, ``height`` pixels tall (bool)."""
    scale = max(1, round(height / 7))
    cells = []
    for letter in text:
        glyph = np.array([[c == "1" for c in row] for row in _GLYPHS[letter]])
        cells += [glyph, np.zeros((7, 2), dtype=bool)]
    return np.kron(np.hstack(cells[:-1]), np.ones((scale, scale), dtype=bool))


def _place(clear: np.ndarray, size: tuple[int, int], rng: np.random.Generator,
           corners: list[tuple[str, str]]) -> tuple[int, int] | None:
    """Top-left corner of a ``size`` box in the first of ``corners`` where it is all clear."""
    rows, cols = clear.shape
    for vertical, horizontal in corners:
        dy = round(rows * rng.uniform(0.015, 0.05))
        dx = round(cols * rng.uniform(0.03, 0.08))
        top = dy if vertical == "top" else rows - dy - size[0]
        left = dx if horizontal == "left" else cols - dx - size[1]
        if top < 0 or left < 0 or top + size[0] > rows or left + size[1] > cols:
            continue
        if clear[top:top + size[0], left:left + size[1]].all():
            return top, left
    return None


def _away_from_chest(laterality: str) -> str:
    """The film side away from the chest wall (stored convention: L breast, chest left)."""
    return "right" if laterality == "L" else "left"


def _paint_marker(image: np.ndarray, markers: np.ndarray, clear: np.ndarray,
                  rng: np.random.Generator, text: str, laterality: str) -> None:
    """White lead letters in an upper corner away from the chest wall (else a lower one)."""
    letters = _glyphs(text, max(7, round(image.shape[0] * rng.uniform(*LETTER_SHARE))))
    away = _away_from_chest(laterality)
    at = _place(clear, letters.shape, rng, [("top", away), ("bottom", away)])
    if at is None:
        return
    top, left = at
    box = (slice(top, top + letters.shape[0]), slice(left, left + letters.shape[1]))
    # Lead stops nearly every photon; its edges are a little soft after scanning.
    soft = ndimage.gaussian_filter(letters.astype(np.float32), 0.6)
    level = np.float32(rng.uniform(0.88, 1.0))
    image[box] = np.maximum(image[box], level * soft)
    markers[box] |= soft >= 0.5  # the letters themselves, not their faint halo
    clear[box] = False


def _paint_label(image: np.ndarray, markers: np.ndarray, clear: np.ndarray,
                 rng: np.random.Generator, laterality: str) -> None:
    """A bright film label with dark lettering, in a lower corner away from the chest wall."""
    rows, cols = image.shape
    size = (max(8, round(rows * rng.uniform(*LABEL_SHARE[0]))),
            max(16, round(cols * rng.uniform(*LABEL_SHARE[1]))))
    away = _away_from_chest(laterality)
    at = _place(clear, size, rng, [("bottom", away), ("top", away)])
    if at is None:
        return
    top, left = at
    label = np.full(size, np.float32(rng.uniform(0.85, 0.95)))
    text = _glyphs("LCRMO"[: max(2, size[1] // max(8, size[0]))], max(7, size[0] // 2))
    h, w = min(text.shape[0], size[0] - 2), min(text.shape[1], size[1] - 2)
    label[1:1 + h, 1:1 + w][text[:h, :w]] = np.float32(0.15)
    image[top:top + size[0], left:left + size[1]] = label
    markers[top:top + size[0], left:left + size[1]] = True
    clear[top:top + size[0], left:left + size[1]] = False
