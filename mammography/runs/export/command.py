"""`mammography runs export --to mlflow|tensorboard`: the runs, in someone else's UI.

Run directories stay the record; an export is a view of them for people who
want MLflow's run table or TensorBoard's curves, without changing how runs
are made. This module picks the runs (``--where``) and hands them to one
exporter; ``export_source`` extracts what both exporters need, and
``export_mlflow`` / ``export_tensorboard`` import their packages only when
called (a missing package is an exit-2 message naming the extra to install).
"""

from __future__ import annotations

from mammography.config.runs import RunsExportConfig
from mammography.runs.export.source import export_base, select_runs


def run_export(config: RunsExportConfig) -> int:
    import sys

    records = select_runs(config)
    say = sys.stdout.write
    if not records:
        say("No runs to export.\n")
        return 0
    if config.to == "mlflow":
        from mammography.runs.export.to_mlflow import export_mlflow

        counts, where = export_mlflow(records, tracking_uri=config.tracking_uri,
                                      experiment=config.experiment,
                                      with_models=config.with_models)
    else:
        from mammography.runs.export.to_tensorboard import export_tensorboard

        assert config.logdir is not None  # checked by the config
        counts, where = export_tensorboard(records, logdir=config.logdir,
                                           base=export_base(config.roots))
    parts = ", ".join(f"{n} {what}" for what, n in counts.items() if n)
    say(f"Exported {len(records)} runs to {where}: {parts or 'nothing to do'}.\n")
    return 0
