"""The backbone's starting weights: options train-density, tune and embed share.

Declared once (an ``OptionGroup``, like the data groups of config/data.py), so
``--weights`` and ``--allow-partial-weights`` mean and check the same in every
command that builds a backbone. ``--arch`` stays with each command: its default
differs (a classifier to train, a feature extractor).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mammography.config.core import OptionGroup, setting


@dataclass
class BackboneWeightsOptions(OptionGroup):
    pretrained: bool = setting(True, "Start from timm's pretrained weights (local cache or "
                               "download). --no-pretrained starts from random weights.",
                               group="model")
    weights: Path | None = setting(None, "Local weights file (.pt/.pth/.safetensors) for the "
                                   "backbone, loaded offline; a classifier's head is adapted.",
                                   metavar="FILE", group="model")
    weights_prefix: str | None = setting(
        None, "With --weights: where the backbone sits in a larger checkpoint, e.g. "
        "image_encoder.model. in a Mammo-CLIP checkpoint (beside its text encoder). Default: "
        "the file is the backbone, or the one prefix it fits under completely is found "
        "(recorded).", metavar="PREFIX", group="model")
    allow_partial_weights: bool = setting(
        False, "With --weights: load only the backbone tensors that match by name and shape "
        "and leave the rest random (a WARNING, recorded in summary.json). By default a file "
        "that does not fit the backbone completely is refused.", group="model")

    def own_problems(self) -> list[str]:
        found = []
        if self.weights is not None and not self.weights.is_file():
            found.append(f"--weights {self.weights} does not exist")
        if self.weights_prefix is not None and self.weights is None:
            found.append("--weights-prefix only applies with --weights FILE")
        if self.allow_partial_weights and self.weights is None:
            found.append("--allow-partial-weights only applies with --weights FILE")
        return found
