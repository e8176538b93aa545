"""Settings of `mammography predict`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from mammography.config.core import setting
from mammography.config.data import (
    CacheOptions,
    ClusterOptions,
    ImageSourceOptions,
    InferenceOptions,
)
from mammography.config.evaluate import model_run_problem
from mammography.record.contract import PREPROCESSING_CARD


@dataclass
class PredictConfig(ClusterOptions, InferenceOptions, CacheOptions, ImageSourceOptions):
    """No label options: predict reads only which images to score (data/unlabelled.py)."""

    # A prediction run is an evaluation-kind run for the seed schema (its enum
    # has no other place for it); summary.json says `command: predict`.
    EXPERIMENT_TYPE: ClassVar[str] = "evaluation"

    run: list[Path] = setting(default_factory=list, help="A train-density run (results_N, a "
                              "fold's fold_i/results, or a CV parent = the mean of all its "
                              "folds); repeat --run to average several models.",
                              metavar="RUN_DIR", group="model")
    model: list[Path] = setting(default_factory=list, help="A portable model.onnx written by "
                                "eval-export --export onnx, with its preprocessing.json "
                                "beside it; scored through onnxruntime, without the training "
                                "code's model. Instead of --run; repeat to average several.",
                                metavar="MODEL.onnx", group="model")
    outdir: Path = setting(Path("outputs/predictions"), "Root of the run directories.",
                           metavar="DIR", record=False, group="output")
    tta: bool = setting(False, "Test-time augmentation: also score every image upside down "
                        "and average the two. The flip is vertical because training augments "
                        "with a vertical flip; preprocessing puts every chest wall on the "
                        "left, so a horizontal flip would show the model unseen images.",
                        group="model")

    def problems(self) -> list[str]:
        found = self.group_problems() + self.model_on_cluster_problems()
        if self.model and self.ray_address is not None:
            found.append("--ray-address with --model: the cluster scores train-density "
                         "checkpoints (--run); an ONNX --model is scored on this machine, "
                         "drop --ray-address")
        if not self.run and not self.model:
            found.append("--run RUN_DIR (a train-density run) or --model MODEL.onnx (a model "
                         "exported by eval-export --export onnx) is required")
        if self.run and self.model:
            found.append("--run and --model are alternatives: score with trained runs or "
                         "with exported ONNX models, not both at once")
        for path in self.run:
            problem = model_run_problem(path, command="predict")
            if problem:
                found.append(problem)
        found += [problem for path in self.model if (problem := onnx_model_problem(path))]
        if not self.csv and self.dicom_root is None:
            found.append("--csv FILE or --dicom-root DIR is required: the images to score")
        return found


def onnx_model_problem(path: Path) -> str | None:
    """Why ``--model path`` cannot be scored (None when it can)."""
    import importlib.util

    if not path.is_file():
        return f"--model {path} does not exist or is not a file"
    if path.suffix.lower() != ".onnx":
        return (f"--model {path} is not an .onnx file; pass the model.onnx that eval-export "
                "--export onnx writes (or the training run with --run)")
    if not (path.parent / PREPROCESSING_CARD).is_file():
        return (f"--model {path} has no {PREPROCESSING_CARD} beside it: without it the input "
                "the model expects is unknown. Copy the whole export folder eval-export wrote.")
    if importlib.util.find_spec("onnxruntime") is None:
        return ("--model needs onnxruntime: pip install 'mammography[export]' (or score the "
                "training run with --run)")
    return None
