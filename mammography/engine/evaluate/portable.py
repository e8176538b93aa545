"""A trained model for deployment: TorchScript or ONNX, its input card, and a parity check.

eval-export writes ``models/<label>/export/model.onnx`` (or
``model.torchscript.pt``) with ``preprocessing.json``, then runs the exported
file itself on evaluation images and records the largest probability
difference from the checkpoint (``PARITY_TOLERANCE``). Both files are recorded
with their sha256 in the run's summary.json as they are written
(``record/digests.py``); `predict --model` verifies them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mammography.config.evaluate import EvalConfig
from mammography.data.cache import ImageCache
from mammography.data.table.records import LabelTable
from mammography.engine.export import (
    PARITY_TOLERANCE,
    export_onnx,
    export_torchscript,
    exported_probabilities,
    input_shape,
    model_settings,
    preprocessing_card,
)
from mammography.engine.trained_run import TrainedRun
from mammography.record.contract import (
    EXPORT_DIR,
    ONNX_MODEL_FILE,
    PREPROCESSING_CARD,
    TORCHSCRIPT_MODEL_FILE,
)
from mammography.record.protocol import RunContext


def export_model(cfg: EvalConfig, run: RunContext, source: TrainedRun, model: torch.nn.Module,
                 payload: dict[str, Any], table: LabelTable, cache: ImageCache,
                 embeddings: np.ndarray | None, folder: Path) -> dict[str, Any] | None:
    """Export ``model`` (``--export``) with its preprocessing card, checked to give the
    checkpoint's probabilities on up to 32 evaluation images."""
    from mammography.data.augment import normalize, to_float
    from mammography.record.digests import sha256_file, write_bytes_recorded, write_recorded
    from mammography.record.jsonio import dumps

    if cfg.export == "none":
        return None
    shape = input_shape(payload["preprocess"])
    export_dir = folder / EXPORT_DIR
    export_dir.mkdir(parents=True, exist_ok=True)
    name = TORCHSCRIPT_MODEL_FILE if cfg.export == "torchscript" else ONNX_MODEL_FILE
    path = export_dir / name
    model = model.cpu().eval()
    # The checkpoint ``payload`` came from, verified when it was loaded.
    checkpoint_sha256 = sha256_file(source.best_model)
    if cfg.export == "torchscript":
        write_recorded(run, path, lambda temp: export_torchscript(model, shape, temp))
    else:
        settings = model_settings(payload, checkpoint_sha256)
        write_recorded(run, path, lambda temp: export_onnx(model, shape, temp, settings))
    card = preprocessing_card(payload, source.best_model, cfg.export, name, checkpoint_sha256)
    write_bytes_recorded(run, export_dir / PREPROCESSING_CARD,
                         (dumps(card) + "\n").encode("utf-8"))
    count = min(len(table.images), 32)
    x = torch.stack([torch.from_numpy(np.array(cache.load(r.path)))[None]
                     for r in table.images[:count]])
    inputs: tuple[torch.Tensor, ...] = (normalize(to_float(x)),)
    if embeddings is not None:
        inputs += (torch.from_numpy(embeddings[:count]),)
    with torch.no_grad():
        reference = torch.softmax(model(*inputs), dim=1).numpy()
    exported = exported_probabilities(cfg.export, path, inputs)
    if exported is None:
        run.warn(f"{source.label}: onnxruntime is not installed, so the ONNX export was not "
                 "checked against the checkpoint")
        return {"file": str(path.relative_to(run.dir)), "format": cfg.export, "parity": None}
    diff = float(np.abs(exported - reference).max())
    if diff > PARITY_TOLERANCE:
        run.warn(f"{source.label}: the {cfg.export} export differs from the checkpoint by "
                 f"{diff:.2e} in probability (tolerance {PARITY_TOLERANCE:g})")
    run.log(f"{source.label}: exported {cfg.export} -> {path.relative_to(run.dir)} "
            f"(max probability difference vs checkpoint on {count} images: {diff:.2e})")
    return {"file": str(path.relative_to(run.dir)), "format": cfg.export,
            "parity_max_abs_diff": diff, "parity_images": count,
            "parity_ok": diff <= PARITY_TOLERANCE}
