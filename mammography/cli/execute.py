"""Resolve a command's config (defaults ← YAML ← CLI) and run it.

Result-producing commands (their config class names an ``EXPERIMENT_TYPE``)
run inside the run lifecycle, which allocates ``results_N`` and records
everything; the others (``synth``, ``data check``) are called directly.

Everything that can be refused before work starts is refused here, before any
run directory exists and cheapest first, so a typo costs milliseconds: the
settings (``problems()``: values, paths, run directories), then the image table
as a whole (data/table/preflight.py: readable, a known layout, its DICOM root),
then the checks that import torch (``costly_problems()``: ``--arch``).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from mammography.config.core import run_settings, validate_costly
from mammography.config.data import ImageSourceOptions, LabelOptions
from mammography.config.resolve import resolve_config
from mammography.errors import EXIT_INTERRUPTED, EXIT_OK, DataError, InputError, RunInterrupted
from mammography.record.processes import calm_thread_waits
from mammography.record.secrets import mask_secrets


def import_target(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def execute(config_cls: type, target: str, command: str, config_file: Path | None,
            explicit: dict[str, Any], integration: dict[str, Any] | None = None) -> int:
    """Run ``target`` with the resolved config; ``integration`` (HPO trial identity
    given on the command line) goes to the run's record, not to the config."""
    calm_thread_waits()  # before the command's body imports torch
    try:
        config = resolve_config(config_cls, config_file, explicit, costly=False)
        experiment_type = getattr(config_cls, "EXPERIMENT_TYPE", None)
        if experiment_type is not None:
            refuse_unusable_table(config)
        validate_costly(config)
        body = import_target(target)
        if experiment_type is None:
            return body(config) or EXIT_OK
        from mammography.record import Run

        run_args = dict(command=command, experiment_type=experiment_type,
                        integration=integration, **run_settings(config))
        if getattr(config_cls, "DISTRIBUTED", False) and _under_torchrun():
            return _execute_distributed(config, body, Path(config.outdir), run_args)
        run = Run(outdir=Path(config.outdir), **run_args)
        with run:
            body(config, run)
        return run.exit_code if run.exit_code is not None else EXIT_OK
    except InputError as exc:
        # Detected before any work started (settings, outdir): message only.
        print(f"Error: {mask_secrets(exc.render())}", file=sys.stderr, flush=True)
        return exc.exit_code
    except RunInterrupted as exc:
        # Stopped while the run set up its record (a stop after that is the run's own:
        # recorded, and the run returns its exit code): it never started, nothing is kept.
        import signal

        print(f"Interrupted by {signal.Signals(exc.signum).name} before the run started; "
              "no run directory was kept.", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED


def refuse_unusable_table(config: Any) -> None:
    """A run's image table, checked as a whole before its run directory is made."""
    if not isinstance(config, ImageSourceOptions) or not config.csv:
        return
    if config.dataset is not None:
        # A publisher's files (several, each recognised by its columns) are read by the
        # dataset's own reader, which names a file that is not the dataset's.
        return
    from mammography.data.table.formats import LabelRules
    from mammography.data.table.preflight import table_problems

    labels = (LabelRules(config.label_column, config.include_class_5)
              if isinstance(config, LabelOptions) else None)
    # One file here: several without --dataset were refused with the settings.
    problems = table_problems(config.csv_file, config.dicom_root, labels=labels,
                              path_column=config.path_column)
    if problems:
        raise DataError("The image table cannot be used:", problems)


def _under_torchrun() -> bool:
    import os

    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _execute_distributed(config: Any, body: Any, outdir: Path, run_args: dict[str, Any]) -> int:
    """Under torchrun: rank 0 owns the run directory and tells the others where it is;
    they follow it (their output lands in its run.log with a ``[rank N]`` prefix)."""
    from mammography.engine import distributed
    from mammography.record import Run

    ddp = distributed.init_from_env(config.device)
    try:
        if ddp.is_main:
            run = Run(outdir=outdir, **run_args)
        else:
            run_dir = distributed.broadcast(None)
            run = Run(follow=Path(run_dir), log_prefix=f"[rank {ddp.rank}] ", **run_args)
        with run:
            if ddp.is_main:
                distributed.broadcast(str(run.dir))
                run.update(execution={"world_size": ddp.world_size,
                                      "distributed_backend": ddp.backend})
            body(config, run)
        return run.exit_code if run.exit_code is not None else EXIT_OK
    finally:
        distributed.shutdown()
