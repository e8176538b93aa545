"""Shared benchmark fixture: an image cache filled with real preprocessed synthetic mammograms."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mammography.data.cache import ImageCache, encode_entry
from mammography.data.preprocess import PreprocessSettings, preprocess
from mammography.data.synthetic import synthesize_mammogram

VIEWS = (("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO"))


def make_cache(root: Path, img_size: int | str, n: int, distinct: int
               ) -> tuple[ImageCache, list[Path], list[int]]:
    """``n`` entries at ``img_size`` (cycling over ``distinct`` synthetic images) for stub sources.

    An entry's key is its source's path, size and mtime, so a source only has
    to exist; what is cached is a real preprocessed synthetic mammogram, so
    reading it back costs what a real run's cache read costs. ``img_size``: 512 or
    "HxW" such as "1024x512", as ``--img-size``.
    """
    settings = PreprocessSettings.for_size(img_size)
    height = settings.shape[0]
    cache = ImageCache(settings, root / "cache")
    rng = np.random.default_rng(0)
    images, labels = [], []
    for i in range(distinct):
        laterality, view = VIEWS[i % 4]
        density = 1 + i % 4
        image = synthesize_mammogram(rng, density, (4 * height, 13 * height // 4),
                                     view, laterality)
        images.append(preprocess(image, settings, laterality))
        labels.append(density - 1)
    sources = []
    (root / "src").mkdir(parents=True)
    for i in range(n):
        source = root / "src" / f"img{i:05d}.dcm"
        source.write_bytes(b"stub")
        entry = cache.entry_path(source)
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.write_bytes(encode_entry(images[i % distinct]))
        sources.append(source)
    return cache, sources, [labels[i % distinct] for i in range(n)]
