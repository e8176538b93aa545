"""Stored pixel values -> display intensities in [0, 1] (1 = bright = dense).

The DICOM grayscale pipeline (PS3.4 N.2) after decoding: modality LUT
(Modality LUT Sequence or Rescale Slope/Intercept), VOI (VOI LUT Sequence,
else Window Center/Width - the first value when several; VOI LUT Function
LINEAR, LINEAR_EXACT or SIGMOID - else, or when pydicom rejects the VOI tags,
a robust percentile window of the non-background pixels), MONOCHROME1
inversion, and scaling by the VOI output range (not by the image's own
min/max, which would stretch every image differently).

For speed the chain is folded into one lookup table over every value the
stored pixels can take (``2**BitsStored`` entries for unsigned data, 65536
for signed 16-bit), built by running pydicom's own functions on the table's
domain, so the result means exactly what the step-by-step chain means. When
the table is a clipped straight line (a linear window, or the percentile
window) :class:`IntensityMap` also carries that line, which lets
:mod:`mammography.data.preprocess` average raw integers before mapping.

:func:`blank_reason` looks at the *mapped* values: an image that the chain
turns into one constant (zeroed pixels under a window, or everything
saturated by it) is not a mammogram, whichever VOI step produced it.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from mammography.data.dicom.errors import DicomReadError

__all__ = ["Affine", "IntensityMap", "blank_reason", "intensity_map"]

log = logging.getLogger(__name__)

#: Percentile window used when a file has no usable VOI tags.
PERCENTILE_WINDOW = (0.5, 99.5)
#: Pixels sampled (on a regular grid) to estimate the percentile window: 16k
#: samples put ~80 in each 0.5 % tail, plenty for a window and 4x cheaper than 65k.
WINDOW_SAMPLE_PIXELS = 1 << 14
#: Background = the darkest part of the value range, as a share of the range
#: between the darkest value and the 99.9th percentile. Air in a mammogram (and
#: in CT/MR) sits at the dark end; markers at the bright end are excluded by
#: the percentile itself.
BACKGROUND_RANGE_SHARE = 0.10
#: An image is blank when this share of its mapped pixels lies within
#: BLANK_TOLERANCE of one value: a mammogram's air is at most ~90 % of it,
#: a few hot pixels or a marker on a constant image do not make it usable.
BLANK_SHARE = 0.998
BLANK_TOLERANCE = 1.0 / 510  # half an 8-bit grey level


@dataclass(frozen=True)
class Affine:
    """``y = clip(alpha * clip(x, lo, hi) + beta, 0, 1)`` equals the table for every stored x.

    ``lo``/``hi`` are the last stored values on the flat parts of the table, so
    the straight line is already <= 0 (>= 1) there: averaging ``clip(x, lo, hi)``
    over a block and then applying the line differs from averaging the table
    only in blocks that mix flat and sloped values, by less than ``|alpha|``.
    """

    alpha: float
    beta: float
    lo: int
    hi: int


@dataclass(frozen=True)
class IntensityMap:
    """Stored pixel value -> display intensity in ``[0, 1]`` (1 = bright = dense).

    ``lut`` (float32) is indexed by the stored values viewed as unsigned
    integers; it is ``None`` for 32-bit or float pixel data, where ``chain``
    maps values directly (those are rare and small, so no table is built).
    ``source`` says which VOI step was used: "voi_lut", "window" or "percentile".
    """

    lut: np.ndarray | None
    affine: Affine | None
    source: str
    chain: _Chain | None = None

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Map stored values (any shape, views welcome) to float32 intensities."""
        if self.lut is None:
            assert self.chain is not None
            return self.chain(raw)
        return self.lut[_as_index(raw)]  # fancy indexing beats np.take here




def _as_index(raw: np.ndarray) -> np.ndarray:
    """Stored values as unsigned table indices (a free view; int16 -1 -> 65535)."""
    return raw if raw.dtype.kind == "u" else raw.view(f"u{raw.dtype.itemsize}")


def _domain(dtype: np.dtype, bits: int) -> np.ndarray:
    """Table entries in index order: entry i holds the value whose bits are i.

    Signed tables always span the whole dtype (negative values index the top
    half); unsigned ones only ``2**bits`` entries.
    """
    if dtype.kind == "u":
        return np.arange(1 << bits, dtype=dtype)
    unsigned = np.dtype(f"u{dtype.itemsize}")
    return np.arange(1 << (8 * dtype.itemsize), dtype=unsigned).view(dtype)


def intensity_map(ds: Dataset, raw: np.ndarray, path: Path, table_bits: int) -> IntensityMap:
    chain = _Chain(ds, raw, path)
    if raw.dtype.kind not in "ui" or raw.dtype.itemsize > 2:
        return IntensityMap(lut=None, affine=None, source=chain.source, chain=chain)
    domain = _domain(raw.dtype, table_bits)
    table = chain.table(domain)
    return IntensityMap(lut=table.astype(np.float32), affine=_fit_affine(domain, table),
                        source=chain.source)


class _Chain:
    """Modality LUT -> VOI -> inversion -> [0, 1], done step by step with pydicom.

    Built once per file: the VOI choice and, for the percentile window, the
    window itself come from the image; then ``table``/``__call__`` apply the
    same chain to any values (the LUT domain, or the pixels themselves).
    """

    def __init__(self, ds: Dataset, raw: np.ndarray, path: Path) -> None:
        self.ds = ds
        self.path = path
        self.invert = _text(ds, "PhotometricInterpretation").upper() == "MONOCHROME1"
        self.source, self.voi_range = self._choose_voi()
        self.window: tuple[float, float] | None = None
        if self.source == "percentile":
            self.window = self._percentile_window(raw)

    def _choose_voi(self) -> tuple[str, tuple[float, float] | None]:
        """The first usable of VOI LUT Sequence, window, percentile - and its output range."""
        for source, output_range in (("voi_lut", self._voi_lut_range),
                                     ("window", self._window_range)):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    found = output_range()
            except Exception as exc:  # bad VOI tags: try the next option
                log.debug("ignoring unusable %s tags: %s: %s", source, type(exc).__name__, exc)
                continue
            if found is not None:
                return source, found
        return "percentile", None

    def _voi_lut_range(self) -> tuple[float, float] | None:
        ds = self.ds
        return _voi_lut_range(ds) if ds.get("VOILUTSequence") and _voi_lut_usable(ds) else None

    def _window_range(self) -> tuple[float, float] | None:
        if self.ds.get("WindowCenter") is None or self.ds.get("WindowWidth") is None:
            return None
        # pydicom maps the window onto a fixed output range; the range is what
        # it gives for the most extreme inputs.
        with np.errstate(all="ignore"):
            ends = apply_voi_lut(np.array([-np.inf, np.inf]), self.ds, prefer_lut=False)
        low, high = float(ends[0]), float(ends[1])
        return (low, high) if math.isfinite(low) and math.isfinite(high) and high > low else None

    def modality(self, values: np.ndarray) -> np.ndarray:
        out = apply_modality_lut(values, self.ds)
        if out.dtype.kind == "f" and not np.isfinite(out).all():
            # A NaN/inf Rescale Slope or Intercept (or an overflowing slope) would
            # otherwise come out as NaN pixels, which clip() keeps, in a network input.
            raise DicomReadError(
                self.path, "the modality LUT gives non-finite values (Rescale Slope "
                f"{_text(self.ds, 'RescaleSlope')!r}, Intercept "
                f"{_text(self.ds, 'RescaleIntercept')!r}): a corrupt header?")
        return out

    def table(self, values: np.ndarray) -> np.ndarray:
        """float64 intensities in [0, 1] for ``values`` (stored pixel values)."""
        m = self.modality(values)
        if self.source == "percentile":
            assert self.window is not None
            low, high = self.window
            sense = -m.astype(np.float64) if self.invert else m.astype(np.float64)
            return np.clip((sense - low) / (high - low), 0.0, 1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.source == "voi_lut":
                y = apply_voi_lut(_integral(m), self.ds, prefer_lut=True)
            else:
                y = apply_voi_lut(m, self.ds, prefer_lut=False)
        assert self.voi_range is not None
        low, high = self.voi_range
        t = np.clip((y.astype(np.float64) - low) / (high - low), 0.0, 1.0)
        return 1.0 - t if self.invert else t

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return self.table(raw).astype(np.float32)

    def _percentile_window(self, raw: np.ndarray) -> tuple[float, float]:
        step = max(1, math.ceil(math.sqrt(raw.size / WINDOW_SAMPLE_PIXELS)))
        m = self.modality(raw[::step, ::step]).astype(np.float64).ravel()
        sense = -m if self.invert else m
        window = _percentile_window(sense)
        if window is None:
            full = self.modality(raw).astype(np.float64)
            full = -full if self.invert else full
            low, high = float(full.min()), float(full.max())
            if high <= low:
                value = -low if self.invert else low  # the modality value, not its negation
                raise DicomReadError(self.path, "blank image: every pixel has the same value "
                                     f"({_number(value)} after the modality LUT)")
            window = (low, high)
        return window


def _percentile_window(values: np.ndarray) -> tuple[float, float] | None:
    """(low, high) percentiles of the non-background values; bright = dense in ``values``.

    Background is the darkest ``BACKGROUND_RANGE_SHARE`` of the range: excluding
    it keeps a large air region from pulling the window down. If nearly
    everything is "background" (an image without air), all values are used.
    None when the sample holds a single value.
    """
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    darkest, top = float(values.min()), float(np.percentile(values, 99.9))
    body = values[values > darkest + BACKGROUND_RANGE_SHARE * (top - darkest)]
    if body.size < 0.01 * values.size:
        body = values
    low, high = (float(v) for v in np.percentile(body, PERCENTILE_WINDOW))
    if high <= low:
        low, high = float(values.min()), float(values.max())
    return (low, high) if high > low else None


def _integral(m: np.ndarray) -> np.ndarray:
    """Modality output as integers when it is integral (pydicom's VOI LUT indexes with it)."""
    if m.dtype.kind in "ui":
        return m
    rounded = np.rint(m)
    return rounded.astype(np.int64) if np.array_equal(rounded, m) else m


def _voi_lut_usable(ds: Dataset) -> bool:
    item = ds.VOILUTSequence[0]
    return item.get("LUTDescriptor") is not None and item.get("LUTData") is not None


def _voi_lut_range(ds: Dataset) -> tuple[float, float]:
    """Output range of the first VOI LUT: the min and max of its entries.

    Not ``2**bits - 1`` from the descriptor: vendors often declare 16 bits and
    fill 12, which would leave every image dim.
    """
    descriptor = ds.VOILUTSequence[0].LUTDescriptor
    entries = int(descriptor[0]) or 1 << 16
    first = int(descriptor[1])
    data = apply_voi_lut(np.arange(first, first + entries, dtype=np.int64), ds, prefer_lut=True)
    low, high = float(data.min()), float(data.max())
    if high <= low:
        raise ValueError("VOI LUT is constant")
    return low, high


def _fit_affine(domain: np.ndarray, table: np.ndarray) -> Affine | None:
    """The clipped straight line equal to ``table`` on every stored value, if there is one."""
    if domain.dtype.kind == "u":
        x, y = domain.astype(np.float64), table  # already in value order
    else:
        order = np.argsort(domain, kind="stable")
        x, y = domain[order].astype(np.float64), table[order]
    inside = np.flatnonzero((y > 0.0) & (y < 1.0))
    if inside.size < 2 or inside[-1] - inside[0] + 1 != inside.size:
        return None
    i0, i1 = int(inside[0]), int(inside[-1])
    alpha = (y[i1] - y[i0]) / (x[i1] - x[i0])
    beta = y[i0] - alpha * x[i0]
    lo = int(x[max(i0 - 1, 0)])
    hi = int(x[min(i1 + 1, x.size - 1)])
    line = np.clip(alpha * np.clip(x, lo, hi) + beta, 0.0, 1.0)
    if not np.allclose(line, y, rtol=0.0, atol=1e-6):
        return None
    return Affine(alpha=float(alpha), beta=float(beta), lo=lo, hi=hi)



def blank_reason(mapping: IntensityMap, raw: np.ndarray) -> str | None:
    """Why the mapped image is (nearly) constant, or None when it is not.

    Looked at on a regular sample of the *mapped* values (after the modality
    LUT, VOI and inversion), because that is what the network would see: a
    zeroed image with window tags, or one the window saturates, passes every
    check on the stored values.
    """
    step = max(1, math.ceil(math.sqrt(raw.size / WINDOW_SAMPLE_PIXELS)))
    sample = mapping.apply(raw[::step, ::step]).ravel()
    if sample.size == 0:
        return None
    bins = np.clip(np.rint(sample * 255.0), 0, 255).astype(np.intp)
    counts = np.bincount(bins, minlength=256)
    mode = int(np.argmax(counts))
    value = mode / 255.0
    share = float(np.count_nonzero(np.abs(sample - value) <= BLANK_TOLERANCE + 0.5 / 255)) \
        / sample.size
    if share < BLANK_SHARE:
        return None
    how = ("every pixel" if share >= 1.0 else f"{share:.1%} of the pixels")
    source = {"voi_lut": "the VOI LUT", "window": "the VOI window",
              "percentile": "the percentile window"}[mapping.source]
    if value <= 0.5 / 255:
        return (f"blank image: {how} map to black under {source} (zeroed pixels, or a window "
                "outside the stored values)")
    if value >= 1 - 0.5 / 255:
        return f"saturated image: {how} map to white under {source}"
    return f"constant image: {how} map to {value:.3f} under {source}"


def _number(value: float) -> str:
    """A value for a message: integers without a decimal point, never "-0"."""
    value = 0.0 if value == 0 else value
    return f"{value:.0f}" if float(value).is_integer() else f"{value:g}"


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()
