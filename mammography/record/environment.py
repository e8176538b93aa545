"""Runtime environment of a run: interpreter, platform, packages, torch/CUDA.

Package versions come from ``importlib.metadata`` (no subprocess, no
``pip freeze``). torch details are read only when the command has already
imported torch — the run layer never imports it itself.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from importlib import metadata
from typing import Any

KEY_PACKAGES = ("mammography", "torch", "torchvision", "timm", "pydicom", "numpy",
                "scikit-learn", "optuna", "ray")
ENV_VARS = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS",
            "PYTORCH_CUDA_ALLOC_CONF", "CUBLAS_WORKSPACE_CONFIG")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def installed_packages() -> dict[str, str]:
    packages: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            packages[name.lower()] = dist.version
    return dict(sorted(packages.items()))


def torch_details() -> dict[str, Any]:
    """CUDA facts from an already-imported torch; empty when torch is not loaded."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {}
    details: dict[str, Any] = {"torch_version": getattr(torch, "__version__", None)}
    try:
        available = bool(torch.cuda.is_available())
        details["cuda_available"] = available
        details["cuda_version"] = torch.version.cuda
        cudnn = torch.backends.cudnn.version() if available else None
        details["cudnn_version"] = cudnn
        details["gpu_count"] = torch.cuda.device_count() if available else 0
        details["gpu_name"] = torch.cuda.get_device_name(0) if available else None
        details["torch_num_threads"] = torch.get_num_threads()
    except Exception as exc:  # a broken CUDA install must not fail the run record
        details["cuda_error"] = str(exc)
    return details


def collect_environment() -> dict[str, Any]:
    env: dict[str, Any] = {
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
    }
    for name in KEY_PACKAGES:
        env[f"{name.replace('-', '_')}_version"] = _version(name)
    # Filled from torch itself once the command imports it (see torch_details).
    env.update(cuda_available=None, cuda_version=None, gpu_name=None)
    env["env_vars"] = {k: os.environ[k] for k in ENV_VARS if k in os.environ}
    env["packages"] = installed_packages()
    return env
