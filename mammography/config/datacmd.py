"""Settings of `mammography data check` and `mammography data cache`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mammography.config.core import setting
from mammography.config.data import ClusterOptions, ImageConfig


@dataclass
class DataCheckConfig(ClusterOptions, ImageConfig):
    decode: bool = setting(True, "Decode every image's pixels (finds truncated or undecodable "
                           "files); --no-decode reads headers only, much faster.", group="data")
    json: Path | None = setting(None, "Also write the audit as JSON to this file.",
                                metavar="FILE", group="output")

    def problems(self) -> list[str]:
        return self.group_problems()


@dataclass
class DataCacheConfig(ClusterOptions, ImageConfig):
    json: Path | None = setting(None, "Also write the build report as JSON to this file: "
                                "images reused, decoded, regenerated, failed, every "
                                "exclusion with its reason, and with --ray-address the "
                                "cluster's record (nodes, workers, shards, retries, "
                                "throughput per node).",
                                metavar="FILE", group="output")

    def problems(self) -> list[str]:
        found = self.group_problems()
        if self.cache != "disk":
            found.append("--cache must be disk for `data cache` (it builds the on-disk cache)")
        return found


#: Where `data preview` writes without --out: a new preview_N folder under it
#: (git-ignored, like every command's default output).
DEFAULT_PREVIEW_ROOT = Path("outputs/preview")
PREVIEW_FOLDER_PREFIX = "preview_"


@dataclass
class DataPreviewConfig(ImageConfig):
    out: Path | None = setting(None, "Folder to write montage.png and images/ into (created; "
                               "existing files are never overwritten). Default: a new "
                               f"{DEFAULT_PREVIEW_ROOT}/{PREVIEW_FOLDER_PREFIX}N.", metavar="DIR",
                               record=False, group="output")
    limit: int = setting(32, "Images to show (the first N of the CSV, in table order).",
                         group="output")
    overlay: bool = setting(False, "Also write overlay/ and overlay_montage.png: each decoded "
                            "image with the breast outline (red), the objects blanked out "
                            "(blue) and the crop box (green) drawn on it.", group="output")

    def problems(self) -> list[str]:
        found = self.group_problems()
        if self.out is not None and self.out.exists() and any(self.out.iterdir()):
            found.append(f"--out {self.out} already holds files: choose an empty or new folder")
        if self.limit < 1:
            found.append(f"--limit must be at least 1, got {self.limit}")
        return found
