"""`mammography data preview`: look at what the model sees.

People would rather look than read: a wrong VOI, an inverted image or a bad
crop shows at a glance in the montage and not at all in a log. The images go
through the same path as training - labels CSV, headers and exclusions
(:func:`~mammography.data.pipeline.load_table`), then the decode-once cache
with the same preprocessing settings (:func:`~mammography.data.pipeline.build_cache`)
- so what is written is exactly the array a batch would hold:

* ``OUT/images/<accession>_<file stem>.png``: one 16-bit grayscale PNG per
  image, the preprocessed array as is (8-bit arrays are widened exactly,
  x257);
* ``OUT/montage.png``: a grid of them, each titled with accession, view,
  laterality and label;
* with ``--overlay``, ``OUT/overlay/<accession>_<file stem>.png`` and
  ``OUT/overlay_montage.png``: the decoded image (the working grid, in its stored
  orientation) with the breast mask's outline (red), the objects blanked out of the
  input (blue) and the crop box (green) drawn on it (:mod:`mammography.data.overlay`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from mammography.config.datacmd import (
    DEFAULT_PREVIEW_ROOT,
    PREVIEW_FOLDER_PREFIX,
    DataPreviewConfig,
)
from mammography.data.pipeline import build_cache, load_table
from mammography.data.preprocess import PreprocessSettings
from mammography.domain import CLASS_NAMES
from mammography.errors import EXIT_OK
from mammography.record.reporter import ConsoleReporter
from mammography.record.rundir import allocate_numbered_dir

MONTAGE_COLUMNS = 8


def run_preview(cfg: DataPreviewConfig) -> int:
    out = ConsoleReporter()
    table = load_table(cfg, out)
    table.images = table.images[: cfg.limit]
    cache, _ = build_cache(cfg, table, out)
    # The default is a new folder under outputs/ (git-ignored), never the working tree.
    destination = Path(cfg.out) if cfg.out is not None else allocate_numbered_dir(
        DEFAULT_PREVIEW_ROOT, PREVIEW_FOLDER_PREFIX, "Preview folder")
    folder = destination / "images"
    folder.mkdir(parents=True, exist_ok=True)
    tiles, overlays = [], []
    for record in table.images:
        array = np.asarray(cache.load(record.path, out=out))
        wide = array.astype(np.uint16) * 257 if array.dtype == np.uint8 else array
        name = _safe(f"{record.accession}_{record.path.stem}") + ".png"
        target = folder / name
        if target.exists():  # two files with the same accession and stem
            name = _safe(f"{record.accession}_{record.path.stem}_{record.row}") + ".png"
            target = folder / name
        _write_png16(target, wide)
        title = (f"{record.accession} {record.laterality or '?'}-{record.view or '?'} "
                 f"label {record.label} ({_class_name(record.label)})")
        tiles.append((wide, title))
        if cfg.overlay:
            overlays.append((_overlay(record.path, cache.settings, destination / "overlay"
                                      / name), title))
    montage = destination / "montage.png"
    _montage(tiles, montage)
    print(f"Preview of {len(tiles)} images ({cache.settings.shape[0]}x"
          f"{cache.settings.shape[1]}): {montage} and {folder}/")
    if cfg.overlay:
        _montage(overlays, destination / "overlay_montage.png")
        print(f"Overlays (breast outline red, blanked objects blue, crop box green): "
              f"{destination / 'overlay_montage.png'} and {destination / 'overlay'}/")
    return EXIT_OK


def _overlay(path: Path, settings: PreprocessSettings, target: Path) -> np.ndarray:
    """Draw what preprocessing decided for ``path`` and write it to ``target`` (RGB PNG)."""
    from PIL import Image

    from mammography.data.overlay import draw_overlay
    from mammography.data.preprocess import load_layers

    picture = draw_overlay(load_layers(path, settings))
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(target)
    return picture


def _class_name(label: int) -> str:
    return CLASS_NAMES[label - 1] if 1 <= label <= len(CLASS_NAMES) else "n/c"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _write_png16(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint16)).save(path)


def _montage(tiles: list[tuple[np.ndarray, str]], path: Path) -> None:
    from matplotlib.figure import Figure

    columns = min(MONTAGE_COLUMNS, max(1, len(tiles)))
    rows = max(1, math.ceil(len(tiles) / columns))
    height, width = tiles[0][0].shape[:2] if tiles else (1, 1)
    aspect = height / width
    fig = Figure(figsize=(2.2 * columns, 2.2 * aspect * rows + 0.4 * rows))
    for k, (array, title) in enumerate(tiles):
        ax = fig.add_subplot(rows, columns, k + 1)
        if array.ndim == 3:  # an RGB overlay
            ax.imshow(array, interpolation="nearest")
        else:
            ax.imshow(array, cmap="gray", vmin=0, vmax=65535, interpolation="nearest")
        ax.set_title(title, fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
