"""The search space of `mammography tune`: a YAML mapping of train-density settings to
distributions, validated before any run starts.

Every problem (unknown settings, bad bounds, wrong types) is reported at once;
``mammography.hpo.search_space`` turns a validated space into Optuna
distributions, which both engines use (Ray Tune through its Optuna searcher).
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

DEFAULT_SPACE = "search_space.yaml"
TYPES = ("float", "int", "categorical")


def _trainable_settings() -> set[str]:
    from mammography.config.train import TrainConfig

    return {f.name for f in dataclasses.fields(TrainConfig)}


def load_search_space(path: Path | None) -> dict[str, dict[str, Any]]:
    """The space as ``{setting: spec}``; ValueError listing every problem."""
    if path is None:
        text = resources.files("mammography.config").joinpath(DEFAULT_SPACE).read_text("utf-8")
        where = "the built-in search space"
    else:
        text, where = Path(path).read_text(encoding="utf-8"), str(path)
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"--search-space {where} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"--search-space {where} must map settings to distributions")
    known = _trainable_settings()
    problems, space = [], {}
    for key, spec in raw.items():
        name = str(key).replace("-", "_")
        if name not in known:
            problems.append(f"{name!r} is not a train-density setting")
            continue
        if not isinstance(spec, dict) or spec.get("type") not in TYPES:
            problems.append(f"{name}: needs type: float, int or categorical")
            continue
        if spec["type"] == "categorical":
            if not isinstance(spec.get("choices"), list) or not spec["choices"]:
                problems.append(f"{name}: categorical needs a non-empty choices list")
        else:
            low, high = spec.get("low"), spec.get("high")
            if not all(isinstance(v, int | float) for v in (low, high)) or low >= high:
                problems.append(f"{name}: needs numeric low < high")
            elif spec.get("log") and low <= 0:
                problems.append(f"{name}: log scale needs low > 0")
        space[name] = spec
    if problems:
        raise ValueError(f"--search-space {where}: " + "; ".join(problems))
    return space
