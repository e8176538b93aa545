"""An exported ONNX model opened with onnxruntime, without the training model.

``predict --model`` scores it through the scoring path (``scoring/onnx.py``:
the same decode-once cache and the inference loop's input, in numpy).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mammography.errors import InputError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


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
