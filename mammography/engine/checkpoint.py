"""Checkpoints: ``best_model.pt`` (portable weights + what is needed to use them)
and ``last_checkpoint.pt`` (everything needed to resume).

Both hold only tensors and plain Python values, so they load with
``torch.load(weights_only=True)``: opening a checkpoint can never execute code.
Both are written to a temp file and renamed, so a kill mid-save never leaves a
truncated checkpoint behind, and recorded with their sha256 in the run's
summary.json (``save_recorded``: ``record/digests.py``). Both carry the id of
the run that wrote them (``run_uid``, ``run_id``, ``run_dir``); a run's
checkpoint is loaded only after both are checked
(``TrainedRun.checkpoint_bytes``).
"""

from __future__ import annotations

import io
import pickle
import random
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mammography.domain import CLASS_NAMES, LABELS, NUM_CLASSES
from mammography.errors import InputError
from mammography.record.digests import write_recorded
from mammography.record.protocol import RunContext

FORMAT_VERSION = 1


def save_recorded(obj: Any, path: Path, run: RunContext,
                  facts: Mapping[str, Any] | None = None) -> str:
    """``torch.save`` into a temp file, renamed into place and recorded with its sha256 in
    ``run``'s summary.json (record/digests.py); returns the digest."""
    path = Path(path)

    def write(temp: Path) -> None:
        try:
            torch.save(obj, temp)
        except RuntimeError as exc:
            # torch's zip writer reports a full disk as "enforce fail ... unexpected pos".
            raise OSError(f"could not write {path} (disk full or file too large?): "
                          f"{str(exc).strip().splitlines()[0]}") from exc

    return write_recorded(run, path, write, facts)


def load_safely(path: Path, what: str = "checkpoint", data: bytes | None = None
                ) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with a clear refusal for anything else (``data``:
    the file's bytes, read and verified already)."""
    path = Path(path)
    if data is None and not path.is_file():
        raise InputError(f"{what} {path} does not exist.")
    try:
        loaded = torch.load(io.BytesIO(data) if data is not None else path,
                            map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile,
            ValueError, AttributeError, TypeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"Refusing to load {path}: it is not a plain weights file (corrupt, truncated, or "
            f"it contains code/objects that a weights-only load does not execute: {first}). "
            "Use a best_model.pt or last_checkpoint.pt written by mammography.") from None
    if not isinstance(loaded, dict) or "state_dict" not in loaded:
        raise InputError(f"{path} is not a mammography {what} (no state_dict inside).")
    return loaded


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]),
        "numpy": np.random.get_state()[1].tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def best_payload(model: torch.nn.Module, *, arch: str, epoch: int, metrics: dict[str, Any],
                 preprocess: dict[str, Any], normalization: dict[str, float],
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "kind": "density_classifier",
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "arch": arch,
        "num_classes": NUM_CLASSES,
        "class_names": list(CLASS_NAMES),
        "labels": list(LABELS),
        "in_chans": 1,
        "embedding_dim": int(getattr(model, "embedding_dim", 0)),
        "epoch": epoch,
        "val_metrics": {k: v for k, v in metrics.items() if isinstance(v, int | float | str)},
        "preprocess": preprocess,
        "normalization": normalization,
        **(extra or {}),
    }


def model_from_best(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model a ``best_model.pt`` describes (not checked against a run's record:
    a run's model comes through ``TrainedRun.load_model``)."""
    return model_from_payload(load_safely(path, "best model"), path)


def model_from_payload(payload: dict[str, Any], path: Path
                       ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model a loaded ``best_model.pt`` describes; refuse anything else."""
    from mammography.models.factory import create_model

    if payload.get("kind") != "density_classifier" or "arch" not in payload:
        raise InputError(f"{path} is not a density classifier written by train-density "
                         "(no kind/arch recorded); pass a run's best_model.pt.")
    arch = str(payload["arch"])
    embedding_dim = int(payload.get("embedding_dim", 0))
    model = create_model(arch, pretrained=False, embedding_dim=embedding_dim)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        detail = (lines[1] if len(lines) > 1 else lines[0]).strip() if lines else ""
        raise InputError(
            f"{path} does not fit the {arch} architecture it names ({detail}): a checkpoint "
            "from another architecture or a damaged file. Re-train or use the run's own "
            "best_model.pt.") from None
    model.eval()
    return model, payload
