"""mammography.data.blocks: area averaging over k x k blocks, floats and clipped integers."""

from __future__ import annotations

import numpy as np
import pytest

from mammography.data.blocks import block_mean, block_mean_affine
from mammography.data.dicom.intensity import Affine


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
    np.testing.assert_allclose(block_mean(image, k, flip), expected, rtol=1e-5, atol=1e-6)


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
        got = block_mean_affine(raw, affine, k, flip)
        # Exact but where a block mixes clipped and sloped values (< alpha).
        np.testing.assert_allclose(got, expected, atol=alpha + 1e-6)
