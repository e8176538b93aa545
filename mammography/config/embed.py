"""Settings of `mammography embed`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from mammography.config.backbone import BackboneWeightsOptions
from mammography.config.core import setting
from mammography.config.data import ClusterOptions, ImageConfig, InferenceOptions


@dataclass
class EmbedConfig(ClusterOptions, BackboneWeightsOptions, InferenceOptions, ImageConfig):
    EXPERIMENT_TYPE: ClassVar[str] = "embedding_extraction"

    outdir: Path | None = setting(None, "Root of the run directories (default "
                                  "outputs/embeddings_<arch>).", metavar="DIR", record=False,
                                  group="output")
    arch: str = setting("resnet50", "Backbone: any timm model name.", group="model")
    probe_folds: int = setting(5, "Folds of the linear-probe baseline (patient-grouped; "
                               "0 = skip it).", group="training")
    seed: int = setting(42, "Seed of the linear probe's folds.", group="training")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.outdir is None:
            self.outdir = Path(f"outputs/embeddings_{self.arch}")

    def problems(self) -> list[str]:
        found = self.group_problems() + self.model_on_cluster_problems()
        if self.probe_folds == 1 or self.probe_folds < 0:
            found.append(f"--probe-folds must be 0 (skip) or at least 2, got {self.probe_folds}")
        return found

    def costly_problems(self) -> list[str]:
        """``--arch``: asking timm imports torch (seconds), so it is checked last."""
        from mammography.models.arch import unknown_arch

        problem = unknown_arch(self.arch)
        return [problem] if problem else []
