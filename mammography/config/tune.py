"""Settings of `mammography tune`: every train-density setting, plus the search's own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from mammography.config.core import setting
from mammography.config.train import TrainConfig
from mammography.record.contract import HYPERPARAMETER_SEARCH, is_run_dir

METRICS = ("val_kappa", "val_acc", "val_f1", "val_auc", "val_balanced_acc", "val_loss",
           "val_exam_kappa", "val_exam_acc", "val_exam_auc")


@dataclass
class TuneConfig(TrainConfig):
    # A search, not a model: its trials are the density_classification runs.
    EXPERIMENT_TYPE: ClassVar[str] = HYPERPARAMETER_SEARCH
    DISTRIBUTED: ClassVar[bool] = False  # trials are the unit of parallelism here
    INTEGRATION_OPTIONS: ClassVar[bool] = False

    outdir: Path = setting(Path("outputs/hpo"), "Root of the tune run directories; each "
                           "trial is a train-density run inside its tune run.", metavar="DIR",
                           record=False, group="output")
    resume: Path | None = setting(None, "Continue a killed or finished search: a tune run "
                                  "directory (results_N). Optuna: the same study and storage; "
                                  "finished trials are not run again, the trials the kill "
                                  "interrupted are marked failed and new ones drawn until the "
                                  "study has --n-trials. Ray: the completed trials are taken "
                                  "over and only the missing ones run.", metavar="RUN_DIR",
                                  group="output")
    n_trials: int = setting(20, "Finished (complete or pruned) trials the study should have, "
                            "counting earlier and other workers' trials of the same study.",
                            group="training")
    study_name: str = setting("density", "Optuna study name (workers sharing --storage "
                              "and this name share one study).", group="integration")
    storage: str | None = setting(None, "Where the Optuna study lives (default: "
                                  "sqlite:///<tune run>/study.db, one machine). Several "
                                  "machines: postgresql://USER@HOST/DB or mysql://USER@HOST/DB "
                                  "(a database server), or journal:PATH (a file on a shared "
                                  "file system); SQLite is unsafe on NFS.", metavar="URL",
                                  record=False, group="integration")
    search_space: Path | None = setting(None, "YAML search space: train-density settings "
                                        "mapped to distributions (default: the built-in one, "
                                        "mammography/config/search_space.yaml; copy it to "
                                        "start your own).", metavar="FILE",
                                        group="training")
    metric: Literal[METRICS] = setting("val_kappa", "What the study optimises: best value "
                                       "over epochs (val_loss is minimised).",
                                       group="training")
    timeout: float | None = setting(None, "Stop starting new trials after this many seconds.",
                                    group="training")
    engine: Literal["optuna", "ray"] = setting("optuna", "Run trials in this process with "
                                               "Optuna, or as Ray Tune trials.",
                                               group="integration")
    pruner: Literal["median", "none"] = setting("median", "Stop unpromising trials early "
                                                "(median of earlier trials at the same epoch).",
                                                group="training")
    ray_scheduler: Literal["fifo", "asha"] = setting("fifo", "Ray Tune trial scheduler.",
                                                     group="integration")
    # train-density's --resume check of the data; a resumed study does not make one.
    trust_memo: bool = setting(False, "Unused by tune.", cli=False, record=False,
                               group="data")
    cpus_per_trial: int = setting(1, "Ray: CPUs reserved per trial.", record=False,
                                  group="integration")
    gpus_per_trial: float = setting(0.0, "Ray: GPUs reserved per trial.", record=False,
                                    group="integration")

    def problems(self) -> list[str]:
        found = self.training_problems()
        if self.n_trials < 1:
            found.append(f"--n-trials must be at least 1, got {self.n_trials}")
        if self.timeout is not None and self.timeout <= 0:
            found.append(f"--timeout must be positive, got {self.timeout}")
        if self.cpus_per_trial < 1 or self.gpus_per_trial < 0:
            found.append("--cpus-per-trial must be at least 1 and --gpus-per-trial 0 or more")
        if self.cv_folds and self.metric.startswith("val_exam"):
            found.append(f"--metric {self.metric} is not available with --cv-folds; use "
                         "val_kappa, val_acc, val_f1 or val_auc")
        if self.resume is not None and not is_run_dir(self.resume):
            found.append(f"--resume {self.resume} is not a tune run directory")
        if self.engine == "ray":
            import importlib.util

            if importlib.util.find_spec("ray") is None:
                found.append("--engine ray needs Ray: pip install 'mammography[ray]'")
        if self.engine == "optuna":
            from mammography.config.storage import storage_problems

            found += storage_problems(self.storage)
        elif self.storage is not None:
            found.append("--storage is for --engine optuna (Ray Tune keeps its trials in "
                         "its own experiment folder)")
        if self.search_space is not None and not self.search_space.is_file():
            found.append(f"--search-space {self.search_space} does not exist")
        else:
            from mammography.config.search_space import load_search_space

            try:
                load_search_space(self.search_space)
            except ValueError as exc:
                found.append(str(exc))
        return found
