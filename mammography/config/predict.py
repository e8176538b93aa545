"""Settings of `mammography predict`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from mammography.config.core import NUM_WORKERS_HELP, num_workers_problem, setting
from mammography.config.evaluate import model_run_problem
from mammography.record.contract import PREPROCESSING_CARD


@dataclass
class PredictConfig:
    # A prediction run is an evaluation-kind run for the seed schema (its enum
    # has no other place for it); summary.json says `command: predict`.
    EXPERIMENT_TYPE: ClassVar[str] = "evaluation"

    run: list[Path] = setting(default_factory=list, help="A train-density run (results_N, a "
                              "fold's fold_i/results, or a CV parent = the mean of all its "
                              "folds); repeat --run to average several models.",
                              metavar="RUN_DIR")
    model: list[Path] = setting(default_factory=list, help="A portable model.onnx written by "
                                "eval-export --export onnx, with its preprocessing.json "
                                "beside it; scored through onnxruntime, without the training "
                                "code's model. Instead of --run; repeat to average several.",
                                metavar="MODEL.onnx")
    csv: Path | None = setting(None, "Images to score: classificacao.csv layout (an "
                               "AccessionNumber column; images under --dicom-root/"
                               "<AccessionNumber>/) or a CSV with a path column. Only the "
                               "image identity is read; labels, if present, are ignored.",
                               metavar="FILE")
    dicom_root: Path | None = setting(None, "Folder of the DICOM files (default: archive/ next "
                                      "to classificacao.csv; for a path CSV the base of "
                                      "relative paths). Without --csv every DICOM file under "
                                      "it (found by content, any extension) is scored.",
                                      metavar="DIR")
    path_column: str = setting("path", "Path CSV: the column with image paths.")
    outdir: Path = setting(Path("outputs/predictions"), "Root of the run directories.",
                           metavar="DIR", record=False)
    batch_size: int = setting(32, "Images per inference batch.")
    device: Literal["auto", "cpu", "cuda"] = setting("auto", "Where to run the models.")
    amp: bool = setting(True, "Mixed precision on CUDA (as in training); ignored on CPU and "
                        "for ONNX models.")
    tta: bool = setting(False, "Test-time augmentation: also score every image upside down "
                        "and average the two. The flip is vertical because training augments "
                        "with a vertical flip; preprocessing puts every chest wall on the "
                        "left, so a horizontal flip would show the model unseen images.")
    on_bad_image: Literal["skip", "error"] = setting(
        "skip", "An unreadable image: skip it (WARNING, recorded in the manifest) or stop.")
    max_bad_fraction: float = setting(0.2, "Stop with exit 2 when more than this share of "
                                      "the images cannot be read.")
    cache: Literal["disk", "memory", "off"] = setting("disk", "Preprocessed-image cache.")
    cache_dir: Path | None = setting(None, "Cache folder (default: the user cache dir, or "
                                     "$MAMMOGRAPHY_CACHE_DIR).", metavar="DIR", record=False)
    workers: int = setting(0, "Processes that decode images (0 = all cores).", record=False)
    num_workers: int = setting(-1, NUM_WORKERS_HELP, record=False)

    def problems(self) -> list[str]:
        found = []
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
        if self.csv is None and self.dicom_root is None:
            found.append("--csv FILE or --dicom-root DIR is required: the images to score")
        if self.csv is not None and not self.csv.is_file():
            found.append(f"--csv {self.csv} does not exist or is not a file")
        if self.dicom_root is not None and not self.dicom_root.is_dir():
            found.append(f"--dicom-root {self.dicom_root} does not exist or is not a folder")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            found.append(f"--max-bad-fraction must be between 0 and 1, got "
                         f"{self.max_bad_fraction}")
        if self.batch_size < 1:
            found.append(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.workers < 0:
            found.append(f"--workers must be 0 (all cores) or more, got {self.workers}")
        if problem := num_workers_problem(self.num_workers):
            found.append(problem)
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
