"""From a decoded mammogram to the network input: orient, crop, resize, pad, quantise.

The network sees one orientation and one scale convention:

1. **Orientation** - the chest wall goes to the *left* edge. The side is read
   from the image content (the chest-wall third of the image holds more breast
   than the nipple third); the DICOM laterality only breaks ties (L: chest wall
   already left, R: right), because laterality tags are often missing or wrong
   while anatomy is not.
2. **Crop** - the bounding box of the breast (:mod:`mammography.data.segment`:
   threshold above the background noise, thin film borders and labels opened
   away, the large components kept, a 1 % margin), so the pixels go to tissue
   instead of air, film edge or burned-in text.
3. **Resize** - aspect preserved, as large as fits the ``height x width``
   input (``img_size``, ``img_width``; square unless a width is given), by
   area averaging (an integer block mean, then Pillow's BOX filter for the
   fractional rest); enlarging (tiny images) is bilinear. A 2:1 input such as
   512 x 256 suits the tall breast crop of most views better than a square.
4. **Pad** with background (0) on the right/bottom to the input size, so the
   chest wall stays on the left edge; then quantise to uint8/uint16.

All decisions (threshold, components, flip, crop box) are made on a strided
copy of the image (about ``ANALYSIS_LONG_SIDE`` pixels on the long side). The
flip happens inside the block averaging, so the block grid starts at the chest
wall and a partial block falls on the nipple side.

:func:`load_preprocessed` is the fast path the cache builder calls. It makes the
same decisions on the stored integers mapped through the file's lookup table
(identical to slicing the decoded image), crops the integers, and - when the
lookup table is a clipped straight line, as for linear windows - averages
clipped integers before mapping them, which avoids mapping the full-resolution
image at all. The result equals ``preprocess(decode(path))`` up to a difference
smaller than one window step in blocks that straddle the window's ends. With
``j2k_reduce`` a JPEG 2000 frame is decoded at the coarsest wavelet level that
still covers the input size (:mod:`mammography.data.dicom.j2k`); if the crop then
turns out too small for that level, the frame is decoded again one level finer.

Bump ``PREPROCESS_VERSION`` whenever the output for the same input changes: it
is part of the preprocessed-image cache key.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from mammography.config.data import parse_image_size
from mammography.data.dicom.decode import (
    FRAME_POLICIES,
    Affine,
    DicomHeader,
    DicomReadError,
    RawFrame,
    read_frame,
)
from mammography.data.segment import (
    breast_mask,
    chest_wall_on_right,
    crop_box,
    foreground_threshold,
)

__all__ = [
    "PREPROCESS_VERSION",
    "PreprocessSettings",
    "load_preprocessed",
    "load_preprocessed_with_info",
    "parse_image_size",
    "preprocess",
    "preprocess_with_info",
]

PREPROCESS_VERSION = 1

#: Long side of the strided copy all decisions are made on.
ANALYSIS_LONG_SIDE = 256

_MAX_VALUE = {"uint8": 255, "uint16": 65535}
@dataclass(frozen=True)
class PreprocessSettings:
    """How a decoded image becomes the network input (part of the cache key)."""

    img_size: int = 512
    """Height of the output in pixels (and its width unless ``img_width`` is set)."""
    crop_breast: bool = True
    """Crop to the breast's bounding box before resizing."""
    orientation: Literal["chest_left"] = "chest_left"
    """Where the chest wall ends up; one orientation for every image."""
    dtype: Literal["uint8", "uint16"] = "uint16"
    """Output dtype, using its full range (0..255 or 0..65535)."""
    img_width: int | None = None
    """Width of the output; None = square (``img_size`` x ``img_size``)."""
    multiframe: Literal["exclude", "first", "middle"] = "exclude"
    """Multi-frame objects (tomosynthesis): refused, or their first or middle frame."""
    j2k_reduce: bool = True
    """Decode JPEG 2000 at the coarsest wavelet level that covers the output size."""

    def __post_init__(self) -> None:
        for name in ("img_size", "img_width"):
            value = getattr(self, name)
            if value is None and name == "img_width":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.orientation != "chest_left":
            raise ValueError(f"orientation must be 'chest_left', got {self.orientation!r}")
        if self.dtype not in _MAX_VALUE:
            raise ValueError(f"dtype must be 'uint8' or 'uint16', got {self.dtype!r}")
        for name in ("crop_breast", "j2k_reduce"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.multiframe not in FRAME_POLICIES:
            raise ValueError(f"multiframe must be one of {', '.join(FRAME_POLICIES)}, got "
                             f"{self.multiframe!r}")

    @classmethod
    def for_size(cls, size: int | str, **fields: Any) -> PreprocessSettings:
        """Settings for ``--img-size`` as given (``512`` or ``"512x256"``)."""
        height, width = parse_image_size(size)
        return cls(img_size=height, img_width=None if width == height else width, **fields)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the network input."""
        return self.img_size, self.img_width or self.img_size

    def as_dict(self) -> dict[str, Any]:
        """The fields (round-trips through ``PreprocessSettings(**d)``)."""
        return asdict(self)

    def key(self) -> str:
        """Short stable hash of the fields and ``PREPROCESS_VERSION`` (cache key part)."""
        payload = {"preprocess_version": PREPROCESS_VERSION, **self.as_dict()}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class _Plan:
    """Every decision, made on the strided copy, in input-image coordinates."""

    flip: bool
    orientation_source: str           # "content", "laterality" or "default"
    box: tuple[int, int, int, int]    # rows r0:r1, columns c0:c1 (before flipping)
    threshold: float
    block: int                        # integer block size of the first reduction
    out_shape: tuple[int, int]        # resized (rows, columns), before padding
    scale: float

    def info(self, input_shape: tuple[int, ...], settings: PreprocessSettings,
             level: int = 0, frame: int = 0) -> dict[str, Any]:
        return {
            "input_shape": [int(n) for n in input_shape],
            "decode_level": level,
            "frame": frame,
            "flipped": self.flip,
            "orientation_source": self.orientation_source,
            "crop_box": list(self.box),
            "foreground_threshold": round(self.threshold, 6),
            "scale": self.scale,
            "block": self.block,
            "resized_shape": list(self.out_shape),
            "settings_key": settings.key(),
        }


# --------------------------------------------------------------------------- public API


def preprocess(image01: np.ndarray, settings: PreprocessSettings,
               laterality: str = "") -> np.ndarray:
    """The network input for a decoded image (float in [0, 1], 1 = dense)."""
    return preprocess_with_info(image01, settings, laterality)[0]


def preprocess_with_info(image01: np.ndarray, settings: PreprocessSettings,
                         laterality: str = "") -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`preprocess` plus its decisions: flip, crop box, scale (JSON-ready).

    ``input_shape`` and ``crop_box`` are in the pixels of the image given (for
    :func:`load_preprocessed`, of the JPEG 2000 level decoded, ``decode_level``).
    """
    image = np.asarray(image01)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"image must be a non-empty 2-D array, got shape {image.shape}")
    if image.dtype != np.float32:
        image = image.astype(np.float32)
    stride = _analysis_stride(image.shape)
    plan = _plan(image[::stride, ::stride], stride, image.shape, settings, laterality)
    reduced = _block_mean(_region(image, plan), plan.block, plan.flip)
    return _finish(reduced, plan, settings), plan.info(image.shape, settings)


def load_preprocessed(path: str | Path,
                      settings: PreprocessSettings) -> tuple[np.ndarray, DicomHeader]:
    """``preprocess(decode(path))`` done fast; raises only DicomReadError per file."""
    array, header, _ = load_preprocessed_with_info(path, settings)
    return array, header


def load_preprocessed_with_info(
        path: str | Path,
        settings: PreprocessSettings) -> tuple[np.ndarray, DicomHeader, dict[str, Any]]:
    """:func:`load_preprocessed` plus the decisions of :func:`preprocess_with_info`."""
    frame, plan, stored_plan = _decode_planned(path, settings)
    array = _render(frame, plan, settings)
    shape = (frame.header.rows, frame.header.columns)
    return array, frame.header, stored_plan.info(shape, settings, frame.level, frame.frame)


#: Output side of :func:`check_preprocessed` (the smallest ``--img-size``).
CHECK_SIZE = 32


def check_preprocessed(path: str | Path, settings: PreprocessSettings) -> DicomHeader:
    """Refuse what :func:`load_preprocessed` would refuse, at a fraction of its cost.

    The frame is read and decoded exactly as for ``settings`` - JPEG 2000 at
    the wavelet level ``settings`` would use, finer where the crop asks, so a
    codestream damaged at that level fails here too; blank and saturated
    images are refused on the decoded values, as always - and then cropped,
    averaged and resized with the same code, but to CHECK_SIZE pixels: the
    output is thrown away, and at 512 px its buffers (megabytes per image,
    fresh pages from the kernel each time) were half the CPU of ``data check``.
    Raises only DicomReadError per file; returns the header.
    """
    frame, _, stored = _decode_planned(path, settings)
    small = replace(settings, img_size=CHECK_SIZE, img_width=None)
    try:  # the same crop and flip, sized for the small output
        plan = _at_level(_sized(stored.flip, stored.orientation_source, stored.box,
                                stored.threshold, small), frame.level, frame.raw.shape)
    except Exception as exc:  # as in _decode_planned: one file, never the run
        raise DicomReadError(frame.header.path,
                             f"cannot preprocess: {type(exc).__name__}: {exc}") from exc
    _render(frame, plan, small)
    return frame.header


def _decode_planned(path: str | Path,
                    settings: PreprocessSettings) -> tuple[RawFrame, _Plan, _Plan]:
    """The frame decoded as ``settings`` need it, the plan at its level, and the plan at
    full resolution (what the info records)."""
    target = settings.shape if settings.j2k_reduce else None
    frame = read_frame(path, frames=settings.multiframe, target=target)
    try:
        plan = _frame_plan(frame, settings)
        if frame.level > 0 and plan.scale * (1 << frame.level) > 1.0 + 1e-9:
            # The crop is smaller than the level assumed: one level finer per doubling.
            finer = frame.level - math.ceil(math.log2(plan.scale * (1 << frame.level)) - 1e-9)
            frame = read_frame(path, frames=settings.multiframe, target=target,
                               max_level=max(0, finer))
            plan = _frame_plan(frame, settings)
        return frame, _at_level(plan, frame.level, frame.raw.shape), plan
    except DicomReadError:
        raise
    except Exception as exc:  # a per-file failure, never a crash of the whole run
        raise DicomReadError(frame.header.path,
                             f"cannot preprocess: {type(exc).__name__}: {exc}") from exc


def _render(frame: RawFrame, plan: _Plan, settings: PreprocessSettings) -> np.ndarray:
    """Crop, average, resize, pad and quantise ``frame`` as ``plan`` says."""
    try:
        raw, mapping = frame.raw, frame.mapping
        region = _region(raw, plan)
        if mapping.affine is not None and plan.block > 1:
            reduced = _block_mean_affine(region, mapping.affine, plan.block, plan.flip)
        else:
            reduced = _block_mean(mapping.apply(region), plan.block, plan.flip)
        return _finish(reduced, plan, settings)
    except DicomReadError:
        raise
    except Exception as exc:  # a per-file failure, never a crash of the whole run
        raise DicomReadError(frame.header.path,
                             f"cannot preprocess: {type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------- decisions


def _analysis_stride(shape: tuple[int, ...]) -> int:
    return max(1, max(shape) // ANALYSIS_LONG_SIDE)


def _frame_plan(frame: RawFrame, settings: PreprocessSettings) -> _Plan:
    """The plan in stored-image coordinates, also for a frame decoded at a coarser level.

    A level-n frame is sampled where the full frame's analysis grid would be
    (stored pixel ``i`` lies in level-n pixel ``i >> n``), so both decodes see
    nearly the same pixels and choose the same crop and output shape.
    """
    shape = (frame.header.rows, frame.header.columns)
    stride = _analysis_stride(shape)
    if frame.level == 0:
        small = frame.mapping.apply(frame.raw[::stride, ::stride])
    else:
        rows = np.minimum(np.arange(0, shape[0], stride) >> frame.level, frame.raw.shape[0] - 1)
        cols = np.minimum(np.arange(0, shape[1], stride) >> frame.level, frame.raw.shape[1] - 1)
        small = frame.mapping.apply(frame.raw[np.ix_(rows, cols)])
    return _plan(small, stride, shape, settings, frame.header.laterality)


def _at_level(plan: _Plan, level: int, shape: tuple[int, ...]) -> _Plan:
    """``plan`` (stored coordinates) for the pixels of resolution level ``level``."""
    if level == 0:
        return plan
    factor = 1 << level
    r0, r1, c0, c1 = plan.box
    box = (r0 // factor, min(int(shape[0]), -(-r1 // factor)),
           c0 // factor, min(int(shape[1]), -(-c1 // factor)))
    scale = plan.scale * factor
    return _Plan(flip=plan.flip, orientation_source=plan.orientation_source, box=box,
                 threshold=plan.threshold, block=max(1, math.floor(1.0 / scale + 1e-9)),
                 out_shape=plan.out_shape, scale=scale)


def _plan(small: np.ndarray, stride: int, shape: tuple[int, ...],
          settings: PreprocessSettings, laterality: str) -> _Plan:
    rows, cols = int(shape[0]), int(shape[1])
    threshold = foreground_threshold(small)
    breast = breast_mask(small > threshold)
    flip, source = chest_wall_on_right(breast, laterality)
    box = (crop_box(breast, stride, (rows, cols)) if settings.crop_breast
           else (0, rows, 0, cols))
    return _sized(flip, source, box, threshold, settings)


def _sized(flip: bool, source: str, box: tuple[int, int, int, int], threshold: float,
           settings: PreprocessSettings) -> _Plan:
    """The plan for the crop ``box`` (stored coordinates) at ``settings``' output size."""
    height, width = box[1] - box[0], box[3] - box[2]
    out_rows, out_cols = settings.shape
    scale = min(out_rows / height, out_cols / width)
    out_shape = (min(out_rows, max(1, round(height * scale))),
                 min(out_cols, max(1, round(width * scale))))
    # The tolerance keeps an exact factor such as 4096 -> 512 from landing on 7.
    block = max(1, math.floor(1.0 / scale + 1e-9))
    return _Plan(flip=flip, orientation_source=source, box=box, threshold=threshold,
                 block=block, out_shape=out_shape, scale=scale)


# --------------------------------------------------------------------------- pixels


def _region(image: np.ndarray, plan: _Plan) -> np.ndarray:
    """The crop as a view (not flipped: the block sums flip, keeping strides positive)."""
    r0, r1, c0, c1 = plan.box
    return image[r0:r1, c0:c1]


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


def _block_mean(region: np.ndarray, k: int, flip: bool) -> np.ndarray:
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


def _block_mean_affine(raw: np.ndarray, affine: Affine, k: int, flip: bool) -> np.ndarray:
    """Area average of ``lut[raw]`` for a clipped-line LUT, from integer sums (float32).

    The line commutes with averaging, so only ``clip(raw, lo, hi)`` needs
    summing; mapping after averaging is exact wherever a block lies on one part
    of the line (see :class:`mammography.data.dicom.decode.Affine`).
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


def _finish(reduced: np.ndarray, plan: _Plan, settings: PreprocessSettings) -> np.ndarray:
    """Resize the block means to the planned shape, pad to the input size, quantise."""
    out_rows, out_cols = plan.out_shape
    if reduced.shape != (out_rows, out_cols):
        shrinking = reduced.shape[0] > out_rows or reduced.shape[1] > out_cols
        method = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
        picture = Image.fromarray(np.ascontiguousarray(reduced, dtype=np.float32))
        reduced = np.asarray(picture.resize((out_cols, out_rows), resample=method))
    canvas = np.zeros(settings.shape, dtype=np.float32)
    canvas[:out_rows, :out_cols] = reduced
    np.clip(canvas, np.float32(0), np.float32(1), out=canvas)
    top = _MAX_VALUE[settings.dtype]
    return np.rint(canvas * np.float32(top)).astype(settings.dtype)
