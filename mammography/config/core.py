"""Typed command configs: dataclass fields are the single source of truth.

Each command's settings are a dataclass whose fields carry their CLI help in
``metadata``; the CLI builds its options from the fields (cli/options.py), a
YAML file given with ``--config`` fills in values, and options given on the
command line override the file. The resolved dataclass is what a run records.

Validation collects *every* problem before reporting, so a user fixes a
config in one round trip instead of one error per attempt. It has two steps:
``problems()`` checks what the standard library can (values, paths, run
directories) and answers in milliseconds; ``costly_problems()`` checks what
needs a heavy library (``--arch`` needs timm, which imports torch: seconds),
and runs only once the cheap checks pass, so a typo'd path is refused before
torch is loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from mammography.errors import ConfigError
from mammography.record.secrets import hide, mask_secrets, secret_name

C = TypeVar("C")


#: What an option is about, recorded on its field (``setting(group=...)``): the CLI
#: shows each group under its own heading (``GROUP_TITLES``), in this order.
GROUPS = ("data", "model", "training", "output", "integration")
GROUP_TITLES = {"data": "Data", "model": "Model", "training": "Training", "output": "Output",
                "integration": "Integration"}


def setting(default: Any = dataclasses.MISSING, help: str = "", *, flag: str | None = None,
            cli: bool = True, record: bool = True, default_factory: Any = dataclasses.MISSING,
            metavar: str | None = None, short: str | None = None,
            positional: bool = False, group: str | None = None) -> Any:
    """A dataclass field with CLI metadata.

    ``flag`` overrides the option name (default ``--field-name``); ``cli=False``
    keeps a field out of the CLI (YAML only); ``record=False`` keeps it out of
    the recorded hyperparameters (e.g. ``--outdir`` does not change results).
    ``positional=True`` makes it a command-line argument instead of an option
    (``mammography runs show RUN``): required when the field has no default,
    any number of values when it is a list. ``group`` (one of ``GROUPS``) says
    what the option is about, for the help's headings.
    """
    if group is not None and group not in GROUPS:
        raise ValueError(f"group {group!r} is not one of {', '.join(GROUPS)}")
    meta = {"help": help, "flag": flag, "cli": cli, "record": record,
            "metavar": metavar, "short": short, "positional": positional, "group": group}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class OptionGroup:
    """A set of options several commands share, declared once (a dataclass mixin).

    A command's config inherits the groups it has (config/data.py), so an option
    means the same, with the same help, default and check, wherever it appears.
    Each group checks its own fields in ``own_problems``; :meth:`group_problems`
    collects the checks of every group a config inherits, so a command cannot
    inherit a group's options without its validation.
    """

    def __post_init__(self) -> None:
        """Groups that normalise a value extend this (and call ``super()``)."""

    def group_problems(self) -> list[str]:
        """The problems every inherited group finds in its own fields, base groups first."""
        found: list[str] = []
        for cls in reversed(type(self).__mro__):
            own = vars(cls).get("own_problems")
            if own is not None:
                found += own(self)
        return found


def field_types(cls: type) -> dict[str, Any]:
    """Resolved type hints of a config dataclass (works with postponed annotations)."""
    return typing.get_type_hints(cls)


def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``Optional[X]`` → ``(X, True)``; anything else → ``(tp, False)``."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return args[0], True
    return tp, False


def coerce(value: Any, tp: Any, name: str) -> Any:
    """Convert a YAML/CLI value to the field's type, raising ValueError with a reason."""
    inner, optional = unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name}: a value is required (got null)")
    origin = get_origin(inner)
    if origin in (typing.Union, types.UnionType):
        # ``int | str`` and the like: the first type the value converts to.
        errors = []
        for option in get_args(inner):
            try:
                return coerce(value, option, name)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(errors[-1])
    if origin is Literal:
        choices = get_args(inner)
        if value not in choices:
            text = str(value)
            if text in [str(c) for c in choices]:
                return choices[[str(c) for c in choices].index(text)]
            raise ValueError(f"{name}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin in (list, tuple):
        (item_tp, *_rest) = get_args(inner) or (str,)
        if isinstance(value, str | Path):
            value = [value]
        if not isinstance(value, list | tuple):
            raise ValueError(f"{name}: expected a list, got {value!r}")
        items = [coerce(v, item_tp, name) for v in value]
        return tuple(items) if origin is tuple else items
    if inner is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ValueError(f"{name}: expected true or false, got {value!r}")
    if inner is int:
        if isinstance(value, bool) or not isinstance(value, int | str | float):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected an integer, got {value!r}") from None
        if not as_float.is_integer():
            raise ValueError(f"{name}: expected an integer, got {value!r}")
        return int(as_float)
    if inner is float:
        if isinstance(value, bool):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected a number, got {value!r}") from None
    if inner is Path:
        if not isinstance(value, str | Path):
            raise ValueError(f"{name}: expected a path, got {value!r}")
        return Path(value)
    if inner is str:
        if isinstance(value, dict | list):
            raise ValueError(f"{name}: expected text, got {value!r}")
        return str(value)
    return value


def load_yaml_config(path: Path) -> dict[str, Any]:
    """Read a YAML mapping of settings; errors name the file and the fix."""
    import yaml  # lazy: not needed for --help

    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist; check the --config path.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(
            f"Config file {path} is not valid YAML{where}: "
            f"{getattr(exc, 'problem', None) or exc}. Fix the syntax or remove --config."
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"Config file {path} is not UTF-8 text; save it as UTF-8.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"Config file {path} must be a mapping of setting: value, got {type(data).__name__}."
        )
    # YAML authors write either `img_size` or `img-size`; accept both.
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_config(cls: type[C], values: dict[str, Any], source: str = "settings", *,
                 costly: bool = True) -> C:
    """Instantiate ``cls`` from ``values`` (unknown keys, bad types → one ConfigError);
    ``costly=False`` leaves the checks that load heavy libraries to the caller
    (``validate_costly``)."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    hints = field_types(cls)
    problems: list[str] = []
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"unknown setting {key!r} in {source}{hint}")
            continue
        try:
            kwargs[key] = coerce(value, hints[key], _flag_name(known[key]))
        except ValueError as exc:
            problems.append(f"{exc} (from {source})")
    if problems:
        raise ConfigError(f"Invalid {source}:", problems)
    config = cls(**kwargs)
    validate(config, costly=costly)
    return config


def validate(config: Any, *, costly: bool = True) -> None:
    """Run the dataclass's ``problems()`` hook, then (``costly``, and only when it found
    nothing) its ``costly_problems()``; raise one ConfigError listing them all."""
    hook = getattr(config, "problems", None)
    problems = list(hook()) if hook else []
    if problems:
        raise ConfigError("Invalid settings:", problems)
    if costly:
        validate_costly(config)


def validate_costly(config: Any) -> None:
    """The checks that import a heavy library (``costly_problems()``: ``--arch`` needs
    timm, and with it torch), once everything cheap is known to be right."""
    hook = getattr(config, "costly_problems", None)
    problems = list(hook()) if hook else []
    if problems:
        raise ConfigError("Invalid settings:", problems)


def _flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def flag_name(cls: type, name: str) -> str:
    """The CLI spelling of a field, for messages (``img_size`` → ``--img-size``)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return _flag_name(f)
    raise KeyError(name)


def to_record(config: Any) -> dict[str, Any]:
    """JSON-ready dict of the settings that change results (``record=True`` fields)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        if not f.metadata.get("record", True):
            continue
        out[f.name] = _recorded(f.name, getattr(config, f.name))
    return out


def to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready dict of every field (secrets masked: what is recorded is shared)."""
    return {f.name: _recorded(f.name, getattr(config, f.name))
            for f in dataclasses.fields(config)}


def _recorded(name: str, value: Any) -> Any:
    """A setting as recorded: masked outright when its name says secret."""
    return hide(value) if secret_name(name) and value not in (None, "") else jsonable(value)


def jsonable(value: Any) -> Any:
    """Paths → str, tuples → lists, recursively; secrets masked (what is recorded is
    shared: record/secrets.py) - in URLs and texts, and any value under a key whose
    name says secret; everything else unchanged."""
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _recorded(str(k), v) for k, v in value.items()}
    return value


def run_settings(config: Any) -> dict[str, Any]:
    """What a run records of its settings, as ``Run(**run_settings(cfg))`` arguments:
    the result-changing settings (``hyperparameters``), every setting
    (``config_record``, written to config.yaml) and the seed."""
    return {"hyperparameters": to_record(config), "config_record": to_dict(config),
            "seed": int(getattr(config, "seed", 0) or 0)}
