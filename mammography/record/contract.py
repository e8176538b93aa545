"""The run-directory contract: every file name, pattern and variable runs rely on.

This module is the one place they are spelled. Writers (the run lifecycle,
the training and evaluation commands) and readers (``mammography runs``,
eval-export, fusion, resume) import the names from here, so a name can never
drift between the side that writes a file and the side that looks for it.
What each file holds is documented in ``docs/artifacts.md``.

Standard library only: the tee worker and ``mammography --help`` stay light.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

# ------------------------------------------------------------ every run directory
SUMMARY_FILE = "summary.json"
LOG_FILE = "run.log"
MANIFEST_FILE = "data_manifest.json"
#: The resolved settings; ``--config`` it to re-run, ``--resume`` reads it back.
CONFIG_FILE = "config.yaml"
#: ``git diff HEAD --binary`` of the code when it was dirty.
GIT_PATCH_FILE = "git_diff.patch"

# ------------------------------------------------------------ train-density
BEST_MODEL_FILE = "best_model.pt"
LAST_CHECKPOINT_FILE = "last_checkpoint.pt"
HISTORY_CSV = "train_history.csv"
HISTORY_JSON = "train_history.json"
SPLITS_FILE = "splits.csv"
VAL_METRICS_JSON = "metrics/val_metrics.json"
VAL_METRICS_CSV = "metrics/val_metrics.csv"
VAL_PREDICTIONS = "val_predictions.csv"
VAL_PREDICTIONS_EXAM = "val_predictions_exam.csv"
CV_SUMMARY_FILE = "cv_summary.json"
#: summary.json section of a CV parent: its folds, where each one's run is and
#: how it came about (``FOLD_ORIGINS``); written before the first fold trains.
CV_RECORD = "cross_validation"
#: Trained here; continued here from an interrupted fold's checkpoint; or a
#: completed fold of the resumed run, referenced and not retrained.
FOLD_TRAINED, FOLD_CONTINUED, FOLD_REUSED = "trained", "continued", "reused"
FOLD_ORIGINS = (FOLD_TRAINED, FOLD_CONTINUED, FOLD_REUSED)

# ------------------------------------------------------------ embed
FEATURES_FILE = "features.npy"
METADATA_FILE = "metadata.csv"

# ------------------------------------------------------------ eval-export
#: Each evaluated model's outputs: ``models/<label>/``, its export in ``export/``.
EVAL_MODELS_DIR = "models"
EXPORT_DIR = "export"
#: The input card written next to an exported model: shape, preprocessing,
#: normalisation, class order, source checkpoint (`predict --model` reads it).
PREPROCESSING_CARD = "preprocessing.json"
ONNX_MODEL_FILE = "model.onnx"
TORCHSCRIPT_MODEL_FILE = "model.torchscript.pt"

# ------------------------------------------------------------ predict
PREDICTIONS_IMAGE = "predictions_image.csv"
PREDICTIONS_BREAST = "predictions_breast.csv"
PREDICTIONS_EXAM = "predictions_exam.csv"

# ------------------------------------------------------------ tune
OPTUNA_TRIAL_FILE = "optuna_trial.json"
STUDY_DB = "study.db"
BEST_PARAMS_FILE = "best_params.json"
TRIALS_CSV = "trials.csv"
#: Ray Tune trials of a tune run: ``trials/<trial name>/results_1``.
RAY_TRIALS_DIR = "trials"

# ------------------------------------------------------------ runs clean
#: An empty file of this name keeps a run from `runs clean`.
KEEP_MARKER = "KEEP"
#: What `runs clean --keep-logs` removed from a run.
CLEANED_FILE = "CLEANED.json"

# ------------------------------------------------------------ names of run directories
RUN_DIR_PREFIX = "results_"
RUN_DIR_RE = re.compile(r"^results_(\d+)$")
#: A child run (CV fold, HPO trial) lives in ``<parent>/<holder>/results``.
CHILD_RUN_DIR = "results"


def run_dir_name(number: int) -> str:
    return f"{RUN_DIR_PREFIX}{number}"


def fold_name(fold: int) -> str:
    """The holder folder of CV fold ``fold`` (1-based): ``fold_3``."""
    return f"fold_{fold}"


def fold_dir(parent: Path, fold: int) -> Path:
    """``<parent>/fold_<k>/results``."""
    return Path(parent) / fold_name(fold) / CHILD_RUN_DIR


def trial_name(number: int) -> str:
    """The holder folder of Optuna trial ``number``: ``trial_7``."""
    return f"trial_{number}"


def ray_stream_file(trial: str) -> str:
    """``ray_hpo_<trial>.jsonl``, the trial name made safe for a file name."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in trial)
    return f"ray_hpo_{safe}.jsonl"


# ------------------------------------------------------------ experiment types
#: The seed schema's enum: the three commands the reference pipeline has.
SEED_EXPERIMENT_TYPES = ("embedding_extraction", "density_classification", "evaluation")
#: `mammography tune`: a search whose children are density_classification runs.
HYPERPARAMETER_SEARCH = "hyperparameter_search"
EXPERIMENT_TYPES = (*SEED_EXPERIMENT_TYPES, HYPERPARAMETER_SEARCH)
STATUSES = ("running", "completed", "failed", "interrupted")

# ------------------------------------------------------------ environment variables
#: Root of every cache of the package (preprocessed images, checksum memo).
ENV_CACHE_DIR = "MAMMOGRAPHY_CACHE_DIR"
#: Seconds between heartbeats of a running run (tests shorten it).
ENV_HEARTBEAT = "MAMMOGRAPHY_HEARTBEAT_SECONDS"
#: ``RUN_DIR[::relation]``: the run this process's run derives from (`runs reproduce`).
ENV_BASED_ON = "MAMMOGRAPHY_BASED_ON"

DEFAULT_HEARTBEAT_SECONDS = 30.0
#: A running run whose heartbeat is older than this many intervals counts as crashed.
STALE_FACTOR = 3


def heartbeat_seconds() -> float:
    """How often a running run refreshes ``execution.heartbeat``."""
    return float(os.environ.get(ENV_HEARTBEAT, DEFAULT_HEARTBEAT_SECONDS))


def cache_root() -> Path:
    """``$MAMMOGRAPHY_CACHE_DIR`` (``~`` expanded), else the user cache dir.

    One variable moves every cache of the package (image cache, checksum memo)
    onto another disk.
    """
    value = os.environ.get(ENV_CACHE_DIR, "").strip()
    if value:
        return Path(value).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("mammography"))


# ------------------------------------------------------------ reading summaries
class SummaryUnreadable(Exception):
    """summary.json is missing, unreadable, not JSON or not a JSON object."""


def read_summary(run_dir: Path) -> dict[str, Any]:
    """The parsed ``run_dir/summary.json`` (SummaryUnreadable saying why not)."""
    path = Path(run_dir) / SUMMARY_FILE
    try:
        with open(path, "rb") as handle:
            document = json.loads(handle.read())
    except FileNotFoundError:
        raise SummaryUnreadable(f"{SUMMARY_FILE} missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SummaryUnreadable(f"{SUMMARY_FILE} unreadable: {exc}") from None
    except json.JSONDecodeError as exc:
        raise SummaryUnreadable(f"{SUMMARY_FILE} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise SummaryUnreadable(f"{SUMMARY_FILE} is not a JSON object (got "
                                f"{type(document).__name__})")
    return document


def is_run_dir(path: Path) -> bool:
    """Does ``path`` hold a summary.json (a run directory of any kind)?"""
    return (Path(path) / SUMMARY_FILE).is_file()
