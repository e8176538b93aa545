"""The ``mammography`` command-line entry point.

Each command is declared in one line here: its name, its config dataclass
(the options), and the function that runs it, imported only when it runs.
Nothing heavy (torch, pydicom, numpy) is imported to show ``--help``.
"""

from __future__ import annotations

import typer

from mammography.cli.options import add_config_command
from mammography.config.synth import SynthConfig

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


def main() -> None:
    app()
