"""Data settings shared by every command that reads images.

Commands inherit from these dataclasses, so ``--csv``, ``--dicom-root``,
``--img-size`` and the cache options mean the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mammography.config.core import setting


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
    img_size: int = setting(512, "Network input size: images are resized (aspect kept) and "
                            "padded to img_size x img_size.")
    crop_breast: bool = setting(True, "Crop to the breast's bounding box before resizing.")
    cache: Literal["disk", "memory", "off"] = setting(
        "disk", "Preprocessed-image cache: on disk (shared by runs), in memory, or off.")
    cache_dir: Path | None = setting(None, "Cache folder (default: the user cache dir, or "
                                     "$MAMMOGRAPHY_CACHE_DIR).", metavar="DIR", record=False)
    workers: int = setting(0, "Processes that decode images when building the cache "
                           "(0 = all cores).", record=False)

    def image_problems(self) -> list[str]:
        found = self.label_problems()
        if not 32 <= self.img_size <= 4096:
            found.append(f"--img-size must be between 32 and 4096, got {self.img_size}")
        if self.workers < 0:
            found.append(f"--workers must be 0 (all cores) or more, got {self.workers}")
        return found
