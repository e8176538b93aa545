"""Settings of `mammography embed`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from mammography.config.core import NUM_WORKERS_HELP, num_workers_problem, setting
from mammography.config.data import ImageConfig


@dataclass
class EmbedConfig(ImageConfig):
    EXPERIMENT_TYPE: ClassVar[str] = "embedding_extraction"

    outdir: Path | None = setting(None, "Root of the run directories (default "
                                  "outputs/embeddings_<arch>).", metavar="DIR", record=False)
    arch: str = setting("resnet50", "Backbone: any timm model name.")
    pretrained: bool = setting(True, "timm's pretrained weights (local cache or download); "
                               "--no-pretrained for random weights.")
    weights: Path | None = setting(None, "Local weights file (.pt/.pth/.safetensors), loaded "
                                   "offline.", metavar="FILE")
    allow_partial_weights: bool = setting(
        False, "With --weights: load only the backbone tensors that match by name and shape "
        "and leave the rest random (a WARNING, recorded in summary.json). By default a file "
        "that does not fit the backbone completely is refused.")
    batch_size: int = setting(32, "Images per inference batch.")
    device: Literal["auto", "cpu", "cuda"] = setting("auto", "Where to run the backbone.")
    amp: bool = setting(True, "Mixed precision on CUDA; ignored on CPU.")
    num_workers: int = setting(-1, NUM_WORKERS_HELP, record=False)
    probe_folds: int = setting(5, "Folds of the linear-probe baseline (patient-grouped; "
                               "0 = skip it).")
    seed: int = setting(42, "Seed of the linear probe's folds.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.outdir is None:
            self.outdir = Path(f"outputs/embeddings_{self.arch}")

    def problems(self) -> list[str]:
        from mammography.models.arch import unknown_arch

        found = self.image_problems()
        if problem := num_workers_problem(self.num_workers):
            found.append(problem)
        if self.batch_size < 1:
            found.append(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.probe_folds == 1 or self.probe_folds < 0:
            found.append(f"--probe-folds must be 0 (skip) or at least 2, got {self.probe_folds}")
        if self.weights is not None and not self.weights.is_file():
            found.append(f"--weights {self.weights} does not exist")
        if self.allow_partial_weights and self.weights is None:
            found.append("--allow-partial-weights only applies with --weights FILE")
        problem = unknown_arch(self.arch)
        if problem:
            found.append(problem)
        return found
