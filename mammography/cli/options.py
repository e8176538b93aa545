"""Build Typer commands from config dataclasses, so each option is declared once.

A command is registered with its config class and the dotted name of the
function that runs it; the function is imported only when the command runs,
which keeps ``mammography --help`` free of heavy imports. Options given on the
command line override values from ``--config FILE.yaml``, which override the
dataclass defaults.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args, get_origin

import typer

from mammography.cli.help import HelpCommand, epilog, escape
from mammography.config.core import GROUP_TITLES, GROUPS, field_types, unwrap_optional

CONFIG_OPTION_HELP = "YAML file of settings; options given on the command line override it."
# Commands whose config sets ``INTEGRATION_OPTIONS`` take these: an external HPO
# driver names its trial, and the run records it under ``integration`` (never
# in the settings: a trial's identity changes no result).
INTEGRATION_OPTIONS = {
    "optuna_trial_id": ("--optuna-trial-id", "Optuna trial this run belongs to (recorded in "
                        "summary.json integration)."),
    "ray_trial_name": ("--ray-trial-name", "Ray Tune trial this run belongs to (recorded in "
                       "summary.json integration)."),
}


def _argument_for(f: dataclasses.Field, inner: Any) -> tuple[Any, Any]:
    """(annotation, typer.Argument) for a ``setting(..., positional=True)`` field.

    A field without a default is a required argument; a list field takes any
    number of values (``ROOT ...``). An optional argument left out is not passed
    on (its parameter source is DEFAULT), so the dataclass default applies.
    """
    meta = f.metadata
    required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    annotation: Any = inner
    if get_origin(inner) in (list, tuple):
        (item,) = get_args(inner)[:1] or (str,)
        annotation = list[item]  # type: ignore[valid-type]
    if not required:
        annotation = Optional[annotation]  # noqa: UP045 - typer needs the typing form
    kwargs: dict[str, Any] = {"help": escape(meta.get("help") or "") or None,
                              "metavar": meta.get("metavar") or f.name.upper(),
                              "show_default": False}
    return annotation, typer.Argument(... if required else None, **kwargs)


def _option_for(f: dataclasses.Field, tp: Any, *, negatable: bool = True) -> tuple[Any, Any]:
    """(annotation, typer.Option or typer.Argument) for one dataclass field.

    ``negatable=False`` (a command without ``--config``): a switch that is off by
    default is just ``--yes``, not ``--yes/--no-yes`` -- there is no file whose
    setting ``--no-...`` would override."""
    inner, optional = unwrap_optional(tp)
    meta = f.metadata
    if meta.get("positional"):
        return _argument_for(f, inner)
    flag = meta.get("flag") or "--" + f.name.replace("_", "-")
    default = f.default if f.default is not dataclasses.MISSING else (
        f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
    decls = [flag]
    if meta.get("short"):
        decls.append(meta["short"])
    kwargs: dict[str, Any] = {"help": escape(meta.get("help") or "") or None}
    if meta.get("group"):
        # The heading it is listed under once the help is rendered with rich panels.
        kwargs["rich_help_panel"] = GROUP_TITLES[meta["group"]]
    annotation: Any = inner
    origin = get_origin(inner)
    kwargs["metavar"] = meta.get("metavar") or _metavar(inner)
    if origin in (Union, types.UnionType):
        # A union such as ``int | str`` is typed text here; coerce() converts it.
        annotation = str
        default = None if default is None else str(default)
    elif inner is bool and (negatable or default):
        decls = [f"{flag}/--no-{flag[2:]}"]
    elif inner is bool:
        kwargs["show_default"] = False  # off unless given: the flag's help says what it does
    elif origin is Literal:
        # Typer renders an Enum as a choice list; values are turned back into
        # plain strings before the config is built (see _plain).
        choices = [str(c) for c in get_args(inner)]
        annotation = enum.Enum(f"{f.name}_choices", {c: c for c in choices}, type=str)
        default = None if default is None else annotation(str(default))
    elif origin in (list, tuple):
        (item,) = get_args(inner)[:1] or (str,)
        annotation = list[item]  # type: ignore[valid-type]
        default = list(default) if default else None
    if optional and annotation is not bool:
        annotation = Optional[annotation]  # noqa: UP045 - typer needs the typing form
    return annotation, typer.Option(default, *decls, **kwargs)


#: What to type after an option, by its type, where the field names nothing better
#: (click's words; instead of Python's ``<int>``, ``<str>``).
_METAVARS = {int: "INTEGER", float: "NUMBER", str: "TEXT", Path: "PATH"}


def _metavar(inner: Any) -> str | None:
    """``a|b|c`` for a choice, a word for a plain type, None for a flag or a list."""
    if get_origin(inner) is Literal:
        return "|".join(str(c) for c in get_args(inner))
    if get_origin(inner) in (Union, types.UnionType):
        return "TEXT"
    return _METAVARS.get(inner)


def _group_rank(f: dataclasses.Field) -> int:
    """Ungrouped options first (the "Options" panel: --config, --help), then by group."""
    group = f.metadata.get("group")
    return GROUPS.index(group) + 1 if group in GROUPS else 0


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def add_config_command(app: typer.Typer, name: str, config_cls: type, target: str,
                       help: str, *, config_file_option: bool = True,
                       examples: Sequence[str] = ()) -> None:
    """Register ``name`` on ``app``: options from ``config_cls``, runs ``target``.

    ``target`` is ``"package.module:function"``; the function takes the
    resolved config and returns an exit code (or None for 0). ``examples``: command
    lines shown under the options (README examples: cli/help.py).
    """
    hints = field_types(config_cls)
    params = [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY,
                                annotation=typer.Context)]
    if config_file_option:
        params.append(inspect.Parameter(
            "config_file", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],  # noqa: UP045
            default=typer.Option(None, "--config", help=CONFIG_OPTION_HELP, metavar="FILE.yaml",
                                 dir_okay=False)))
    # Options in the order of their groups (Data, Model, Training, Output, Integration):
    # the help shows one panel per group, in the order the panels first appear.
    for f in sorted(dataclasses.fields(config_cls), key=_group_rank):
        if not f.metadata.get("cli", True):
            continue
        annotation, option = _option_for(f, hints[f.name], negatable=config_file_option)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                        annotation=annotation, default=option))
    integration_keys = list(INTEGRATION_OPTIONS) if getattr(
        config_cls, "INTEGRATION_OPTIONS", False) else []
    for key in integration_keys:
        flag, text = INTEGRATION_OPTIONS[key]
        params.append(inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY,
                                        annotation=Optional[str],  # noqa: UP045
                                        default=typer.Option(
                                            None, flag, help=escape(text), metavar="TEXT",
                                            rich_help_panel=GROUP_TITLES["integration"])))

    def command(ctx: typer.Context, config_file: Path | None = None, **values: Any) -> None:
        from mammography.cli.execute import execute  # lazy: keeps --help light

        # Only options the user typed override the YAML file. Compared by name:
        # typer vendors its own click, so the enum class differs between versions.
        integration = {key: values.pop(key) for key in integration_keys
                       if values.get(key) is not None}
        explicit = {key: _plain(value) for key, value in values.items()
                    if getattr(ctx.get_parameter_source(key), "name", "COMMANDLINE")
                    not in ("DEFAULT", "DEFAULT_MAP")}
        for key in integration_keys:
            explicit.pop(key, None)
        code = execute(config_cls, target, name, config_file, explicit, integration or None)
        raise typer.Exit(code or 0)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__name__ = name.replace("-", "_")
    command.__doc__ = help
    app.command(name, help=escape(help), epilog=epilog(examples), cls=HelpCommand)(command)
