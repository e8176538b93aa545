"""Model runs for predict's fast tests, written without training anything.

A run directory with a ``best_model.pt`` of a random-initialised timm test
model (the payload train-density writes), a minimal summary.json and
optionally a data manifest carrying an acquisition fingerprint; a CV parent
holds such runs as its folds. The predictions of random weights are as good
as trained ones for checking how they are combined and written.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mammography.data.augment import GRAY_MEAN, GRAY_STD
from mammography.data.preprocess import PreprocessSettings
from mammography.engine.checkpoint import best_payload
from mammography.models.factory import create_model
from mammography.record.contract import (
    BEST_MODEL_FILE,
    CV_SUMMARY_FILE,
    MANIFEST_FILE,
    SUMMARY_FILE,
    fold_dir,
)

ARCH = "test_efficientnet"
IMG = 48


def write_summary(folder: Path, *, experiment_type: str = "density_classification",
                  run_id: str = "results_1", **fields) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    document = {"experiment_type": experiment_type, "run_id": run_id, "status": "completed",
                "seed": 0, "integration": {"cv_fold": None}, **fields}
    (folder / SUMMARY_FILE).write_text(json.dumps(document))
    return folder


def write_model_run(folder: Path, *, seed: int = 0, img_size: int = IMG,
                    embedding_dim: int = 0, extra: dict | None = None,
                    normalization: dict | None = None, fingerprint: dict | None = None,
                    cv_fold: int | None = None) -> Path:
    """A train-density run directory with a best_model.pt of random weights."""
    write_summary(folder, integration={"cv_fold": cv_fold})
    torch.manual_seed(seed)
    model = create_model(ARCH, pretrained=False, embedding_dim=embedding_dim)
    payload = best_payload(model, arch=ARCH, epoch=1, metrics={},
                           preprocess=PreprocessSettings(img_size=img_size).as_dict(),
                           normalization=normalization or {"mean": GRAY_MEAN, "std": GRAY_STD},
                           extra=extra)
    torch.save(payload, folder / BEST_MODEL_FILE)
    if fingerprint is not None:
        (folder / MANIFEST_FILE).write_text(json.dumps({"digest": f"d{seed}",
                                                        "fingerprint": fingerprint}))
    return folder


def write_cv_parent(folder: Path, folds: int = 2, **model) -> Path:
    """A CV parent (cv_summary.json) whose folds are model runs with distinct weights."""
    write_summary(folder, results={"num_folds": folds})
    (folder / CV_SUMMARY_FILE).write_text(json.dumps({"num_folds": folds}))
    for k in range(1, folds + 1):
        write_model_run(fold_dir(folder, k), seed=k, cv_fold=k, **model)
    return folder
