"""The phantom: one synthetic mammogram image that carries a learnable density signal.

`synthesize_mammogram` draws a breast (a wobbly half-ellipse, plus the pectoral
muscle in MLO views), fills it with fat and fibroglandular tissue from smooth
random fields and adds quantum noise. The share of fibroglandular (bright)
tissue follows the BI-RADS class (A < 25 %, B 25-50 %, C 50-75 %, D > 75 %, see
`DENSE_RANGES`), so a model trained on these images must do better than chance.
Class 5 ("not classifiable") images are degraded images of any density.

The aim is to exercise loaders, preprocessing and training end to end, not to
model anatomy; `density_fraction` measures the signal back for tests. Every
random number comes from the generator passed in, so the same generator state
gives the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Dense share of the breast per class. Ranges keep a gap from the BI-RADS
#: cut points (25/50/75 %) so neighbouring classes stay separable despite
#: noise and the thin breast periphery.
DENSE_RANGES = {1: (0.03, 0.21), 2: (0.29, 0.46), 3: (0.54, 0.71), 4: (0.79, 0.95)}

#: Thresholds of `density_fraction`, on the [0, 1] intensity scale produced by
#: `synthesize_mammogram`: air sits near 0.03, fat near 0.3, dense tissue
#: (and the pectoral muscle) above 0.6.
BREAST_THRESHOLD = 0.12
DENSE_THRESHOLD = 0.55


def synthesize_mammogram(rng: np.random.Generator, density_class: int, shape: tuple[int, int],
                         view: str, laterality: str, *,
                         dense_target: float | None = None) -> np.ndarray:
    """A synthetic mammogram: float32 in [0, 1], 1 = dense (bright), 0 = air.

    Orientation convention (the usual storage orientation, e.g.
    PatientOrientation A\\R for L-CC): the chest wall is on the image side of
    the breast's laterality - the *left* edge for a left breast, the *right*
    edge for a right breast - and the nipple points to the opposite edge. In
    MLO views the pectoral muscle is the bright triangle in the upper
    chest-wall corner.

    ``density_class`` 1-4 sets the dense share of the breast (``dense_target``
    overrides the random pick within the class range, so the views of one exam
    can share it); 5 gives a degraded, not classifiable image of any density.
    """
    _check_view(view, laterality)
    if density_class not in (1, 2, 3, 4, 5):
        raise ValueError(f"density_class must be 1-5, got {density_class}")
    rows, cols = shape
    if dense_target is None:
        low, high = DENSE_RANGES.get(density_class, (0.05, 0.95))
        dense_target = float(rng.uniform(low, high))

    geometry = _breast_geometry(rng, (rows, cols), view)
    pectoral = _pectoral(rng, (rows, cols)) if view == "MLO" else None
    image = _tissue_image(rng, geometry, pectoral, dense_target)
    image += _quantum_noise(rng, image)
    if density_class == 5:
        image = _degrade(rng, image)
    np.clip(image, 0.0, 1.0, out=image)
    # Drawn with the chest wall on the left; mirror for a right breast.
    if laterality == "R":
        image = image[:, ::-1]
    return np.ascontiguousarray(image, dtype=np.float32)


@dataclass
class _Geometry:
    edge: np.ndarray   # >0 inside the breast: normalised distance to the skin
    p: np.ndarray      # vertical coordinate, 0 at the breast's axis, +-1 at its border
    q: np.ndarray      # depth, 0 at the chest wall, 1 at the nipple


def _breast_geometry(rng: np.random.Generator, shape: tuple[int, int], view: str) -> _Geometry:
    """A half-ellipse attached to the left edge, with a wobbly outline.

    CC: roughly symmetric about the middle row. MLO: taller (it includes the
    axillary tail up to the top edge) and sheared so the nipple points down.
    """
    rows, cols = shape
    if view == "CC":
        cy, a = rows * rng.uniform(0.45, 0.55), rows * rng.uniform(0.36, 0.46)
        shear = rng.uniform(-0.05, 0.05)
    else:
        cy, a = rows * rng.uniform(0.50, 0.58), rows * rng.uniform(0.50, 0.60)
        shear = rng.uniform(0.12, 0.28)
    b = cols * rng.uniform(0.55, 0.82)
    y = np.arange(rows, dtype=np.float32)[:, None]
    x = np.arange(cols, dtype=np.float32)[None, :]
    p = (y - np.float32(cy) - np.float32(shear) * x) / np.float32(a)
    q = x / np.float32(b)
    r = np.sqrt(p * p + q * q)
    # Low-frequency wobble of the outline along the rows: real breasts are not ellipses.
    phases = rng.uniform(0, 2 * np.pi, size=3)
    amps = rng.uniform(0.005, 0.02, size=3)
    yy = y[:, 0] / np.float32(rows)
    wobble = sum(np.float32(amp) * np.sin(np.float32(2 * np.pi * (k + 1)) * yy + np.float32(ph))
                 for k, (amp, ph) in enumerate(zip(amps, phases, strict=True)))
    edge = (np.float32(1.0) + wobble.astype(np.float32)[:, None]) - r
    return _Geometry(edge=edge, p=p, q=q)


def _pectoral(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Soft mask (0-1) of the pectoral muscle: a triangle in the upper-left corner."""
    rows, cols = shape
    width, height = cols * rng.uniform(0.22, 0.42), rows * rng.uniform(0.35, 0.60)
    bow = rng.uniform(-0.3, 0.3)  # slightly convex or concave muscle border
    u = np.arange(cols, dtype=np.float32)[None, :] / np.float32(width)
    v = np.arange(rows, dtype=np.float32)[:, None] / np.float32(height)
    s = u + v + np.float32(bow) * u * v
    return np.clip((1.0 - s) / np.float32(0.04), 0.0, 1.0)


def _tissue_image(rng: np.random.Generator, geo: _Geometry, pectoral: np.ndarray | None,
                  dense_target: float) -> np.ndarray:
    shape = geo.edge.shape
    background = np.float32(rng.uniform(0.02, 0.05))
    fat, dense = np.float32(rng.uniform(0.27, 0.35)), np.float32(rng.uniform(0.70, 0.82))

    # Compressed-breast thickness: full behind the periphery, falling to zero
    # at the skin with a circular profile - the dark rim of real mammograms.
    falloff = np.float32(rng.uniform(0.10, 0.18))
    e = np.clip(geo.edge / falloff, 0.0, 1.0)
    thickness = np.sqrt(e * (2.0 - e))

    coarse = _smooth_field(rng, shape, 0.05)
    fine = _smooth_field(rng, shape, 0.012)
    # Glandular tissue sits behind the nipple, away from the chest wall and the
    # skin; the prior makes a low-density breast put its few dense islands there.
    prior = -(((geo.q - 0.4) / 0.55) ** 2 + (geo.p / 0.8) ** 2)
    gland = coarse + np.float32(0.4) * fine + np.float32(1.5) * prior
    inside = geo.edge > 0
    tissue = inside if pectoral is None else inside & (pectoral < 0.5)
    threshold = _quantile(gland, tissue, 1.0 - dense_target)
    # A ramp rather than a step: partial-volume edges between fat and gland.
    dense_share = np.clip(0.5 + (gland - threshold) / np.float32(0.5), 0.0, 1.0)

    # Gland is more heterogeneous than fat, hence the larger texture weight.
    texture = (np.float32(0.03) + np.float32(0.05) * dense_share) * fine
    breast = fat + dense_share * (dense - fat) + texture
    image = background + thickness * breast
    skin = np.float32(max(1.5, 0.006 * min(shape)) / shape[1])  # ~1.5 mm, normalised
    image += np.float32(0.08) * ((geo.edge > 0) & (geo.edge < skin))
    body = inside
    if pectoral is not None:
        muscle = np.float32(rng.uniform(0.58, 0.70)) + np.float32(0.03) * fine
        image = image * (1.0 - pectoral) + (background + muscle) * pectoral
        body = inside | (pectoral > 0)
    return np.where(body, image, background).astype(np.float32)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int],
                  sigma_frac: float) -> np.ndarray:
    """Gaussian random field, unit variance, blobs ~``sigma_frac`` of the short side.

    Filtered on a coarse grid and upsampled bilinearly: a full-field image
    would need kernels hundreds of pixels wide. The grid has the same size
    whatever the resolution, so the anatomy scales with the image.
    """
    rows, cols = shape
    sigma_px = max(sigma_frac * min(rows, cols), 0.5)
    # A grid sigma of about 2 cells is smooth enough for bilinear upsampling.
    step = max(1, round(sigma_px / 2))
    grid = (-(-rows // step) + 1, -(-cols // step) + 1)
    low = ndimage.gaussian_filter(rng.standard_normal(grid), sigma_px / step, mode="wrap",
                                  truncate=3.0)
    low = ((low - low.mean()) / (low.std() + 1e-12)).astype(np.float32)
    return _upsample(low, shape, step)


def _upsample(low: np.ndarray, shape: tuple[int, int], step: int) -> np.ndarray:
    rows, cols = shape
    ys = np.arange(rows, dtype=np.float32) / np.float32(step)
    i0 = ys.astype(np.intp)
    fy = (ys - np.floor(ys))[:, None]
    tmp = low[i0] * (1 - fy) + low[i0 + 1] * fy
    xs = np.arange(cols, dtype=np.float32) / np.float32(step)
    j0 = xs.astype(np.intp)
    fx = (xs - np.floor(xs))[None, :]
    # np.take keeps C order (fancy indexing on axis 1 would not), and C order
    # keeps every later full-size operation on the fast path.
    return np.take(tmp, j0, axis=1) * (1 - fx) + np.take(tmp, j0 + 1, axis=1) * fx


def _quantile(values: np.ndarray, mask: np.ndarray, q: float) -> np.float32:
    # A regular subsample of ~16k pixels pins a threshold to well under 1 % of
    # the breast area, at any image size.
    stride = max(1, int(np.sqrt(values.size / 16384)))
    sample = values[::stride, ::stride][mask[::stride, ::stride]]
    if sample.size == 0:
        return np.float32(np.inf)
    return np.float32(np.quantile(sample, float(np.clip(q, 0.0, 1.0))))


def _quantum_noise(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    # Photon noise grows with the signal; a floor stands in for detector noise.
    sigma = np.float32(0.008) + np.float32(0.02) * np.sqrt(image)
    return _unit_noise(rng, image.shape) * sigma


def _unit_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-mean, unit-variance pixel noise.

    Uniform rather than Gaussian: four times cheaper to draw (it dominated the
    generation time) and indistinguishable once added to the texture.
    """
    noise = rng.random(shape, dtype=np.float32) - np.float32(0.5)
    noise *= np.float32(np.sqrt(12.0))
    return noise


def _degrade(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Class 5: under-exposed, very noisy, with detector line artefacts."""
    rows, cols = image.shape
    image = image * np.float32(rng.uniform(0.45, 0.7))
    image += _unit_noise(rng, (rows, cols)) * np.float32(rng.uniform(0.10, 0.18))
    image += rng.normal(0.0, 0.06, size=cols).astype(np.float32)[None, :]
    return image


def density_fraction(image01: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Share of breast pixels that are dense (brighter than ``DENSE_THRESHOLD``).

    Without ``mask`` the breast is everything brighter than the air background
    (``BREAST_THRESHOLD``); in MLO views that includes the pectoral muscle, so
    the value is an image statistic for tests, not a clinical measurement.
    """
    image = np.asarray(image01, dtype=np.float32)
    breast = image > BREAST_THRESHOLD if mask is None else np.asarray(mask, dtype=bool)
    n_breast = int(np.count_nonzero(breast))
    if n_breast == 0:
        return 0.0
    return int(np.count_nonzero(breast & (image > DENSE_THRESHOLD))) / n_breast


def _check_view(view: str, laterality: str) -> None:
    if view not in ("CC", "MLO"):
        raise ValueError(f"view must be 'CC' or 'MLO', got {view!r}")
    if laterality not in ("L", "R"):
        raise ValueError(f"laterality must be 'L' or 'R', got {laterality!r}")
