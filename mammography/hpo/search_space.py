"""A validated search space (``mammography.config.search_space``) as Optuna distributions,
and one draw of it for an Optuna trial."""

from __future__ import annotations

from typing import Any

from mammography.config.search_space import load_search_space

__all__ = ["load_search_space", "optuna_distributions", "sample"]


def optuna_distributions(space: dict[str, dict[str, Any]]) -> dict[str, Any]:
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
