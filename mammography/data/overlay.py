"""What preprocessing decided, drawn on the image it decided it on (``data preview --overlay``).

The image is the working grid of the file (every encoding's pixels at the wavelet
level training uses), mapped to display intensities and shrunk to at most
``DISPLAY_LONG_SIDE`` pixels, in its stored orientation (not flipped). On it:

* the breast mask's outline in red,
* the objects blanked out of the input (labels, lead markers, film edges) outlined
  in blue,
* the crop box in green.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from mammography.data.blocks import block_mean
from mammography.data.preprocess import Layers

DISPLAY_LONG_SIDE = 768
BREAST_COLOUR = (255, 48, 48)
BLANK_COLOUR = (64, 150, 255)
BOX_COLOUR = (40, 220, 40)


def draw_overlay(layers: Layers) -> np.ndarray:
    """An RGB uint8 picture of ``layers``: the image, mask outline, blanked objects, crop."""
    factor = max(1, math.ceil(max(layers.image.shape) / DISPLAY_LONG_SIDE))
    grey = np.clip(block_mean(layers.image, factor), 0.0, 1.0)
    rgb = np.repeat(np.rint(grey * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    for mask, colour in ((layers.blank, BLANK_COLOUR), (layers.breast, BREAST_COLOUR)):
        rgb[_outline(_on_display(mask, layers.block, factor, grey.shape))] = colour
    picture = Image.fromarray(rgb)
    r0, r1, c0, c1 = (round(v / factor) for v in layers.box)
    width = max(1, round(max(grey.shape) / 300))
    ImageDraw.Draw(picture).rectangle((c0, r0, max(c0, c1 - 1), max(r0, r1 - 1)),
                                      outline=BOX_COLOUR, width=width)
    return np.asarray(picture)


def _on_display(mask: np.ndarray, block: int, factor: int,
                shape: tuple[int, int]) -> np.ndarray:
    """``mask`` (``block`` image pixels per mask pixel) on the display grid (nearest)."""
    rows = np.minimum(np.arange(shape[0]) * factor // block, mask.shape[0] - 1)
    cols = np.minimum(np.arange(shape[1]) * factor // block, mask.shape[1] - 1)
    return mask[np.ix_(rows, cols)]


def _outline(mask: np.ndarray) -> np.ndarray:
    """The mask's border, two pixels wide."""
    if not mask.any():
        return mask
    inner = ndimage.binary_erosion(mask, iterations=2, border_value=1)
    return mask & ~inner
