"""Probabilities from an exported ONNX model through onnxruntime: the portable path.

This is how a hospital runs a model: ``model.onnx`` plus its
``preprocessing.json``, no training code and no timm model. The images come
from the same decode-once cache as everywhere (so the preprocessing is the
package's own), then exactly what the inference loop does on the device -
integers to [0, 1] by their dtype's range, ``(x - mean) / std`` with the
card's normalisation, optionally the vertical flip of test-time augmentation
- is done here in numpy, float32 as in torch, so the probabilities match the
checkpoint's to float rounding (``tests/engine/predict/test_e2e.py`` holds
them to 1e-4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mammography.errors import InputError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
#: The integer range each cached dtype spans (``augment.to_float``'s scale).
_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def open_session(path: Path, device: Any) -> tuple[Any, list[str]]:
    """An onnxruntime session for ``path`` (CUDA when the device is and the build has it)."""
    try:
        import onnxruntime
    except ImportError:
        raise InputError("--model needs onnxruntime: pip install 'mammography[export]' (or "
                         "score the training run with --run).") from None
    providers = [CPU]
    if getattr(device, "type", "cpu") == "cuda" and CUDA in onnxruntime.get_available_providers():
        providers = [CUDA, CPU]
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: its optimiser's notices are not ours
    try:
        session = onnxruntime.InferenceSession(str(path), sess_options=options,
                                               providers=providers)
    except Exception as exc:  # onnxruntime raises its own types for bad files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise InputError(f"onnxruntime cannot load --model {path}: {first}. Pass the "
                         "model.onnx eval-export --export onnx wrote.") from None
    return session, list(session.get_providers())


def network_input(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Cached integer images (N x 1 x H x W) -> the normalised float32 network input."""
    scale = _SCALE.get(images.dtype)
    if scale is None:
        raise ValueError(f"cached images are uint8 or uint16, got {images.dtype}")
    x = images.astype(np.float32) / np.float32(scale)
    return (x - np.float32(mean)) / np.float32(std)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)


def onnx_probabilities(session: Any, loader: Iterable, *, normalization: dict[str, float],
                       tta: bool = False, on_batch: Callable[[], None] | None = None
                       ) -> np.ndarray:
    """Probabilities (N x 4, float32) of the loader's images, in dataset row order.

    ``loader`` yields ``(images, labels, rows, embeddings)`` batches of a
    ``CachedImageDataset``; the embeddings feed the second input of a fusion
    model. With ``tta`` each image is also scored upside down (the flip
    training augments with) and the two probability vectors are averaged, as
    ``inference.predict_probabilities`` does.
    """
    names = [arg.name for arg in session.get_inputs()]
    mean, std = float(normalization["mean"]), float(normalization["std"])
    per_pass, order = [], None
    for flip in ([False, True] if tta else [False]):
        probs, rows = [], []
        for images, _labels, batch_rows, embeddings in loader:
            x = network_input(images.numpy(), mean, std)
            if flip:
                x = np.ascontiguousarray(x[:, :, ::-1, :])
            feeds = {names[0]: x}
            if len(names) > 1:
                feeds[names[1]] = embeddings.numpy().astype(np.float32, copy=False)
            probs.append(softmax(session.run(None, feeds)[0]))
            rows.append(batch_rows.numpy())
            if on_batch is not None:
                on_batch()
        per_pass.append(np.concatenate(probs) if probs else np.zeros((0, 4), np.float32))
        order = np.argsort(np.concatenate(rows)) if rows else np.zeros(0, np.int64)
    mean_probs = np.mean(per_pass, axis=0) if len(per_pass) > 1 else per_pass[0]
    return mean_probs[order].astype(np.float32)
