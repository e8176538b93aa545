"""A command's settings from every place they come from, in order of precedence.

defaults ← the resumed run's ``config.yaml`` (commands with ``--resume``) ←
``--config FILE.yaml`` ← options typed on the command line. Used by the CLI
and by worker processes that re-create a run's settings from its directory
(parallel CV folds), so both resolve settings the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from mammography.config.core import build_config, load_yaml_config
from mammography.record.contract import CONFIG_FILE

C = TypeVar("C")


def resolve_config(config_cls: type[C], config_file: Path | None,
                   explicit: dict[str, Any], *, costly: bool = True) -> C:
    """The validated config (ConfigError listing every problem); ``costly=False``
    skips the checks that import heavy libraries (the CLI runs them last, after the
    image table's own check: ``core.validate_costly``)."""
    values: dict[str, Any] = {}
    source = "command-line options"
    if config_file is not None:
        values.update(load_yaml_config(config_file))
        source = f"{config_file} and command-line options"
    values.update(explicit)
    resume_field = getattr(config_cls, "RESUME_FIELD", None)
    if resume_field and values.get(resume_field):
        # Continuing a run means its settings, unless told otherwise.
        previous = Path(values[resume_field]) / CONFIG_FILE
        if previous.is_file():
            values = {**load_yaml_config(previous), **values}
            source = f"{previous} and {source}"
    return build_config(config_cls, values, source=source, costly=costly)


def run_config(config_cls: type[C], run_dir: Path) -> C:
    """The settings a run recorded (its config.yaml), validated again."""
    return resolve_config(config_cls, Path(run_dir) / CONFIG_FILE, {})
