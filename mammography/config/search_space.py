"""The search space of `mammography tune`: a YAML mapping of train-density settings to
distributions, validated before any run starts, and the Optuna distributions it means.

Every problem (unknown settings, bad bounds, wrong types) is reported at once,
by the settings' check (config/tune.py). A validated space becomes Optuna
distributions (:func:`optuna_distributions`), which both engines use (Ray Tune
through its Optuna searcher), and an Optuna trial draws from it (:func:`sample`).
optuna is imported inside those two functions only: validating a space needs it not.
The built-in space is ``search_space.yaml`` beside this module.
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


def optuna_distributions(space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A validated space as ``{setting: optuna distribution}``."""
    import optuna.distributions as d

    out: dict[str, Any] = {}
    for name, spec in space.items():
        if spec["type"] == "float":
            out[name] = d.FloatDistribution(float(spec["low"]), float(spec["high"]),
                                            log=bool(spec.get("log", False)))
        elif spec["type"] == "int":
            out[name] = d.IntDistribution(int(spec["low"]), int(spec["high"]),
                                          log=bool(spec.get("log", False)),
                                          step=int(spec.get("step", 1)))
        else:
            out[name] = d.CategoricalDistribution(list(spec["choices"]))
    return out


def sample(trial: Any, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Draw one value per setting from an Optuna trial."""
    distributions = optuna_distributions(space)
    return {name: _suggest(trial, name, dist) for name, dist in distributions.items()}


def _suggest(trial: Any, name: str, dist: Any) -> Any:
    import optuna.distributions as d

    if isinstance(dist, d.FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log)
    if isinstance(dist, d.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    return trial.suggest_categorical(name, dist.choices)
