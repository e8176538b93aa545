"""Settings of `mammography train-density` (option names are a contract: sweeps use them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from mammography.config.backbone import BackboneWeightsOptions
from mammography.config.core import flag_name, setting, to_record
from mammography.config.data import ImageConfig, LoaderOptions
from mammography.record.contract import (
    LAST_CHECKPOINT_FILE,
    SUMMARY_FILE,
    is_run_dir,
)
from mammography.record.view import RunFiles, RunView

#: Settings a continued cross-validation may change: where the data lives (its
#: manifest digest must not change), how images are cached, the device.
CV_RESUME_MAY_CHANGE = frozenset({"resume", "based_on", "csv", "dicom_root", "cache", "device",
                                  "cv_folds"})


def _count(value: Any) -> int | None:
    """A recorded whole number (a bool is none)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def resume_target(resumed: RunView | None) -> tuple[str, int | None]:
    """What ``--resume`` continues, from the view of the run it names.

    ``("fold", k)``: fold k of a cross-validation (its ``fold_k/results``, or a run
    that already continued one), continued as a single run; ``("cv", k)``: a
    k-fold cross-validation parent, continued fold by fold; ``("run", None)``: a
    single training run (also when there is no readable summary, ``None``: the
    other checks then say what is wrong).
    """
    if resumed is None:
        return "run", None
    if resumed.fold is not None:
        return "fold", resumed.fold
    if resumed.is_cv_parent:
        return "cv", resumed.num_folds
    return "run", None


def continued_fold(resumed: RunView | None) -> int | None:
    """The CV fold that ``--resume`` continues as a single run (None: not a fold)."""
    kind, fold = resume_target(resumed)
    return fold if kind == "fold" else None


def cross_validates(cfg: TrainConfig, resumed: RunView | None) -> bool:
    """k folds to train (``--cv-folds``), not one fold of them being continued
    (``resumed``: the view of the run ``cfg.resume`` names)."""
    return bool(cfg.cv_folds) and continued_fold(resumed) is None


@dataclass
class TrainConfig(BackboneWeightsOptions, LoaderOptions, ImageConfig):
    EXPERIMENT_TYPE: ClassVar[str] = "density_classification"
    # Runs under `torchrun --nproc-per-node N -m mammography train-density` (DDP).
    DISTRIBUTED: ClassVar[bool] = True
    # `--resume RUN_DIR` starts from that run's config.yaml (options given override it).
    RESUME_FIELD: ClassVar[str] = "resume"
    # --optuna-trial-id / --ray-trial-name: recorded in the run's integration (cli/options.py).
    INTEGRATION_OPTIONS: ClassVar[bool] = True

    outdir: Path = setting(Path("outputs/density"), "Root of the run directories "
                           "(results_N is created inside).", metavar="DIR", record=False,
                           group="output")
    arch: str = setting("efficientnet_b0", "Backbone: any timm model name (efficientnet_b0, "
                        "resnet50, convnext_tiny, test_efficientnet, ...).", group="model")
    epochs: int = setting(20, "Training epochs.", group="training")
    batch_size: int = setting(16, "Images per training batch.", group="training")
    lr: float = setting(1e-4, "Learning rate of the head (the backbone gets lr x "
                        "--backbone-lr-ratio).", group="training")
    weight_decay: float = setting(1e-4, "Weight decay.", group="training")
    optimizer: Literal["adam", "adamw", "sgd"] = setting("adam", "Optimizer.", group="training")
    scheduler: Literal["cosine", "step", "plateau", "none"] = setting(
        "cosine", "Learning-rate schedule after warm-up.", group="training")
    warmup_epochs: int = setting(2, "Epochs of linear learning-rate warm-up.", group="training")
    class_weights: str = setting("auto", "Loss weights per class: auto (inverse frequency in "
                                 "the training split), none, or four numbers w1,w2,w3,w4.",
                                 group="training")
    freeze_backbone: bool = setting(False, "Train only the head (and, with "
                                    "--unfreeze-last-block, the backbone's last stage).",
                                    group="model")
    unfreeze_last_block: bool = setting(False, "With --freeze-backbone: also train the "
                                        "backbone's last stage.", group="model")
    backbone_lr_ratio: float = setting(1.0, "Backbone learning rate as a fraction of --lr.",
                                       group="training")
    train_augment: bool = setting(True, "Augment training batches (vertical flip, rotation, "
                                  "scale, brightness/contrast).", group="training")
    grad_clip: float = setting(1.0, "Clip the gradient norm to this value (0 = off).",
                               group="training")
    early_stop_patience: int = setting(5, "Stop after this many epochs without a better "
                                       "validation kappa (0 = never).", group="training")
    val_fraction: float = setting(0.2, "Share of patients in the validation split.",
                                  group="training")
    cv_folds: int = setting(0, "k-fold cross-validation with patient-grouped, stratified "
                            "folds (0 = one train/validation split).", group="training")
    cv_workers: int = setting(1, "Train this many CV folds at once, each in its own process "
                              "(threads split between them).", record=False,
                              group="training")
    cv_engine: Literal["local", "ray"] = setting(
        "local", "Run parallel folds as local processes or as Ray tasks (--ray-address).",
        record=False, group="integration")
    ray_address: str | None = setting(None, "Ray cluster to join (default: start a local "
                                      "Ray instance).", record=False, group="integration")
    seed: int = setting(42, "Random seed: splits, initialisation, data order, augmentation.",
                        group="training")
    embeddings_dir: Path | None = setting(
        None, "Fuse precomputed embeddings: a results_N of `mammography embed`, or a folder of "
        "them (the latest completed one is used).", metavar="DIR", group="model")
    resume: Path | None = setting(None, "Continue a stopped run from its last_checkpoint.pt, "
                                  "in a new run directory: a single run, a CV fold (its "
                                  "fold_k/results) or a whole cross-validation (finished folds "
                                  "reused, the interrupted one continued). A finished run "
                                  "continues only with a larger --epochs.",
                                  metavar="RUN_DIR", group="output")
    based_on: Path | None = setting(None, "Record that this run derives from RUN_DIR "
                                    "(lineage).", metavar="RUN_DIR", record=False,
                                    group="output")
    trust_memo: bool = setting(False, "With --resume: take file checksums from the checksum "
                               "memo (keyed by path, size, mtime, ctime, inode, device) "
                               "instead of hashing every image again to prove the data "
                               "unchanged. Faster; recorded.", record=False, group="data")

    def problems(self) -> list[str]:
        found = self.training_problems()
        if self.resume is None or not is_run_dir(self.resume):
            return found
        # Read here to validate only: the engine opens the run itself (TrainedRun).
        resumed = RunView.try_read(self.resume)
        kind, folds = resume_target(resumed)
        if kind != "cv" and not RunFiles(self.resume).last_checkpoint.is_file():
            found.append(f"--resume {self.resume} has no {LAST_CHECKPOINT_FILE} to continue "
                         "from")
        if kind == "run" and self.cv_folds:
            found.append(f"--resume {self.resume} continues a single run, not a "
                         f"cross-validation; leave out --cv-folds (or start a new run)")
        if kind == "cv" and self.cv_folds != folds:
            found.append(f"--resume {self.resume} continues its {folds}-fold "
                         f"cross-validation; --cv-folds {self.cv_folds} cannot change that "
                         "(leave it out, or start a new run)")
        if kind == "cv" and resumed is not None:
            found += self._changed_cv_settings(resumed.hyperparameters)
        if resumed is not None and resumed.status == "completed":
            found += self._finished_problems(resumed, kind)
        return found

    def _finished_problems(self, resumed: RunView, kind: str) -> list[str]:
        """A completed run continues only where it has epochs left to train: a larger
        ``--epochs`` (and, after early stopping, a patience that lets it go on).
        Otherwise the resumed run would be a "completed" run that trained nothing."""
        where = f"--resume {self.resume}"
        if kind == "cv":
            return [f"{where}: that cross-validation completed (all {resumed.num_folds} folds "
                    "finished), so there is nothing to continue, and its settings cannot "
                    "change (--epochs included). Start a new run to train longer, or evaluate "
                    f"it: mammography eval-export --run {self.resume}"]
        results = resumed.section("results")
        done = _count(results.get("epochs_completed"))
        if done is None:
            done = _count(resumed.hyperparameters.get("epochs"))
        if done is None:
            return []
        if results.get("stopped_by"):
            return [f"{where}: that run was stopped after epoch {done} "
                    f"({results['stopped_by']}) and trains no further; start a new run"]
        if self.epochs <= done:
            return [f"{where}: that run completed {done} epochs, so resuming it with --epochs "
                    f"{self.epochs} would train nothing. Give a larger --epochs to train it "
                    f"longer (e.g. --epochs {2 * done}), or evaluate it as it is: "
                    f"mammography eval-export --run {self.resume}"]
        best = _count(results.get("best_epoch"))
        patience = self.early_stop_patience
        if best is not None and patience and done - best >= patience:
            # fit() would find its patience used up and stop before the first new epoch.
            return [f"{where}: that run's validation kappa has not improved since epoch "
                    f"{best} of {done}, so with --early-stop-patience {patience} it would "
                    "stop again at once. Give a larger --early-stop-patience (0 = never) as "
                    "well as a larger --epochs"]
        return []

    def _changed_cv_settings(self, recorded: Mapping[str, Any]) -> list[str]:
        """A continued cross-validation keeps the settings its finished folds were
        trained with (``recorded``): each fold's result must be one of the same
        experiment."""
        return [f"--resume {self.resume} continues a cross-validation with the settings "
                f"its finished folds were trained with: {flag_name(type(self), key)} "
                f"{value!r} differs from the run's {recorded[key]!r} (leave it out, or start "
                "a new run)"
                for key, value in to_record(self).items()
                if key not in CV_RESUME_MAY_CHANGE and key in recorded
                and value != recorded[key]]

    def training_problems(self) -> list[str]:
        """Everything but the meaning of --resume (which `tune` gives its own)."""
        found = self.group_problems()
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                found.append(f"--{name.replace('_', '-')} must be at least 1, got "
                             f"{getattr(self, name)}")
        if self.lr <= 0:
            found.append(f"--lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            found.append(f"--weight-decay must be 0 or more, got {self.weight_decay}")
        if not 0 < self.backbone_lr_ratio <= 10:
            found.append(f"--backbone-lr-ratio must be in (0, 10], got {self.backbone_lr_ratio}")
        if self.warmup_epochs < 0 or self.early_stop_patience < 0 or self.grad_clip < 0:
            found.append("--warmup-epochs, --early-stop-patience and --grad-clip must be 0 "
                         "or more")
        if not 0.05 <= self.val_fraction <= 0.5:
            found.append(f"--val-fraction must be between 0.05 and 0.5, got {self.val_fraction}")
        if self.cv_workers < 1:
            found.append(f"--cv-workers must be at least 1, got {self.cv_workers}")
        if self.cv_engine == "ray":
            import importlib.util

            if importlib.util.find_spec("ray") is None:
                found.append("--cv-engine ray needs Ray: pip install 'mammography[ray]'")
        if self.cv_folds == 1 or self.cv_folds < 0 or self.cv_folds > 20:
            found.append(f"--cv-folds must be 0 (off) or 2-20, got {self.cv_folds}")
        if self.unfreeze_last_block and not self.freeze_backbone:
            found.append("--unfreeze-last-block only makes sense with --freeze-backbone")
        try:
            self.parsed_class_weights()
        except ValueError as exc:
            found.append(str(exc))
        for name in ("resume", "based_on"):
            path = getattr(self, name)
            if path is not None and not is_run_dir(path):
                found.append(f"--{name.replace('_', '-')} {path} is not a run directory "
                             f"(no {SUMMARY_FILE})")
        if self.embeddings_dir is not None and not self.embeddings_dir.is_dir():
            found.append(f"--embeddings-dir {self.embeddings_dir} does not exist")
        return found

    def costly_problems(self) -> list[str]:
        """``--arch``: asking timm imports torch (seconds), so it is checked last."""
        from mammography.models.arch import unknown_arch

        problem = unknown_arch(self.arch)
        return [problem] if problem else []

    def parsed_class_weights(self) -> str | list[float]:
        """``"auto"``, ``"none"`` or four positive floats."""
        text = self.class_weights.strip().lower()
        if text in ("auto", "none"):
            return text
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            values = []
        if len(values) != 4 or any(v <= 0 for v in values):
            raise ValueError(f"--class-weights must be auto, none or four positive numbers "
                             f"like 1,1,0.5,1; got {self.class_weights!r}")
        return values

