"""From a decoded mammogram to the network input: working grid, segment, crop, resize.

The network sees the breast, at one intensity scale, whatever way the pixels were stored:

1. **Working grid** - every encoding reaches the same power-of-two level before any
   statistic is taken (:mod:`mammography.data.dicom.wavelet`): JPEG 2000 is decoded at
   the coarsest wavelet level still covering twice the input size, every other
   encoding is decoded in full and reduced to that level by the same 5/3 low-pass, so a
   lossless JPEG 2000 file and the same pixels uncompressed, RLE or JPEG-LS give the
   same values, the same percentile window, the same crop - the same input, bit for
   bit. ``j2k_reduce=False`` works at full resolution instead.
2. **Analysis image** - the working grid mapped to [0, 1] and area-averaged to about
   ``ANALYSIS_LONG_SIDE`` pixels; every decision is made on it.
3. **Segmentation** (:func:`mammography.data.segment.segment_breast`) - threshold,
   film edges cut, largest connected component, holes filled; labels, lead markers
   and film edges are objects to blank out. Recorded per image (``info``): the mask's
   bounding box, its share of the frame, the sides it runs along, its share of the
   input.
4. **Orientation** - the chest wall goes to the *left* edge, read from the breast
   itself; the DICOM laterality only breaks ties.
5. **Crop** - the breast's bounding box plus a small margin, flush with the image
   edge on the chest-wall side.
6. **Resize** - aspect preserved, as large as fits the ``height x width`` input
   (``img_size``, ``img_width``; square unless a width is given), by area averaging
   (an integer block mean, then Pillow's BOX filter for the fractional rest);
   enlarging (tiny images) is bilinear. A 2:1 input such as 1024 x 512 suits the tall
   breast crop better than a square: the breast, not padding, fills it.
7. **Blank and pad** - pixels of the other objects become 0, the background padding
   goes right and bottom (the chest wall stays on the left edge); quantise to
   uint8/uint16.

The block averaging flips while it sums, so the block grid starts at the chest wall
and a partial block falls on the nipple side. When the working grid's intensity map
is a clipped straight line (linear windows, the percentile window) the block sums are
taken on clipped integers before mapping (``_block_mean_affine``): exact wherever a
block lies on one part of the line.

If the crop turns out smaller than the working level assumed (a small breast on a big
detector), the frame is read again one level finer per doubling; the decisions stay.

Bump ``PREPROCESS_VERSION`` whenever the output for the same input changes: it is
part of the preprocessed-image cache key.
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
from mammography.data.blocks import block_mean, block_mean_affine
from mammography.data.dicom.decode import (
    FRAME_POLICIES,
    DicomHeader,
    DicomReadError,
    IntensityMap,
    RawFrame,
    read_frame,
)
from mammography.data.dicom.wavelet import reduce_levels, working_level
from mammography.data.segment import Segmentation, crop_box, segment_breast

__all__ = [
    "PREPROCESS_VERSION",
    "Layers",
    "PreprocessSettings",
    "check_preprocessed",
    "check_preprocessed_with_info",
    "load_layers",
    "load_preprocessed",
    "load_preprocessed_with_info",
    "parse_image_size",
    "preprocess",
    "preprocess_with_info",
]

#: 2: the working grid (every encoding at one wavelet level, statistics taken there),
#: the largest-component segmentation, other objects blanked, chest wall flush.
PREPROCESS_VERSION = 2

#: Long side of the analysis image all decisions are made on (about; see _plan).
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
    """Work on the coarsest wavelet level that covers twice the output size (JPEG 2000
    decoded at that level, other encodings reduced to it); False: full resolution."""

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

    @property
    def target(self) -> tuple[int, int] | None:
        """The size the working grid is chosen for (None: full resolution)."""
        return self.shape if self.j2k_reduce else None

    def as_dict(self) -> dict[str, Any]:
        """The fields (round-trips through ``PreprocessSettings(**d)``)."""
        return asdict(self)

    def key(self) -> str:
        """Short stable hash of the fields and ``PREPROCESS_VERSION`` (cache key part)."""
        payload = {"preprocess_version": PREPROCESS_VERSION, **self.as_dict()}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class _Grid:
    """One image on its working grid: the values and how they map to [0, 1]."""

    values: np.ndarray
    """Stored values (integers) of the working grid, or intensities (floats) already."""
    mapping: IntensityMap | None
    """Stored value -> intensity; None when ``values`` are intensities."""
    level: int
    """The grid's power-of-two level (0 = full resolution)."""

    @classmethod
    def of_frame(cls, frame: RawFrame) -> _Grid:
        return cls(values=frame.raw, mapping=frame.mapping, level=frame.level)

    def mapped(self, region: np.ndarray) -> np.ndarray:
        """``region`` of the values as intensities (float32)."""
        if self.mapping is None:
            return np.asarray(region, dtype=np.float32)
        return self.mapping.apply(region)

    def block_mean(self, region: np.ndarray, k: int, flip: bool) -> np.ndarray:
        """The intensities of ``region`` averaged over k x k blocks (flipped if asked)."""
        if self.mapping is not None and self.mapping.affine is not None and k > 1 \
                and region.dtype.kind in "ui" and region.dtype.itemsize <= 2:
            return block_mean_affine(region, self.mapping.affine, k, flip)
        return block_mean(self.mapped(region), k, flip)


@dataclass(frozen=True)
class _Plan:
    """Every decision, in the pixels of the working grid at ``level``."""

    segmentation: Segmentation
    analysis_block: int               # working-grid pixels per analysis pixel
    level: int
    box: tuple[int, int, int, int]    # crop rows r0:r1, columns c0:c1 (before flipping)
    block: int                        # integer block size of the first reduction
    out_shape: tuple[int, int]        # resized (rows, columns), before padding
    scale: float                      # output pixels per working-grid pixel

    @property
    def flip(self) -> bool:
        return self.segmentation.flip

    def at_level(self, level: int, shape: tuple[int, ...],
                 settings: PreprocessSettings) -> _Plan:
        """The same decisions for the (finer) grid at ``level`` of size ``shape``."""
        factor = 1 << (self.level - level)
        r0, r1, c0, c1 = self.box
        box = (r0 * factor, min(int(shape[0]), r1 * factor),
               c0 * factor, min(int(shape[1]), c1 * factor))
        return _sized(self.segmentation, self.analysis_block * factor, level, box, settings)

    def breast_share(self, settings: PreprocessSettings) -> float:
        """Share of the network input covered by the breast mask."""
        height, width = settings.shape
        pixel = self.analysis_block * self.scale  # output pixels per analysis pixel
        area = float(np.count_nonzero(self.segmentation.breast)) * pixel * pixel
        return min(1.0, area / (height * width))

    def info(self, stored_shape: tuple[int, ...], settings: PreprocessSettings,
             frame: int = 0) -> dict[str, Any]:
        """The decisions in stored-pixel coordinates, JSON-ready."""
        factor = 1 << self.level
        seg = self.segmentation
        mask = seg.box()
        return {
            "input_shape": [int(n) for n in stored_shape],
            "decode_level": self.level,
            "frame": frame,
            "flipped": self.flip,
            "orientation_source": seg.orientation_source,
            "crop_box": _stored(self.box, factor, stored_shape),
            "foreground_threshold": round(seg.threshold, 6),
            "scale": self.scale / factor,
            "block": self.block,
            "resized_shape": list(self.out_shape),
            "settings_key": settings.key(),
            "mask_box": None if mask is None else _stored(
                mask, factor * self.analysis_block, stored_shape),
            "mask_area_fraction": round(seg.area_fraction, 6),
            "mask_touches": seg.touches(),
            "breast_share": round(self.breast_share(settings), 6),
            "objects_blanked": seg.objects,
            "segmentation_problems": seg.problems(),
        }


def _stored(box: tuple[int, int, int, int], factor: int,
            shape: tuple[int, ...]) -> list[int]:
    """A box in pixels ``factor`` times coarser than the stored image, in stored pixels."""
    r0, r1, c0, c1 = box
    return [r0 * factor, min(int(shape[0]), r1 * factor),
            c0 * factor, min(int(shape[1]), c1 * factor)]


@dataclass(frozen=True)
class Layers:
    """What ``data preview --overlay`` draws: the image the decisions were made on."""

    image: np.ndarray
    """The working grid as intensities in [0, 1] (float32), not flipped."""
    breast: np.ndarray
    """The breast mask (bool), ``block`` image pixels per mask pixel."""
    blank: np.ndarray
    """The objects blanked out of the input (bool), like ``breast``."""
    block: int
    box: tuple[int, int, int, int]
    """The crop box in ``image`` pixels."""
    info: dict[str, Any]


# --------------------------------------------------------------------------- public API


def preprocess(image01: np.ndarray, settings: PreprocessSettings,
               laterality: str = "") -> np.ndarray:
    """The network input for a decoded image (float in [0, 1], 1 = dense)."""
    return preprocess_with_info(image01, settings, laterality)[0]


def preprocess_with_info(image01: np.ndarray, settings: PreprocessSettings,
                         laterality: str = "") -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`preprocess` plus its decisions: flip, crop box, scale, mask (JSON-ready).

    The image is brought to its working grid by the float 5/3 low-pass (the decoded
    image of a DICOM file is already mapped, so this is close to, not the same as,
    :func:`load_preprocessed`, which reduces the stored integers). ``input_shape``,
    ``crop_box`` and ``mask_box`` are in the pixels of the image given.
    """
    image = np.asarray(image01)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"image must be a non-empty 2-D array, got shape {image.shape}")
    image = image.astype(np.float32, copy=False)
    level = working_level(image.shape, settings.target)
    grid = _Grid(values=reduce_levels(image, level), mapping=None, level=level)
    plan = _plan(grid, settings, laterality)
    finer = _finer_level(plan)
    if finer is not None:
        grid = _Grid(values=reduce_levels(image, finer), mapping=None, level=finer)
        plan = plan.at_level(finer, grid.values.shape, settings)
    return _finish(grid, plan, settings), plan.info(image.shape, settings)


def load_preprocessed(path: str | Path,
                      settings: PreprocessSettings) -> tuple[np.ndarray, DicomHeader]:
    """The network input of one DICOM file; raises only DicomReadError per file."""
    array, header, _ = load_preprocessed_with_info(path, settings)
    return array, header


def load_preprocessed_with_info(
        path: str | Path,
        settings: PreprocessSettings) -> tuple[np.ndarray, DicomHeader, dict[str, Any]]:
    """:func:`load_preprocessed` plus the decisions of :func:`preprocess_with_info`."""
    frame, grid, plan = _decode_planned(path, settings)
    array = _render(frame, grid, plan, settings)
    return array, frame.header, _info(frame, plan, settings)


#: Output side of :func:`check_preprocessed` (the smallest ``--img-size``).
CHECK_SIZE = 32


def check_preprocessed(path: str | Path, settings: PreprocessSettings) -> DicomHeader:
    """Refuse what :func:`load_preprocessed` would refuse, at a fraction of its cost."""
    return check_preprocessed_with_info(path, settings)[0]


def check_preprocessed_with_info(path: str | Path, settings: PreprocessSettings
                                 ) -> tuple[DicomHeader, dict[str, Any]]:
    """:func:`check_preprocessed` plus the decisions ``settings`` would make (JSON-ready).

    The frame is read and decoded exactly as for ``settings`` - the same working
    grid, JPEG 2000 at the same wavelet level, finer where the crop asks, so a
    codestream damaged at that level fails here too; blank and saturated images are
    refused on the decoded values, as always - segmented, and then cropped, averaged
    and resized with the same code, but to CHECK_SIZE pixels: the output is thrown
    away, and at 512 px its buffers (megabytes per image, fresh pages from the
    kernel each time) were half the CPU of ``data check``. The decisions returned are
    those of ``settings`` (the mask, the crop, the breast's share of that input).
    Raises only DicomReadError per file.
    """
    frame, grid, plan = _decode_planned(path, settings)
    small = replace(settings, img_size=CHECK_SIZE, img_width=None)
    try:  # the same crop and flip, sized for the small output
        tiny = _sized(plan.segmentation, plan.analysis_block, plan.level, plan.box, small)
    except Exception as exc:  # as in _decode_planned: one file, never the run
        raise DicomReadError(frame.header.path,
                             f"cannot preprocess: {type(exc).__name__}: {exc}") from exc
    _render(frame, grid, tiny, small)
    return frame.header, _info(frame, plan, settings)


def load_layers(path: str | Path, settings: PreprocessSettings) -> Layers:
    """The working grid of one file with its mask, blanked objects and crop box."""
    frame, grid, plan = _decode_planned(path, settings)
    image = grid.mapped(grid.values)
    seg = plan.segmentation
    return Layers(image=image, breast=seg.breast, blank=seg.blank, block=plan.analysis_block,
                  box=plan.box, info=_info(frame, plan, settings))


def _info(frame: RawFrame, plan: _Plan, settings: PreprocessSettings) -> dict[str, Any]:
    return plan.info((frame.header.rows, frame.header.columns), settings, frame.frame)


def _decode_planned(path: str | Path,
                    settings: PreprocessSettings) -> tuple[RawFrame, _Grid, _Plan]:
    """The frame on the working grid ``settings`` need (finer where the crop asks), and
    the plan for it."""
    frame = read_frame(path, frames=settings.multiframe, target=settings.target)
    try:
        grid = _Grid.of_frame(frame)
        plan = _plan(grid, settings, frame.header.laterality)
        finer = _finer_level(plan)
        if finer is not None:
            frame = read_frame(path, frames=settings.multiframe, target=settings.target,
                               max_level=finer)
            grid = _Grid.of_frame(frame)
            plan = plan.at_level(frame.level, grid.values.shape, settings)
        return frame, grid, plan
    except DicomReadError:
        raise
    except Exception as exc:  # a per-file failure, never a crash of the whole run
        raise DicomReadError(frame.header.path,
                             f"cannot preprocess: {type(exc).__name__}: {exc}") from exc


def _render(frame: RawFrame, grid: _Grid, plan: _Plan,
            settings: PreprocessSettings) -> np.ndarray:
    try:
        return _finish(grid, plan, settings)
    except DicomReadError:
        raise
    except Exception as exc:  # a per-file failure, never a crash of the whole run
        raise DicomReadError(frame.header.path,
                             f"cannot preprocess: {type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------- decisions


def _plan(grid: _Grid, settings: PreprocessSettings, laterality: str) -> _Plan:
    """Segment the analysis image of ``grid`` and size the crop for ``settings``."""
    shape = grid.values.shape
    block = max(1, max(shape) // ANALYSIS_LONG_SIDE)
    analysis = grid.block_mean(grid.values, block, False)
    segmentation = segment_breast(analysis, laterality)
    box = (crop_box(segmentation, block, (int(shape[0]), int(shape[1])))
           if settings.crop_breast else (0, int(shape[0]), 0, int(shape[1])))
    return _sized(segmentation, block, grid.level, box, settings)


def _sized(segmentation: Segmentation, analysis_block: int, level: int,
           box: tuple[int, int, int, int], settings: PreprocessSettings) -> _Plan:
    """The plan for the crop ``box`` at ``settings``' output size."""
    height, width = box[1] - box[0], box[3] - box[2]
    out_rows, out_cols = settings.shape
    scale = min(out_rows / height, out_cols / width)
    out_shape = (min(out_rows, max(1, round(height * scale))),
                 min(out_cols, max(1, round(width * scale))))
    # The tolerance keeps an exact factor such as 4096 -> 512 from landing on 7.
    block = max(1, math.floor(1.0 / scale + 1e-9))
    return _Plan(segmentation=segmentation, analysis_block=analysis_block, level=level,
                 box=box, block=block, out_shape=out_shape, scale=scale)


def _finer_level(plan: _Plan) -> int | None:
    """The level to read again when the crop has fewer pixels than the input needs."""
    if plan.level == 0 or plan.scale <= 1.0 + 1e-9:
        return None
    return max(0, plan.level - math.ceil(math.log2(plan.scale) - 1e-9))


# --------------------------------------------------------------------------- pixels


def _finish(grid: _Grid, plan: _Plan, settings: PreprocessSettings) -> np.ndarray:
    """Crop, average, resize, blank, pad and quantise the working grid as ``plan`` says."""
    r0, r1, c0, c1 = plan.box
    # The crop as a view, not flipped: the block sums flip, keeping strides positive.
    reduced = grid.block_mean(grid.values[r0:r1, c0:c1], plan.block, plan.flip)
    out_rows, out_cols = plan.out_shape
    if reduced.shape != (out_rows, out_cols):
        shrinking = reduced.shape[0] > out_rows or reduced.shape[1] > out_cols
        method = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
        picture = Image.fromarray(np.ascontiguousarray(reduced, dtype=np.float32))
        reduced = np.asarray(picture.resize((out_cols, out_rows), resample=method))
    canvas = np.zeros(settings.shape, dtype=np.float32)
    canvas[:out_rows, :out_cols] = reduced
    if plan.segmentation.blank.any():
        canvas[:out_rows, :out_cols][_blanked(plan)] = 0.0
    np.clip(canvas, np.float32(0), np.float32(1), out=canvas)
    top = _MAX_VALUE[settings.dtype]
    return np.rint(canvas * np.float32(top)).astype(settings.dtype)


def _blanked(plan: _Plan) -> np.ndarray:
    """The output pixels (resized shape) whose centre lies on a blanked object."""
    out_rows, out_cols = plan.out_shape
    r0, r1, c0, c1 = plan.box
    rows = r0 + (np.arange(out_rows) + 0.5) * ((r1 - r0) / out_rows)
    across = (np.arange(out_cols) + 0.5) * ((c1 - c0) / out_cols)
    cols = c1 - across if plan.flip else c0 + across
    blank = plan.segmentation.blank
    a = plan.analysis_block
    index_r = np.clip((rows // a).astype(np.intp), 0, blank.shape[0] - 1)
    index_c = np.clip((cols // a).astype(np.intp), 0, blank.shape[1] - 1)
    return blank[np.ix_(index_r, index_c)]
