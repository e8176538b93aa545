"""Digitised-film artefacts on a phantom image: the film edge and a burned-in label.

Screen-film mammograms scanned for public datasets (the CBIS-DDSM layout)
carry what full-field images do not: the unexposed border of the film, a
bright frame a few millimetres wide along the edges that touches the breast
at the chest wall, and a film label - a bright patch with dark lettering -
in a corner. `add_film_artefacts` paints both onto a [0, 1] phantom so the
breast crop can be tested and measured against them; the breast itself is
unchanged, so `image > BREAST_THRESHOLD` of the clean phantom stays the truth.
"""

from __future__ import annotations

import numpy as np

#: Film-edge width as a share of the short side, and its brightness.
EDGE_SHARE = (0.012, 0.025)
EDGE_LEVEL = (0.88, 0.97)
#: Label size as a share of the image (rows, columns).
LABEL_SHARE = (0.07, 0.22)


def add_film_artefacts(image01: np.ndarray, rng: np.random.Generator,
                       laterality: str = "L") -> np.ndarray:
    """A copy of ``image01`` with a bright film edge on all sides and a lettered label.

    The label goes in the corner away from the chest wall (top right for a
    left breast stored chest-wall-left), as film labels do.
    """
    image = np.array(image01, dtype=np.float32, copy=True)
    rows, cols = image.shape
    edge = max(2, round(rng.uniform(*EDGE_SHARE) * min(rows, cols)))
    level = np.float32(rng.uniform(*EDGE_LEVEL))
    grain = rng.normal(0.0, 0.01, size=image.shape).astype(np.float32)
    frame = np.zeros(image.shape, dtype=bool)
    frame[:edge], frame[-edge:], frame[:, :edge], frame[:, -edge:] = True, True, True, True
    image[frame] = level + grain[frame]
    height, width = round(LABEL_SHARE[0] * rows), round(LABEL_SHARE[1] * cols)
    top = edge + round(0.03 * rows)
    left = cols - edge - round(0.03 * cols) - width if laterality == "L" else edge + round(
        0.03 * cols)
    label = np.full((height, width), np.float32(0.92))
    # Dark letter strokes: vertical and horizontal bars, like a blocky "L CC".
    stroke = max(1, height // 8)
    for k in range(4):
        x0 = round((0.1 + 0.22 * k) * width)
        label[round(0.2 * height):round(0.8 * height), x0:x0 + stroke] = 0.1
        label[round(0.7 * height):round(0.7 * height) + stroke, x0:x0 + 3 * stroke] = 0.1
    image[top:top + height, left:left + width] = label
    return np.clip(image, 0.0, 1.0)
