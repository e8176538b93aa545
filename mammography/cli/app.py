"""The ``mammography`` command-line entry point.

Each command is declared in one line here: its name, its config dataclass
(the options), and the function that runs it, imported only when it runs.
Nothing heavy (torch, pydicom, numpy) is imported to show ``--help``.
"""

from __future__ import annotations

import typer

from mammography.cli.help import HelpGroup
from mammography.cli.options import add_config_command
from mammography.config.datacmd import DataCacheConfig, DataCheckConfig, DataPreviewConfig
from mammography.config.embed import EmbedConfig
from mammography.config.evaluate import EvalConfig
from mammography.config.predict import PredictConfig
from mammography.config.runs import (
    RunsArchiveConfig,
    RunsCleanConfig,
    RunsDiffConfig,
    RunsExportConfig,
    RunsLineageConfig,
    RunsListConfig,
    RunsLogConfig,
    RunsReproduceConfig,
    RunsShowConfig,
    RunsValidateConfig,
)
from mammography.config.synth import SynthConfig
from mammography.config.train import TrainConfig
from mammography.config.tune import TuneConfig

app = typer.Typer(
    name="mammography",
    help="Reproducible breast-density (BI-RADS A-D) research on screening mammograms. "
         "Every run writes a self-contained results_N directory: summary.json, run.log, "
         "data manifest, models, metrics and plots.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    cls=HelpGroup,
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
    examples=[
        "mammography synth --out data/synthetic --exams 100 --seed 42",
        "mammography synth --out data/synth_j2k --exams 20 --compression j2k \\\n"
        "    --class5 2",
    ],
)
add_config_command(
    app, "train-density", TrainConfig, "mammography.engine.train_density:run_train_density",
    "Train a breast-density classifier (BI-RADS A-D) on DICOM mammograms; writes "
    "results_N with summary.json, run.log, data manifest, best_model.pt, history, metrics, "
    "predictions and plots. --cv-folds k for cross-validation, --resume to continue.",
    examples=[
        "mammography train-density --config configs/demo.yaml --cv-folds 5",
        "mammography train-density --resume outputs/density/results_2 --epochs 30",
    ],
)
add_config_command(
    app, "embed", EmbedConfig, "mammography.engine.embed:run_embed",
    "Extract pooled backbone features of every image (features.npy + metadata.csv), with a "
    "PCA plot and a linear-probe baseline; the input of train-density --embeddings-dir.",
    examples=[
        "mammography embed --csv data/synthetic/classificacao.csv --arch resnet50 \\\n"
        "    --no-pretrained",
        "mammography embed --csv data/site_b/classificacao.csv \\\n"
        "    --weights data/weights/resnet50.safetensors",
    ],
)
add_config_command(
    app, "eval-export", EvalConfig, "mammography.engine.evaluate.recipe:run_eval_export",
    "Evaluate train-density runs (their validation split, or --csv data) with bootstrap "
    "95% CIs, compare several runs (CSV/Markdown/LaTeX), and export each model "
    "(TorchScript/ONNX) with its preprocessing settings.",
    examples=[
        "mammography eval-export --run outputs/density/results_2",
        "mammography eval-export --run outputs/density/results_2 \\\n"
        "    --run outputs/density/results_3 --run outputs/density/results_5 \\\n"
        "    --export onnx",
    ],
)
add_config_command(
    app, "predict", PredictConfig, "mammography.engine.predict.recipe:run_predict",
    "Assign density to new, unlabelled exams with a train-density run, the mean of a CV "
    "run's folds (or of several runs), or an exported ONNX model (--model): "
    "predictions_image/breast/exam.csv with prob_A..prob_D, the call, dense (C/D) and how "
    "many models voted; a WARNING when the images differ from the training data.",
    examples=[
        "mammography predict --run outputs/density/results_5 \\\n"
        "    --dicom-root data/new_exams/archive",
        "mammography predict --run outputs/density/results_2 \\\n"
        "    --run outputs/density/results_3 --csv data/new_exams/classificacao.csv \\\n"
        "    --tta",
    ],
)
add_config_command(
    app, "tune", TuneConfig, "mammography.hpo.tune:run_tune",
    "Hyper-parameter search (Optuna with an embedded SQLite study, or Ray Tune): every "
    "train-density option, plus --n-trials, --search-space, --metric, --engine. Each trial is "
    "a full train-density run inside the tune run; trials.csv, best_params.json and plots at "
    "the end. --resume RUN_DIR continues a killed study.",
    examples=[
        "mammography tune --config configs/tune.yaml",
        "mammography tune --resume outputs/hpo/results_1",
    ],
)

data_app = typer.Typer(help="Audit a dataset, preview what the model sees, or build "
                       "its decode-once image cache.",
                       no_args_is_help=True, rich_markup_mode="rich", cls=HelpGroup)
app.add_typer(data_app, name="data")
add_config_command(
    data_app, "check", DataCheckConfig, "mammography.data.audit:run_check",
    "Audit a labels CSV and its DICOM files: classes, exams, patients, views, and every "
    "excluded or unreadable item with the reason. Exit 0 when the data is usable.",
    examples=[
        "mammography data check --csv data/synthetic/classificacao.csv \\\n"
        "    --dicom-root data/synthetic/archive",
        "mammography data check --csv data/site_b/classificacao.csv --no-decode \\\n"
        "    --json outputs/audit.json",
    ],
)
add_config_command(
    data_app, "cache", DataCacheConfig, "mammography.data.audit:run_cache",
    "Decode and preprocess every image once into the on-disk cache (parallel), ahead of "
    "training jobs.",
    examples=[
        "mammography data cache --csv data/synthetic/classificacao.csv \\\n"
        "    --img-size 512 --workers 8",
        "mammography data cache --csv data/site_b/classificacao.csv \\\n"
        "    --img-size 1024x512",
    ],
)
add_config_command(
    data_app, "preview", DataPreviewConfig, "mammography.data.preview:run_preview",
    "What the model sees: DIR/montage.png (accession, view, laterality, label per image) and "
    "DIR/images/<accession>_<file stem>.png, 16-bit, exactly the preprocessed array, read "
    "through the same cache and preprocessing as training.",
    examples=[
        "mammography data preview --csv data/synthetic/classificacao.csv \\\n"
        "    --img-size 512x256 --limit 32 --overlay",
        "mammography data preview --csv data/site_b/classificacao.csv \\\n"
        "    --out outputs/preview_site_b",
    ],
)

runs_app = typer.Typer(help="Inspect, compare, check, reproduce, tidy and export run "
                       "directories (results_N). Reads runs; never creates one.",
                       no_args_is_help=True, rich_markup_mode="rich", cls=HelpGroup)
app.add_typer(runs_app, name="runs")
add_config_command(
    runs_app, "list", RunsListConfig, "mammography.runs.listing:run_list",
    "Every run under ROOT... (default outputs/) as a table: path, type, status (crashed "
    "when a running run's process is gone), start, duration, git, seed, kappa, accuracy. "
    "--where, --sort, --limit; --json or --csv for scripts.",
    config_file_option=False,
    examples=[
        "mammography runs list",
        "mammography runs list --where 'hyperparameters.arch~resnet' \\\n"
        "    --column hyperparameters.arch",
    ],
)
add_config_command(
    runs_app, "show", RunsShowConfig, "mammography.runs.show:run_show",
    "One run at a glance: status, times, command line, git, seed, hyperparameters, data "
    "digest, results, artifacts with sizes, warnings and the last log lines.",
    config_file_option=False,
    examples=[
        "mammography runs show outputs/density/results_5",
        "mammography runs show outputs/density/results_5 --lines 30",
    ],
)
add_config_command(
    runs_app, "diff", RunsDiffConfig, "mammography.runs.diff:run_diff",
    "Key-by-key differences of two runs' summaries (settings, data, git, environment, "
    "results); noise such as pids and timestamps only with --all.",
    config_file_option=False,
    examples=[
        "mammography runs diff outputs/density/results_2 outputs/density/results_3",
        "mammography runs diff outputs/density/results_2 outputs/density/results_3 \\\n"
        "    --all",
    ],
)
add_config_command(
    runs_app, "lineage", RunsLineageConfig, "mammography.runs.lineage:run_lineage",
    "The runs RUN is based on (resume, evaluation, fusion, reproduce), and the runs "
    "derived from it, as a tree.",
    config_file_option=False,
    examples=[
        "mammography runs lineage outputs/density/results_2",
        "mammography runs lineage outputs/density/results_2 \\\n"
        "    --root outputs/density --root outputs/evaluations",
    ],
)
add_config_command(
    runs_app, "log", RunsLogConfig, "mammography.runs.log:run_log",
    "Print a run's run.log, optionally filtered (--grep) and shortened (--tail).",
    config_file_option=False,
    examples=[
        "mammography runs log outputs/density/results_5 --grep 'New best model'",
        "mammography runs log outputs/density/results_5 --grep '(?i)warning' --tail 20",
    ],
)
add_config_command(
    runs_app, "reproduce", RunsReproduceConfig, "mammography.runs.reproduce:run_reproduce",
    "Check code, data and environment against RUN's record, warn on each difference, and "
    "re-run its command line (a new run based_on RUN). --dry-run only checks.",
    config_file_option=False,
    examples=[
        "mammography runs reproduce outputs/density/results_2 --dry-run",
        "mammography runs reproduce outputs/density/results_2",
    ],
)
add_config_command(
    runs_app, "validate", RunsValidateConfig, "mammography.runs.validate:run_validate",
    "Check every run under ROOT: summary.json against the schemas, required artifacts, "
    "readable JSON. One line per problem; exit 1 when any.",
    config_file_option=False,
    examples=[
        "mammography runs validate outputs",
        "mammography runs validate outputs/density --no-index",
    ],
)
add_config_command(
    runs_app, "clean", RunsCleanConfig, "mammography.runs.clean:run_clean",
    "Apply the retention policy (failed runs after 7 days, exploratory after 30, "
    "non-best HPO trials); keeps CV runs, runs others are based on, runs with a KEEP "
    "file, running runs. Lists only, unless --yes.",
    config_file_option=False,
    examples=[
        "mammography runs clean",
        "mammography runs clean --yes",
    ],
)
add_config_command(
    runs_app, "archive", RunsArchiveConfig, "mammography.runs.archive:run_archive",
    "Pack run directories into a new .tar.gz (paths relative to their common parent).",
    config_file_option=False,
    examples=[
        "mammography runs archive outputs/density/results_5 --to outputs/cv_run.tar.gz",
        "mammography runs archive outputs/density/results_2 \\\n"
        "    outputs/density/results_3 --to outputs/paper_runs.tar.gz",
    ],
)
add_config_command(
    runs_app, "export", RunsExportConfig, "mammography.runs.export.command:run_export",
    "Export runs to MLflow (--to mlflow) or TensorBoard (--to tensorboard --logdir DIR): "
    "params, per-epoch metrics, results, tags, artifacts. Needs mammography[export].",
    config_file_option=False,
    examples=[
        "mammography runs export outputs --to mlflow",
        "mammography runs export outputs --to tensorboard --logdir outputs/tb \\\n"
        "    --where status==completed",
    ],
)


def main() -> None:
    app()
