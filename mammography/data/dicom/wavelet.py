"""The working grid: every encoding's pixels at one power-of-two level, bit for bit.

A JPEG 2000 decoder asked for resolution level n returns the low-pass (LL) band of the
codestream's wavelet transform after n decompositions; for a lossless file that is the
reversible 5/3 integer lifting (ITU-T T.800 Annex F: symmetric extension, floor
divisions) of the stored pixels, clipped to the stored range. :func:`reduce_levels`
computes exactly that from decoded pixels, so an uncompressed, RLE, JPEG-LS or JPEG file
reaches the very grid a JPEG 2000 file of the same pixels decodes to - the same values,
not an approximation: the percentile window, the breast mask and the crop computed on it
are then identical whatever the encoding.

Why not a plain area average: the 5/3 low-pass weighs (-1, 2, 6, 2, -1) / 8 per axis and
is centred on the even pixel, a box average (1, 1) / 2 between two pixels. On a 14-bit
mammogram the two level-1 grids differ by 174 stored values rms (noise and the half-pixel
shift), and crops decided on them differ by one analysis pixel on 5 of 24 phantoms
(``benchmarks/bench_j2k.py`` measures the result).

The low-pass keeps the signal's scale (its weights sum to 1), so the values stay stored
values that the modality LUT and VOI apply to. Integer pixels are lifted exactly (int16
where the bounds allow it, else int32/int64); float images (:func:`reduce_levels` on a
decoded [0, 1] image) by the same steps without the floor divisions.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["OVERSAMPLE", "level_shape", "reduce_levels", "working_level"]

#: The working grid keeps at least this many pixels per output pixel and side, so the
#: area average to the input size does the last factor 2 (a sharper, less aliased input
#: than stopping at the input size itself).
OVERSAMPLE = 2
#: Levels never go past this (JPEG 2000 codestreams rarely have more than 5 or 6).
MAX_LEVEL = 8
#: Output rows per strip: few enough numpy calls, buffers that stay in cache.
_STRIP_ROWS = 64


def working_level(shape: tuple[int, int], target: tuple[int, int] | None) -> int:
    """The coarsest level whose image still covers ``OVERSAMPLE`` x ``target`` (aspect kept).

    Fitting ``shape`` into ``target`` shrinks it by ``min(rows/H, cols/W)``; level n
    divides both sides by ``2**n``, so n = floor(log2(shrink / OVERSAMPLE)); 0 (full
    resolution) when ``target`` is None.
    """
    if target is None:
        return 0
    shrink = min(shape[0] / max(1, target[0]), shape[1] / max(1, target[1])) / OVERSAMPLE
    if shrink < 2:
        return 0
    return max(0, min(MAX_LEVEL, int(math.floor(math.log2(shrink) + 1e-9))))


def level_shape(shape: tuple[int, ...], levels: int) -> tuple[int, int]:
    """The size of level ``levels``: each decomposition keeps ``ceil(n / 2)`` samples."""
    rows, cols = int(shape[0]), int(shape[1])
    for _ in range(levels):
        rows, cols = -(-rows // 2), -(-cols // 2)
    return rows, cols


def reduce_levels(values: np.ndarray, levels: int, bits: int | None = None) -> np.ndarray:
    """``values`` after ``levels`` 5/3 low-pass decompositions (the LL band).

    Integer ``values`` (stored pixels): exact integer lifting, then clipped to the range
    of ``bits`` (Bits Stored; default the dtype's) as a JPEG 2000 decoder clips, and
    returned in the input's dtype. Float ``values``: the same filter without rounding,
    float32. ``levels`` 0 returns ``values`` unchanged.
    """
    if levels <= 0:
        return values
    if values.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {values.shape}")
    if values.dtype.kind == "f":
        out = np.asarray(values, dtype=np.float32)
        for _ in range(levels):
            out = _lowpass_float(out)
        return out
    if values.dtype.kind not in "ui":
        raise ValueError(f"cannot reduce pixel data of dtype {values.dtype}")
    low, high = _stored_range(values.dtype, bits)
    out = values
    for level in range(levels):
        last = level == levels - 1
        out = _lowpass_int(out, _work_dtype(values.dtype, low, high, level),
                           (low, high, values.dtype) if last else None)
    return out


def _stored_range(dtype: np.dtype, bits: int | None) -> tuple[int, int]:
    width = dtype.itemsize * 8
    bits = width if bits is None or not 0 < bits <= width else bits
    if dtype.kind == "u":
        return 0, (1 << bits) - 1
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _work_dtype(dtype: np.dtype, low: int, high: int, level: int) -> np.dtype:
    """The narrowest integer type no intermediate of level ``level``'s lifting overflows.

    Bounds are followed pass by pass from the stored range (:func:`_pass_bounds`), so
    the first level of 12-bit data runs in int16 (half the memory traffic of int32);
    deeper data and later levels, whose values spread, get int32 or int64.
    """
    peak = 0
    for _ in range(2 * level + 2):  # the passes before this level's, then its two
        peak_here, low, high = _pass_bounds(low, high)
        peak = max(peak, peak_here)
    for candidate in (np.int16, np.int32):
        if peak < np.iinfo(candidate).max - 4:
            return np.dtype(candidate)
    return np.dtype(np.int64)


def _pass_bounds(low: int, high: int) -> tuple[int, int, int]:
    """One lifting pass over values in [low, high]: the largest magnitude of any
    intermediate, and the range of its output."""
    span, big = high - low, max(abs(low), abs(high))
    peak = max(2 * big, 2 * span + 2, big + span // 2 + 1)
    return peak, low - span // 2 - 1, high + span // 2 + 1


def _lowpass_int(x: np.ndarray, work: np.dtype,
                 final: tuple[int, int, np.dtype] | None = None) -> np.ndarray:
    """One 2-D level of the reversible 5/3 lifting: vertical pass, then horizontal.

    Even samples ``e``, odd samples ``o``; ``d_k = o_k - floor((e_k + e_{k+1}) / 2)`` and
    ``s_k = e_k + floor((d_{k-1} + d_k + 2) / 4)``, mirrored at the ends (whole-sample
    symmetric extension: ``e_{n} = e_{n-1}`` past an even length, ``d_{-1} = d_0``,
    ``d_{n_o} = d_{n_o - 1}`` past an odd one). Strips of ``_STRIP_ROWS`` output rows:
    each is cast once to ``work`` and split into even and odd columns once, so every
    arithmetic pass runs on contiguous arrays of one type (numpy's fast loops).
    ``final`` (low, high, dtype): clip the result to [low, high] and return it as
    ``dtype``, strip by strip while it is in cache (the last level).
    """
    rows, cols = x.shape
    n_even, n_odd = (rows + 1) // 2, rows // 2
    out = np.empty((n_even, (cols + 1) // 2), dtype=work if final is None else final[2])
    buffers = _Buffers(min(_STRIP_ROWS, n_even), cols, work, final)
    if rows == 1:
        strip = buffers.strip[:1]
        np.copyto(strip, x, casting="unsafe")
        _lowpass_rows(strip, out, buffers)
        return out
    even, odd = x[0::2], x[1::2]
    for b0 in range(0, n_even, _STRIP_ROWS):
        b1 = min(n_even, b0 + _STRIP_ROWS)
        n = b1 - b0
        k0, k1 = max(0, b0 - 1), min(n_odd, b1)  # the details d_k0 .. d_(k1-1) it reads
        e = buffers.even[: k1 - k0 + 1]  # e_k0 .. e_k1
        if k1 < n_even:
            np.copyto(e, even[k0:k1 + 1], casting="unsafe")
        else:  # e_(n_even) mirrored to e_(n_even - 1)
            np.copyto(e[:-1], even[k0:k1], casting="unsafe")
            e[-1] = e[-2]
        d = buffers.detail[: k1 - k0]
        np.copyto(d, odd[k0:k1], casting="unsafe")
        half = buffers.half[: k1 - k0]
        np.add(e[:-1], e[1:], out=half)
        half >>= 1
        d -= half
        s = buffers.strip[:n]
        first = b0 - k0  # index of d_b0 in d: 1, or 0 for the top strip (d_-1 = d_0)
        have = min(n, d.shape[0] - first)  # output rows with a d_k of their own
        if first:
            np.add(d[:have], d[1:1 + have], out=s[:have])
        else:
            np.add(d[0], d[0], out=s[0])
            np.add(d[: have - 1], d[1:have], out=s[1:have])
        if have < n:  # the last even row of an odd length: d_(n_odd) = d_(n_odd - 1)
            np.add(d[-1], d[-1], out=s[have:n])
        s += 2
        s >>= 2
        s += e[first:first + n]
        _lowpass_rows(s, out[b0:b1], buffers)
    return out


class _Buffers:
    """Work arrays reused by every strip of one level."""

    def __init__(self, strip_rows: int, cols: int, work: np.dtype,
                 final: tuple[int, int, np.dtype] | None) -> None:
        n_even, n_odd = (cols + 1) // 2, cols // 2
        self.final = final
        self.result = np.empty((strip_rows, n_even), dtype=work)
        self.even = np.empty((strip_rows + 2, cols), dtype=work)
        self.detail = np.empty((strip_rows + 1, cols), dtype=work)
        self.half = np.empty((strip_rows + 1, cols), dtype=work)
        self.strip = np.empty((strip_rows, cols), dtype=work)
        self.h_even = np.empty((strip_rows, n_even), dtype=work)
        self.h_odd = np.empty((strip_rows, n_odd), dtype=work)
        self.h_detail = np.empty((strip_rows, n_odd + 1), dtype=work)
        self.h_sum = np.empty((strip_rows, n_even), dtype=work)


def _lowpass_rows(s: np.ndarray, out: np.ndarray, buffers: _Buffers) -> None:
    """The horizontal 5/3 lifting of every row of ``s`` into ``out``."""
    n, cols = s.shape
    if cols == 1:
        if buffers.final is not None:
            s = np.clip(s, buffers.final[0], buffers.final[1])
        np.copyto(out, s, casting="unsafe")
        return
    n_even, n_odd = (cols + 1) // 2, cols // 2
    even, odd = buffers.h_even[:n], buffers.h_odd[:n]
    np.copyto(even, s[:, 0::2])
    np.copyto(odd, s[:, 1::2])
    # detail[:, 0] is d_-1 (= d_0); detail[:, 1:] holds d_0 .. d_(n_odd - 1)
    detail = buffers.h_detail[:n]
    d = detail[:, 1:]
    if n_even > n_odd:
        np.add(even[:, :n_odd], even[:, 1:], out=d)
    else:
        np.add(even[:, :-1], even[:, 1:], out=d[:, :-1])
        np.add(even[:, -1], even[:, -1], out=d[:, -1])
    d >>= 1
    np.subtract(odd, d, out=d)
    detail[:, 0] = detail[:, 1]
    total = buffers.h_sum[:n]
    np.add(detail[:, :n_odd], d, out=total[:, :n_odd])
    if n_even > n_odd:  # d_(n_odd) = d_(n_odd - 1)
        np.add(detail[:, n_odd], d[:, -1], out=total[:, n_odd])
    total += 2
    total >>= 2
    if buffers.final is None:
        np.add(even, total, out=out)
        return
    low, high, _ = buffers.final
    result = buffers.result[:n]
    np.add(even, total, out=result)
    np.clip(result, low, high, out=result)
    np.copyto(out, result, casting="unsafe")


def _lowpass_float(x: np.ndarray) -> np.ndarray:
    """One 2-D level of the 5/3 low-pass on floats (the lifting without rounding)."""
    return _lowpass_float_axis(_lowpass_float_axis(x, 0), 1)


def _lowpass_float_axis(x: np.ndarray, axis: int) -> np.ndarray:
    x = np.moveaxis(x, axis, 0)
    n = x.shape[0]
    if n == 1:
        return np.moveaxis(x.copy(), 0, axis)
    even, odd = x[0::2], x[1::2]
    n_even, n_odd = even.shape[0], odd.shape[0]
    following = np.concatenate([even[1:], even[-1:]]) if n_even == n_odd else even[1:]
    d = odd - np.float32(0.5) * (even[:n_odd] + following)
    prev = np.concatenate([d[:1], d[:-1]])
    current = d if n_even == n_odd else np.concatenate([d, d[-1:]])
    if n_even > n_odd:
        prev = np.concatenate([d[:1], d])
    s = even + np.float32(0.25) * (prev + current)
    return np.moveaxis(s.astype(np.float32), 0, axis)
