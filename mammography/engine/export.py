"""Portable model export (TorchScript or ONNX) with its preprocessing beside it.

An exported model is only useful with the exact input it expects, so every
export writes ``preprocessing.json`` next to the model file: input shape,
preprocessing settings, normalisation, class order, and where it came from.
An ONNX model also carries its source checkpoint's settings in its own
metadata (``model_settings``), so `predict --model` can check a card against
them even when the card travels without its run (``predict/card.py``).
The export is then run on real evaluation images and compared with the
checkpoint model; the largest probability difference is recorded.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mammography.domain import CLASS_NAMES
from mammography.record.logonly import output_to_log_only

PARITY_TOLERANCE = 1e-4
#: The ONNX metadata keys (``metadata_props``) of what the source checkpoint says.
ONNX_PREPROCESS, ONNX_NORMALIZATION, ONNX_SOURCE_SHA256, ONNX_ARCH = (
    "mammography.preprocess", "mammography.normalization", "mammography.source_sha256",
    "mammography.arch")


def model_settings(payload: dict[str, Any], checkpoint_sha256: str) -> dict[str, str]:
    """The ONNX metadata of a model exported from a checkpoint: its settings, as text."""
    return {ONNX_PREPROCESS: json.dumps(payload.get("preprocess", {}), sort_keys=True),
            ONNX_NORMALIZATION: json.dumps(payload.get("normalization", {}), sort_keys=True),
            ONNX_SOURCE_SHA256: checkpoint_sha256, ONNX_ARCH: str(payload.get("arch"))}


def input_shape(preprocess: dict[str, Any]) -> tuple[int, int]:
    """(height, width) of the network input a checkpoint's preprocessing gives."""
    height = int(preprocess.get("img_size", 512))
    return height, int(preprocess.get("img_width") or height)


def _example(model: Any, shape: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    x = torch.zeros(1, 1, *shape)
    dim = int(getattr(model, "embedding_dim", 0))
    return (x, torch.zeros(1, dim)) if dim else (x,)


@contextmanager
def _quiet_torchscript_deprecation() -> Iterator[None]:
    # TorchScript is deprecated upstream (torch >= 2.10) but still the
    # dependency-free portable format; the notice would repeat per model.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.", category=FutureWarning)
        yield


def export_torchscript(model: torch.nn.Module, shape: tuple[int, int], path: Path) -> Path:
    with _quiet_torchscript_deprecation():
        traced = torch.jit.trace(model.cpu().eval(), _example(model, shape),
                                 check_trace=False)
        traced.save(str(path))
    return path


def export_onnx(model: torch.nn.Module, shape: tuple[int, int], path: Path,
                metadata: dict[str, str] | None = None) -> Path:
    """``model`` as ONNX at ``path`` (dynamic batch), ``metadata`` in its metadata_props."""
    example = _example(model, shape)
    batch = torch.export.Dim("batch")
    shapes = tuple({0: batch} for _ in example)
    # One self-contained file (no model.onnx.data beside it) unless the
    # weights exceed protobuf's 2 GB limit.
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    # The exporter narrates every step ("[torch.onnx] Obtain model graph ...", ~50
    # lines per model): for run.log, not the terminal.
    with output_to_log_only():
        program = torch.onnx.export(model.cpu().eval(), example, None, dynamo=True,
                                    dynamic_shapes=shapes,
                                    input_names=["image", "embedding"][:len(example)],
                                    output_names=["logits"])
        assert program is not None
        program.model.metadata_props.update(metadata or {})
        program.save(str(path), external_data=size > 1_900_000_000)
    return path


def exported_probabilities(kind: str, path: Path, inputs: tuple[torch.Tensor, ...]
                           ) -> np.ndarray | None:
    """Probabilities from the exported file itself (None when no runtime is installed)."""
    if kind == "torchscript":
        with _quiet_torchscript_deprecation():
            loaded = torch.jit.load(str(path))
        with torch.no_grad():
            return torch.softmax(loaded(*inputs), dim=1).numpy()
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {arg.name: t.numpy() for arg, t in zip(session.get_inputs(), inputs, strict=True)}
    logits = session.run(None, feeds)[0]
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def sha256(path: Path) -> str:
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def preprocessing_card(payload: dict[str, Any], checkpoint: Path, kind: str,
                       model_file: str, checkpoint_sha256: str | None = None) -> dict[str, Any]:
    """The input card of a model exported from ``checkpoint`` (its ``payload``; its sha256
    when already known)."""
    pre = payload.get("preprocess", {})
    height, width = input_shape(pre)
    norm = payload.get("normalization", {})
    dim = int(payload.get("embedding_dim", 0))
    return {
        "model_file": model_file,
        "format": kind,
        "arch": payload.get("arch"),
        "inputs": [{"name": "image", "shape": ["batch", 1, height, width], "dtype": "float32"}]
        + ([{"name": "embedding", "shape": ["batch", dim], "dtype": "float32",
             "note": "standardised embedding of the image from the recorded embedding run"}]
           if dim else []),
        "output": {"name": "logits", "shape": ["batch", 4],
                   "classes": list(payload.get("class_names", CLASS_NAMES)),
                   "labels": payload.get("labels", [1, 2, 3, 4]),
                   "note": "softmax gives the probabilities of BI-RADS density A-D"},
        "preprocess": pre,
        "normalization": norm,
        "steps": [
            "decode the DICOM: modality LUT, VOI LUT or window (else 0.5-99.5 % percentile "
            "window), MONOCHROME1 inverted so that 1 = dense",
            "flip so the chest wall is on the left; crop to the breast (crop_breast)",
            f"resize keeping the aspect ratio to the largest size that fits {height}x{width} "
            f"(height x width), pad right/bottom with 0 to {height}x{width}",
            f"scale to [0, 1], then (x - {norm.get('mean')}) / {norm.get('std')}",
            "mammography.data.preprocess.load_preprocessed(path, "
            "PreprocessSettings(**preprocess)) does all of this",
        ],
        "source_checkpoint": {"path": str(checkpoint),
                              "sha256": checkpoint_sha256 or sha256(checkpoint),
                              "epoch": payload.get("epoch"), "run_id": payload.get("run_id"),
                              "run_uid": payload.get("run_uid")},
    }
