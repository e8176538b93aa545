"""The ``mammography`` command-line entry point.

Each command is declared in one line here: its name, its config dataclass
(the options), and the function that runs it, imported only when it runs.
Nothing heavy (torch, pydicom, numpy) is imported to show ``--help``.
"""

from __future__ import annotations

import typer

from mammography.cli.options import add_config_command
from mammography.config.datacmd import DataCacheConfig, DataCheckConfig
from mammography.config.synth import SynthConfig
from mammography.config.train import TrainConfig

app = typer.Typer(
    name="mammography",
    help="Reproducible breast-density (BI-RADS A-D) research on screening mammograms. "
         "Every run writes a self-contained results_N directory: summary.json, run.log, "
         "data manifest, models, metrics and plots.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)



def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"mammography {version('mammography')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                 help="Show the installed version and exit."),
) -> None:
    """Reproducible breast-density research on screening mammograms."""


add_config_command(
    app, "synth", SynthConfig, "mammography.data.synthetic:run_synth",
    "Generate a synthetic screening dataset (real DICOM files, CSV labels) for demos and tests.",
    config_file_option=False,
)
add_config_command(
    app, "train-density", TrainConfig, "mammography.engine.train_density:run_train_density",
    "Train a breast-density classifier (BI-RADS A-D) on DICOM mammograms; writes "
    "results_N with summary.json, run.log, data manifest, best_model.pt, history, metrics, "
    "predictions and plots. --cv-folds k for cross-validation, --resume to continue.",
)

data_app = typer.Typer(help="Audit a dataset, or build its decode-once image cache.",
                       no_args_is_help=True, rich_markup_mode=None)
app.add_typer(data_app, name="data")
add_config_command(
    data_app, "check", DataCheckConfig, "mammography.data.audit:run_check",
    "Audit a labels CSV and its DICOM files: classes, exams, patients, views, and every "
    "excluded or unreadable item with the reason. Exit 0 when the data is usable.",
)
add_config_command(
    data_app, "cache", DataCacheConfig, "mammography.data.audit:run_cache",
    "Decode and preprocess every image once into the on-disk cache (parallel), ahead of "
    "training jobs.",
)


def main() -> None:
    app()
