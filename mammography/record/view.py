"""A run directory, typed: what kind of run it is, what it links to, where its files are.

Everything that reads run directories (``mammography runs``, ``--resume``,
eval-export, predict, fusion) asks a :class:`RunView` instead of indexing
summary.json by string keys, so the layout of a run directory is interpreted
in one place -- this module. The model is MLflow's ``RunInfo`` (identity and
status of a run, apart from its data) and timm's ``CheckpointSaver`` (the
object that writes the files owns their names): :class:`RunFiles` names the
files of one run directory, for the code that writes them as much as for the
code that reads them; a :class:`RunView` is those files plus what the run's
summary says about it.

A view is built once from a summary -- the whole summary.json, or the pruned
summary `runs list/validate/clean` keep of it (``runs/projection.py``): each
accessor reads only the paths named next to it (``KIND_PATHS`` for the kind),
so a pruned summary with those paths answers the same. The view holds the
summary, never copies it, and never changes it.

Kinds of run (``kind``), decided in this order:

=============  ===========================================================
``fold``       CV fold k's run (``integration.cv_fold``), also once ``--resume``
               continued it as a single run
``cv_parent``  a ``train-density --cv-folds k`` run: its folds are child runs, or
               runs of the cross-validation it continued (``fold_run_dirs``)
``trial``      a `tune` trial: a train-density child run with
               ``integration.optuna_trial_id`` or ``ray_trial_name`` (a trial that
               cross-validates is a ``cv_parent``; ``trial`` still names it)
``single``     a train-density run on one train/validation split
``tune``       a `tune` run (a search; its trials are child runs)
``embed``      `embed`
``eval``       `eval-export`
``predict``    `predict`
``unknown``    a summary that names none of these
=============  ===========================================================

Standard library only: the run layer stays light (``mammography --help``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from mammography.record.contract import (
    BEST_MODEL_FILE,
    CONFIG_FILE,
    CV_RECORD,
    CV_SUMMARY_FILE,
    EVAL_MODELS_DIR,
    EXPORT_DIR,
    FEATURES_FILE,
    FOLD_REUSED,
    FOLD_TRAINED,
    HISTORY_CSV,
    HISTORY_JSON,
    HYPERPARAMETER_SEARCH,
    LAST_CHECKPOINT_FILE,
    LOG_FILE,
    MANIFEST_FILE,
    METADATA_FILE,
    PREPROCESSING_CARD,
    SPLITS_FILE,
    SUMMARY_FILE,
    VAL_METRICS_JSON,
    VAL_PREDICTIONS,
    SummaryUnreadable,
    fold_dir,
    is_run_dir,
    read_summary,
)

SINGLE, CV_PARENT, FOLD, TRIAL = "single", "cv_parent", "fold", "trial"
TUNE, EMBED, EVAL, PREDICT, UNKNOWN = "tune", "embed", "eval", "predict", "unknown"
KINDS = (SINGLE, CV_PARENT, FOLD, TRIAL, TUNE, EMBED, EVAL, PREDICT, UNKNOWN)

TRAIN_COMMAND = "train-density"
#: The experiment types of the commands (their summary's ``experiment_type``).
DENSITY, EMBEDDING, EVALUATION = ("density_classification", "embedding_extraction",
                                  "evaluation")
#: A run's kind by its command, and by its experiment type for a summary without one.
_BY_COMMAND = {"tune": TUNE, "embed": EMBED, "eval-export": EVAL, "predict": PREDICT,
               TRAIN_COMMAND: SINGLE}
_BY_EXPERIMENT = {HYPERPARAMETER_SEARCH: TUNE, EMBEDDING: EMBED, EVALUATION: EVAL,
                  DENSITY: SINGLE}

#: The summary paths ``is_cv_parent`` (and ``fold``) read, and those ``kind`` (and
#: ``is_trial``) read: a pruned summary (runs/projection.py) with them answers as the
#: whole summary does.
CV_PARENT_PATHS = ("command", "experiment_type", "integration.cv_fold",
                   "hyperparameters.cv_folds", "results.num_folds")
KIND_PATHS = (*CV_PARENT_PATHS, "integration.optuna_trial_id", "integration.ray_trial_name")


def _count(value: Any) -> int | None:
    """A recorded integer (a bool is no count)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


_EMPTY: Mapping[str, Any] = {}


def _section(summary: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = summary.get(name)
    if isinstance(value, dict):  # parsed JSON: the common case, and a cheap test
        return value
    return value if isinstance(value, Mapping) else _EMPTY


# Small immutable records: NamedTuples, which cost a twentieth of a dataclass to define
# (this module is imported by every `runs` command and must not slow their start).
class Link(NamedTuple):
    """One ``based_on`` entry: the run this one derives from, and how."""

    run_dir: str
    run_id: str | None
    relation: str | None
    record: Mapping[str, Any]  # the entry as recorded (git_commit, ...)


class Artifact(NamedTuple):
    """One file a run recorded in ``artifacts``: its path (relative to the run), size,
    and sha256 where the summary records one (record/digests.py): ``pending_sha256``
    while the run was replacing it, and for a checkpoint taken over by ``--resume``
    the run it came through (``adopted_from``) and the run id it carries."""

    path: str
    bytes: int | None = None
    sha256: str | None = None
    pending_sha256: str | None = None
    adopted_from: Mapping[str, Any] | None = None
    checkpoint_run_uid: str | None = None


class FoldRecord(NamedTuple):
    """One fold of a CV parent's ``cross_validation`` record (written before the first
    fold trains): how it came about and where its run is."""

    fold: int
    origin: str  # contract.FOLD_ORIGINS
    path: str | None  # relative to the parent
    run_dir: str | None  # absolute, as recorded
    continued_from: str | None = None
    run_id: str | None = None  # a reused fold's
    metrics_sha256: str | None = None  # a reused fold's metrics/val_metrics.json

    @property
    def reused(self) -> bool:
        return self.origin == FOLD_REUSED


class _ReadOnly:
    """Attributes set once, in ``__init__``: a frozen object without the cost of a
    frozen dataclass (`runs clean` makes several views of each of 100,000 runs)."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")


class RunFiles(_ReadOnly):
    """The files of one run directory, by what they are (writers and readers alike)."""

    __slots__ = ("location",)
    #: The run directory as given: `runs` keeps 100,000 folders as text, and most of
    #: what it asks a view needs no Path (``dir`` makes one when asked).
    location: Path | str

    def __init__(self, location: Path | str) -> None:
        object.__setattr__(self, "location", location)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.location)!r})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(str(self.location))

    def _key(self) -> tuple[Any, ...]:
        return (str(self.location),)

    @property
    def dir(self) -> Path:
        location = self.location
        return location if isinstance(location, Path) else Path(location)

    @property
    def summary_file(self) -> Path:
        return self.dir / SUMMARY_FILE

    @property
    def log(self) -> Path:
        return self.dir / LOG_FILE

    @property
    def config_file(self) -> Path:
        return self.dir / CONFIG_FILE

    @property
    def manifest(self) -> Path:
        return self.dir / MANIFEST_FILE

    @property
    def best_model(self) -> Path:
        return self.dir / BEST_MODEL_FILE

    @property
    def last_checkpoint(self) -> Path:
        return self.dir / LAST_CHECKPOINT_FILE

    @property
    def splits(self) -> Path:
        return self.dir / SPLITS_FILE

    @property
    def history_csv(self) -> Path:
        return self.dir / HISTORY_CSV

    @property
    def history_json(self) -> Path:
        return self.dir / HISTORY_JSON

    @property
    def val_metrics(self) -> Path:
        return self.dir / VAL_METRICS_JSON

    @property
    def val_predictions(self) -> Path:
        return self.dir / VAL_PREDICTIONS

    @property
    def cv_summary(self) -> Path:
        return self.dir / CV_SUMMARY_FILE

    @property
    def features(self) -> Path:
        return self.dir / FEATURES_FILE

    @property
    def metadata(self) -> Path:
        return self.dir / METADATA_FILE

    def fold_dir(self, fold: int) -> Path:
        """Where CV fold ``fold`` (1-based) trains in this run: ``fold_<k>/results``."""
        return fold_dir(self.dir, fold)

    def model_dir(self, label: str) -> Path:
        """eval-export's outputs for one model: ``models/<label>``."""
        return self.dir / EVAL_MODELS_DIR / label

    def export_dir(self, label: str) -> Path:
        """eval-export's portable export of one model: ``models/<label>/export``."""
        return self.model_dir(label) / EXPORT_DIR

    def preprocessing_card(self, label: str) -> Path:
        """The input card beside one exported model (`predict --model` reads it)."""
        return self.export_dir(label) / PREPROCESSING_CARD


class RunView(RunFiles):
    """One run directory as its summary describes it; read-only (see the module doc)."""

    __slots__ = ("summary",)
    summary: Mapping[str, Any]  # held, never copied or changed

    def __init__(self, location: Path | str, summary: Mapping[str, Any]) -> None:
        super().__init__(location)
        object.__setattr__(self, "summary", summary)

    def _key(self) -> tuple[Any, ...]:
        return (str(self.location), self.summary)

    @classmethod
    def read(cls, run_dir: Path | str) -> RunView:
        """The view of ``run_dir`` from its summary.json (``SummaryUnreadable`` saying why
        not)."""
        return cls(Path(run_dir), read_summary(Path(run_dir)))

    @classmethod
    def try_read(cls, run_dir: Path | str) -> RunView | None:
        """``read``, or None when there is no readable summary.json."""
        try:
            return cls.read(run_dir)
        except SummaryUnreadable:
            return None

    # ------------------------------------------------------------ identity (RunInfo)
    def _text(self, key: str) -> str | None:
        value = self.summary.get(key)
        return value if isinstance(value, str) else None

    @property
    def run_id(self) -> str | None:
        return self._text("run_id")

    @property
    def run_uid(self) -> str | None:
        """The run's unique id (``run_id`` repeats across outdirs and child runs); None
        for a run recorded before run ids and file digests."""
        return self._text("run_uid")

    @property
    def records_digests(self) -> bool:
        """Whether the run records the sha256 of every file a later command loads (runs
        written since run ids: record/digests.py)."""
        return self.run_uid is not None

    @property
    def command(self) -> str | None:
        return self._text("command")

    @property
    def experiment_type(self) -> str | None:
        return self._text("experiment_type")

    @property
    def status(self) -> str | None:
        """The status the summary records (`runs` tells crashed runs apart: discover.py)."""
        return self._text("status")

    @property
    def git_commit(self) -> str | None:
        return self._text("git_commit")

    @property
    def recorded_run_dir(self) -> str | None:
        """The absolute path the run had when it was written (``run_dir``)."""
        value = self.summary.get("run_dir")
        return value if isinstance(value, str) and value else None

    # ------------------------------------------------------------ kind
    @property
    def fold(self) -> int | None:
        """The CV fold (1-based) this run trains, from ``integration.cv_fold``."""
        return _count(_section(self.summary, "integration").get("cv_fold"))

    @property
    def optuna_trial_id(self) -> Any:
        return _section(self.summary, "integration").get("optuna_trial_id")

    @property
    def ray_trial_name(self) -> str | None:
        value = _section(self.summary, "integration").get("ray_trial_name")
        return None if value is None else str(value)

    @property
    def is_trial(self) -> bool:
        """A tune trial's run (whatever else it is: a trial may cross-validate)."""
        return self.optuna_trial_id is not None or self.ray_trial_name is not None

    @property
    def is_cv_parent(self) -> bool:
        """A cross-validation's parent run: not a fold, and either its results count
        folds (it finished) or it is a train-density run set to k folds."""
        if self.fold is not None:
            return False
        if "num_folds" in _section(self.summary, "results"):
            return True
        folds = _count(_section(self.summary, "hyperparameters").get("cv_folds"))
        return folds is not None and folds >= 1 and self._trains()

    def _trains(self) -> bool:
        command = self.command
        if command is not None:
            return command == TRAIN_COMMAND
        return self.experiment_type == DENSITY

    @property
    def kind(self) -> str:
        """One of ``KINDS`` (the module docstring says what each is)."""
        if self.fold is not None:
            return FOLD
        if self.is_cv_parent:
            return CV_PARENT
        if self.is_trial:
            return TRIAL
        command = self.command
        if command is not None:
            return _BY_COMMAND.get(command, UNKNOWN)
        return _BY_EXPERIMENT.get(self.experiment_type or "", UNKNOWN)

    @property
    def trains_models(self) -> bool:
        """A train-density run of any kind (single, CV parent, fold, trial)."""
        return self.kind in (SINGLE, CV_PARENT, FOLD, TRIAL)

    # ------------------------------------------------------------ cross-validation
    @property
    def num_folds(self) -> int:
        """A CV parent's k: its results' ``num_folds``, else its ``cross_validation``
        record's, else its ``--cv-folds`` setting (0 when none says)."""
        for value in (_section(self.summary, "results").get("num_folds"),
                      _section(self.summary, CV_RECORD).get("num_folds"),
                      _section(self.summary, "hyperparameters").get("cv_folds")):
            count = _count(value)
            if count:
                return count
        return 0

    @property
    def fold_records(self) -> tuple[FoldRecord, ...]:
        """The folds as the parent recorded them before training (``cross_validation``)."""
        found = []
        for entry in _section(self.summary, CV_RECORD).get("folds") or []:
            if not isinstance(entry, Mapping) or _count(entry.get("fold")) is None:
                continue
            found.append(FoldRecord(
                fold=entry["fold"], origin=str(entry.get("origin") or FOLD_TRAINED),
                path=_optional_text(entry.get("path")), run_dir=_optional_text(
                    entry.get("run_dir")),
                continued_from=_optional_text(entry.get("continued_from")),
                run_id=_optional_text(entry.get("run_id")),
                metrics_sha256=_optional_text(entry.get("metrics_sha256"))))
        return tuple(found)

    def fold_record(self, fold: int) -> FoldRecord | None:
        return next((r for r in self.fold_records if r.fold == fold), None)

    @property
    def resumed_from(self) -> str | None:
        """The CV parent this one continued (its ``cross_validation.resumed_from``)."""
        return _optional_text(_section(self.summary, CV_RECORD).get("resumed_from"))

    def fold_run_dir(self, fold: int) -> Path | None:
        """Where fold ``fold`` of this CV parent ran: its own ``fold_k/results``, or the
        run it reused from the cross-validation it continued (found by the recorded
        relative path first: the tree may have moved); None when it is gone."""
        own = self.fold_dir(fold)
        if is_run_dir(own):
            return own
        record = self.fold_record(fold)
        if record is None or not record.reused:
            return None
        candidates = [Path(os.path.normpath(self.dir / record.path))] if record.path else []
        if record.run_dir:
            candidates.append(Path(record.run_dir))
        return next((c for c in candidates if is_run_dir(c)), None)

    def fold_run_dirs(self) -> list[Path | None]:
        """``fold_run_dir`` of folds 1..k, in order (k: ``num_folds``, else as many as
        there are ``fold_*`` folders)."""
        count = self.num_folds or sum(1 for _ in self.dir.glob("fold_*"))
        return [self.fold_run_dir(k) for k in range(1, count + 1)]

    # ------------------------------------------------------------ links and files
    @property
    def based_on(self) -> tuple[Link, ...]:
        links = self.summary.get("based_on")
        return tuple(Link(str(e.get("run_dir") or ""), _optional_text(e.get("run_id")),
                          _optional_text(e.get("relation")), e)
                     for e in (links if isinstance(links, list) else [])
                     if isinstance(e, Mapping))

    def link(self, relation: str, *, commit: bool = False) -> dict[str, Any]:
        """The ``based_on`` entry of a run that derives from this one (``commit``: with
        this run's ``git_commit``)."""
        entry: dict[str, Any] = {"run_dir": str(self.dir.resolve()),
                                 "run_id": self.run_id, "relation": relation}
        if commit:
            entry["git_commit"] = self.git_commit
        return entry

    @property
    def artifacts(self) -> tuple[Artifact, ...]:
        """The files the run recorded (child runs list their own)."""
        found = []
        for entry in self.summary.get("artifacts") or []:
            if isinstance(entry, Mapping) and isinstance(entry.get("path"), str) \
                    and entry["path"]:
                adopted = entry.get("adopted_from")
                found.append(Artifact(entry["path"], _count(entry.get("bytes")),
                                      _optional_text(entry.get("sha256")),
                                      _optional_text(entry.get("pending_sha256")),
                                      adopted if isinstance(adopted, Mapping) else None,
                                      _optional_text(entry.get("checkpoint_run_uid"))))
        return tuple(found)

    def artifact(self, path: str) -> Artifact | None:
        """The recorded entry of ``path`` (relative to the run), if any."""
        return next((a for a in self.artifacts if a.path == path), None)

    # ------------------------------------------------------------ data (RunData)
    def section(self, name: str) -> Mapping[str, Any]:
        """A section of the summary as data (``hyperparameters``, ``results``,
        ``data_config``, ``model_config``, ``execution``...); empty when absent."""
        return _section(self.summary, name)

    @property
    def hyperparameters(self) -> Mapping[str, Any]:
        return self.section("hyperparameters")


def _optional_text(value: Any) -> str | None:
    return None if value is None else str(value)
