"""Area averaging over k x k blocks: the shrinking step of preprocessing.

:func:`block_mean` averages a float image; :func:`block_mean_affine` averages the
stored integers of an image whose intensity map is a clipped straight line (linear
windows, the percentile window) before mapping them, which never maps the
full-resolution pixels at all. Both can flip the image left-right while summing, so
the block grid starts at the chest wall and a partial block falls on the nipple side.
"""

from __future__ import annotations

import numpy as np

from mammography.data.dicom.intensity import Affine

__all__ = ["block_mean", "block_mean_affine"]


def _block_counts(n: int, k: int) -> np.ndarray:
    counts = np.full(-(-n // k), k, dtype=np.float64)
    counts[-1] = n - k * (counts.size - 1)
    return counts


def _column_sums(row_sums: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Sums over k columns; the block grid starts at the chest wall (left after flipping)."""
    if flip:
        row_sums = row_sums[:, ::-1]
    n_rows, cols = row_sums.shape
    # Same dtype as the row sums: int32 holds k*k 16-bit values for k <= 181.
    sums = np.zeros((n_rows, -(-cols // k)), dtype=row_sums.dtype)
    for j in range(min(k, cols)):
        part = row_sums[:, j::k]
        sums[:, : part.shape[1]] += part
    return sums


def block_mean(region: np.ndarray, k: int, flip: bool = False) -> np.ndarray:
    """Area average over k x k blocks of a float image, flipped if asked (float32).

    Works on strided views without copying them: row ``i`` of every block is
    ``region[i::k]``. The last row/column of blocks may be partial; it averages
    the pixels it has.
    """
    if k == 1:
        return np.array(region[:, ::-1] if flip else region, dtype=np.float32)
    rows, cols = region.shape
    row_sums = np.zeros((-(-rows // k), cols), dtype=np.float32)
    for i in range(min(k, rows)):
        part = region[i::k]
        row_sums[: part.shape[0]] += part
    sums = _column_sums(row_sums, k, flip)
    counts = np.outer(_block_counts(rows, k), _block_counts(cols, k))
    return (sums / counts).astype(np.float32)


def block_mean_affine(raw: np.ndarray, affine: Affine, k: int, flip: bool = False) -> np.ndarray:
    """Area average of ``lut[raw]`` for a clipped-line LUT, from integer sums (float32).

    The line commutes with averaging, so only ``clip(raw, lo, hi)`` needs
    summing; mapping after averaging is exact wherever a block lies on one part
    of the line (see :class:`mammography.data.dicom.intensity.Affine`).
    """
    rows, cols = raw.shape
    row_sums = _clipped_row_sums(raw, k, affine.lo, affine.hi)
    sums = _column_sums(row_sums, k, flip)
    counts = np.outer(_block_counts(rows, k), _block_counts(cols, k))
    mean = sums / counts + affine.lo
    return np.clip(affine.alpha * mean + affine.beta, 0.0, 1.0).astype(np.float32)


def _clipped_row_sums(raw: np.ndarray, k: int, lo: int, hi: int) -> np.ndarray:
    """Sums of ``clip(raw, lo, hi) - lo`` over k rows, int32; raw is 8/16-bit integers.

    The heavy pass of the fast path, so it avoids numpy's slow mixed-type
    adds: rows are added as uint16 with wrap-around, which is exact because a
    group of ``group`` shifted values sums to at most 65535 and the shift is
    removed modulo 2**16. Work goes in strips of block rows that stay in cache.
    """
    rows, cols = raw.shape
    n_rows = -(-rows // k)
    group = max(1, 65535 // max(hi - lo, 1))
    row_sums = np.zeros((n_rows, cols), dtype=np.int32)
    strip = max(1, (256 << 10) // (2 * cols))  # block rows per strip (~256 KiB buffers)
    acc = np.empty((strip, cols), dtype=np.uint16)
    # 8-bit values are widened on the way in so the uint16 view below is valid.
    wide = raw.dtype if raw.dtype.itemsize == 2 else np.dtype(raw.dtype.kind + "2")
    clipped = np.empty((strip, cols), dtype=wide)
    # Bounds as numpy scalars of the array's type: with Python ints numpy
    # picks a casting loop that is ~8x slower (numpy 2.x).
    low, high = wide.type(lo), wide.type(hi)
    for b0 in range(0, n_rows, strip):
        b1 = min(n_rows, b0 + strip)
        source = raw[b0 * k: b1 * k]
        for g0 in range(0, k, group):
            g1 = min(k, g0 + group)
            total = acc[: b1 - b0]
            total.fill(0)
            added = np.zeros(b1 - b0, dtype=np.int64)  # rows added per block row
            for i in range(g0, min(g1, source.shape[0])):
                part = source[i::k]
                n = part.shape[0]
                np.clip(part, low, high, out=clipped[:n])
                np.add(total[:n], clipped[:n].view(np.uint16), out=total[:n])
                added[:n] += 1
            # Remove the shift: sum(c) - added * lo, modulo 2**16, is the exact sum.
            offset = ((added * lo) % 65536).astype(np.uint16)
            np.subtract(total, offset[:, None], out=total)
            row_sums[b0:b1] += total
    return row_sums
