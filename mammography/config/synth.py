"""Settings of `mammography synth` (synthetic screening DICOM dataset)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mammography.config.core import setting


@dataclass
class SynthConfig:
    out: Path = setting(Path("data/synthetic"), "Folder to create: DIR/classificacao.csv and "
                        "DIR/archive/<AccessionNumber>/*.dcm. Must not hold a dataset already.",
                        group="output")
    exams: int = setting(100, "Number of exams (2-4 views each) with a density class 1-4.",
                         group="data")
    seed: int = setting(42, "Random seed; the same seed gives byte-identical files.",
                        group="data")
    size: str = setting("320x256", "Image size HxW in pixels (full field: 4096x3328).",
                        metavar="HxW", group="data")
    compression: Literal["none", "rle", "j2k"] = setting(
        "none", "Transfer syntax: uncompressed, RLE lossless or JPEG 2000 lossless.",
        group="data")
    class5: int = setting(0, "Extra exams labelled 5 (not classifiable), to exercise exclusion.",
                          group="data")

    @property
    def shape(self) -> tuple[int, int]:
        """``size`` parsed as (rows, columns)."""
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", self.size)
        if not match:
            raise ValueError(self.size)
        return int(match.group(1)), int(match.group(2))

    def problems(self) -> list[str]:
        found = []
        if self.exams < 1:
            found.append(f"--exams must be at least 1, got {self.exams}")
        if self.class5 < 0:
            found.append(f"--class5 must be 0 or more, got {self.class5}")
        try:
            rows, cols = self.shape
        except ValueError:
            found.append(f"--size must look like 320x256 (rows x columns), got {self.size!r}")
        else:
            if not (64 <= rows <= 8192 and 64 <= cols <= 8192):
                found.append(f"--size sides must be between 64 and 8192 pixels, got {self.size}")
        return found
