"""Data settings shared by every command that reads images.

Commands inherit from these dataclasses, so ``--csv``, ``--dicom-root``,
``--img-size`` and the cache options mean the same everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mammography.config.core import setting

_SIZE = re.compile(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?")


def parse_image_size(value: int | str) -> tuple[int, int]:
    """``512`` or ``"512"`` -> (512, 512); ``"512x256"`` -> (512, 256) (height x width)."""
    if isinstance(value, bool):
        raise ValueError(f"expected 512 or HxW such as 512x256, got {value!r}")
    if isinstance(value, int):
        return value, value
    match = _SIZE.fullmatch(str(value))
    if not match:
        raise ValueError(f"expected 512 or HxW such as 512x256, got {value!r}")
    height = int(match.group(1))
    return height, int(match.group(2)) if match.group(2) else height


@dataclass
class LabelsConfig:
    csv: Path | None = setting(None, "Labels CSV: classificacao.csv (AccessionNumber, "
                               "Classification[, PatientID]) or a generic CSV with path,label "
                               "columns. Labels 1-4 or A-D.", metavar="FILE")
    dicom_root: Path | None = setting(None, "Folder of the DICOM files: <root>/<AccessionNumber>/"
                                      "*.dcm for classificacao.csv; the base of relative paths "
                                      "for a generic CSV (default: the CSV's folder).",
                                      metavar="DIR")
    include_class_5: bool = setting(False, "Keep class 5 (not classifiable) rows instead of "
                                    "excluding them.")
    path_column: str = setting("path", "Generic CSV: column with image paths.")
    label_column: str = setting("label", "Generic CSV: column with density labels.")
    on_bad_image: Literal["skip", "error"] = setting(
        "skip", "An unreadable image: skip it (WARNING, recorded in the manifest) or stop.")
    max_bad_fraction: float = setting(0.2, "Stop with exit 2 when more than this share of "
                                      "the images cannot be read.")

    def label_problems(self) -> list[str]:
        found = []
        if self.csv is None:
            found.append("--csv is required: the labels CSV (e.g. classificacao.csv)")
        elif not self.csv.is_file():
            found.append(f"--csv {self.csv} does not exist or is not a file")
        if self.dicom_root is not None and not self.dicom_root.is_dir():
            found.append(f"--dicom-root {self.dicom_root} does not exist or is not a folder")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            found.append(f"--max-bad-fraction must be between 0 and 1, got "
                         f"{self.max_bad_fraction}")
        return found


@dataclass
class ImageConfig(LabelsConfig):
    img_size: int | str = setting(512, "Network input size: 512 (square) or HxW, height x "
                                  "width; for density HxW such as 1024x512 is recommended (the "
                                  "breast is about twice as tall as wide, so it fills a 2:1 "
                                  "input). Images are resized (aspect kept) and padded to it.",
                                  metavar="N|HxW")
    crop_breast: bool = setting(True, "Crop to the breast's bounding box before resizing.")
    multiframe: Literal["exclude", "first", "middle"] = setting(
        "exclude", "Multi-frame objects (tomosynthesis volumes, cine): exclude them (with the "
        "reason recorded), or take their first or middle frame deliberately.")
    j2k_reduce: bool = setting(True, "Work on the coarsest wavelet level that still covers "
                               "twice --img-size, for every encoding alike (JPEG 2000 decoded "
                               "at that level, about 5x less CPU for full-field images; other "
                               "encodings reduced to it, so the input does not depend on the "
                               "encoding); --no-j2k-reduce works at full resolution.")
    cache: Literal["disk", "memory", "off"] = setting(
        "disk", "Preprocessed-image cache: on disk (shared by runs), in memory, or off.")
    cache_dir: Path | None = setting(None, "Cache folder (default: the user cache dir, or "
                                     "$MAMMOGRAPHY_CACHE_DIR).", metavar="DIR", record=False)
    workers: int = setting(0, "Processes that decode images when building the cache "
                           "(0 = all cores).", record=False)

    def __post_init__(self) -> None:
        # One spelling per size: 512 for a square, "512x256" otherwise.
        shape = self.image_shape()
        if shape is not None:
            self.img_size = shape[0] if shape[0] == shape[1] else f"{shape[0]}x{shape[1]}"

    def image_shape(self) -> tuple[int, int] | None:
        """(height, width) of --img-size; None when it is not a size."""
        try:
            return parse_image_size(self.img_size)
        except ValueError:
            return None

    def image_problems(self) -> list[str]:
        found = self.label_problems()
        shape = self.image_shape()
        if shape is None:
            found.append(f"--img-size must be a size such as 512 or 512x256 (height x width), "
                         f"got {self.img_size!r}")
        elif not all(32 <= side <= 4096 for side in shape):
            found.append(f"--img-size must be between 32 and 4096 (each side), got "
                         f"{self.img_size}")
        if self.workers < 0:
            found.append(f"--workers must be 0 (all cores) or more, got {self.workers}")
        return found
