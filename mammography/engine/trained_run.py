"""A train-density run, opened once: what every command that starts from one takes.

eval-export and predict (``--run``: a run stands for its model, a CV parent
for every fold's), train-density ``--resume`` (the run it continues: its
checkpoint, split, data digest and, for a CV parent, its folds) and the
continued folds of a resumed cross-validation all take a :class:`TrainedRun`
instead of a path they each read again. Opening one reads its summary.json
once (a CV parent also each fold's: its folds are TrainedRuns, its own or the
ones it reused from the cross-validation it continued); its data manifest is
read the first time its training data is asked for. What the summary says
about the layout comes from its :class:`~mammography.record.view.RunView`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mammography.errors import DataError, InputError
from mammography.record.contract import (
    BEST_MODEL_FILE,
    SPLITS_FILE,
    SUMMARY_FILE,
    SummaryUnreadable,
    fold_name,
    is_run_dir,
)
from mammography.record.naming import distinct_labels
from mammography.record.reporter import Reporter
from mammography.record.view import RunView

if TYPE_CHECKING:
    import torch

    from mammography.data.preprocess import PreprocessSettings
    from mammography.data.table.records import LabelTable


@dataclass(frozen=True)
class TrainingData:
    """What a run's data manifest says about the images it trained on."""

    fingerprint: dict[str, Any] | None  # the acquisition fingerprint; None: see reason
    digest: str  # the manifest's digest (runs sharing it trained on the same data)
    manifest: Path
    reason: str | None  # why there is no fingerprint to compare with


@dataclass(frozen=True, eq=False)
class FoldRun:
    """Fold k of a CV parent: the run it trained in (its own ``fold_k/results``, or one
    the parent reused from the cross-validation it continued), or why there is none."""

    number: int
    where: Path | None  # the fold's run directory; None when it is gone
    run: TrainedRun | None  # None: gone, or its summary cannot be read (``problem``)
    reused: bool = False
    problem: str | None = None


@dataclass(frozen=True, eq=False)
class TrainedRun:
    """One train-density run (single, fold, trial or CV parent), read once."""

    view: RunView
    label: str  # how tables name its model: results_4, results_4-fold_2
    folds: tuple[FoldRun, ...] = ()
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, path: Path | str, *, option: str = "--run") -> TrainedRun:
        """The run at ``path`` (``InputError`` naming ``option`` when it is not a run
        directory or its summary.json cannot be read)."""
        path = Path(path)
        if not is_run_dir(path):
            raise InputError(f"{option} {path} is not a run directory (no {SUMMARY_FILE})")
        try:
            view = RunView.read(path)
        except SummaryUnreadable as exc:
            raise InputError(f"{option} {path}: {exc}") from None
        return cls.of(view)

    @classmethod
    def of(cls, view: RunView, label: str | None = None) -> TrainedRun:
        """The run ``view`` describes (its folds opened when it is a CV parent)."""
        base = view.run_id or view.dir.name
        if label is None:
            label = f"{base}-{fold_name(view.fold)}" if view.fold else base
        folds = _open_folds(view, base) if view.is_cv_parent else ()
        return cls(view, label, folds)

    # ------------------------------------------------------------ what it is
    @property
    def run_dir(self) -> Path:
        return self.view.dir

    @property
    def run_id(self) -> str | None:
        return self.view.run_id

    @property
    def summary(self) -> Mapping[str, Any]:
        """The whole summary.json, as data (a model card quotes it)."""
        return self.view.summary

    @property
    def hyperparameters(self) -> Mapping[str, Any]:
        return self.view.hyperparameters

    @property
    def data_config(self) -> Mapping[str, Any]:
        return self.view.section("data_config")

    @property
    def model_config(self) -> Mapping[str, Any]:
        return self.view.section("model_config")

    @property
    def manifest_digest(self) -> str | None:
        """The digest of the data the run recorded (None: it stopped before reading it)."""
        digest = self.data_config.get("manifest_digest")
        return str(digest) if digest else None

    @property
    def best_model(self) -> Path:
        return self.view.best_model

    @property
    def last_checkpoint(self) -> Path:
        return self.view.last_checkpoint

    def fold(self, number: int) -> FoldRun | None:
        """Fold ``number`` of a CV parent (None: not one of its folds)."""
        return next((f for f in self.folds if f.number == number), None)

    def link(self, relation: str, *, commit: bool = False) -> dict[str, Any]:
        """The ``based_on`` entry of a run derived from this one."""
        return self.view.link(relation, commit=commit)

    # ------------------------------------------------------------ its models
    def models(self, option: str = "--run") -> list[TrainedRun]:
        """The models this run stands for: a finished CV parent's folds, else its own
        best model (``InputError`` when it has none)."""
        if self.folds and self.view.cv_summary.is_file():
            missing = [f.number for f in self.folds if f.where is None]
            if self.view.status == "completed" and missing and len(missing) < len(self.folds):
                raise InputError(f"{option} {self.run_dir}: the runs of folds "
                                 f"{', '.join(map(str, missing))} are gone, so the "
                                 "cross-validation cannot be evaluated whole; evaluate the "
                                 "remaining folds' fold_k/results one by one.")
            for fold in self.folds:
                if fold.where is not None and fold.run is None:
                    raise InputError(f"{option} {self.run_dir}: the run of fold {fold.number}"
                                     f", {fold.where}, cannot be read ({fold.problem}).")
            found = [fold.run for fold in self.folds if fold.run is not None]
            if found:
                return found
        if not self.best_model.is_file():
            raise InputError(f"{option} {self.run_dir} has no {BEST_MODEL_FILE} (status "
                             f"{self.view.status}); evaluate a run that finished at least one "
                             "epoch.")
        return [self]

    def load_model(self, out: Reporter) -> tuple[torch.nn.Module, dict[str, Any]]:
        """Its best model rebuilt (a verified, weights-only load: ``checkpoint_bytes``),
        with the checkpoint's payload."""
        from mammography.engine.checkpoint import model_from_payload

        return model_from_payload(self.load_best(out), self.best_model)

    def load_best(self, out: Reporter) -> dict[str, Any]:
        """Its best_model.pt, verified (``checkpoint_bytes``)."""
        return self.checkpoint_bytes(self.best_model, out, "best model")[1]

    def load_checkpoint(self, out: Reporter) -> dict[str, Any]:
        """Its last_checkpoint.pt, verified (``checkpoint_bytes``)."""
        return self.checkpoint_bytes(self.last_checkpoint, out, "checkpoint")[1]

    def checkpoint_bytes(self, path: Path, out: Reporter, what: str
                         ) -> tuple[bytes, dict[str, Any]]:
        """(bytes, payload) of a checkpoint of this run: its sha256 checked against the
        run's record, loaded weights-only from those very bytes, and checked to carry this
        run's id (or one it took over with --resume). ``InputError`` naming the file and
        both digests, or both runs, when it is not the run's own; a run recorded before
        digests gets one WARNING per file instead (record/digests.py)."""
        from mammography.engine.checkpoint import load_safely
        from mammography.record.digests import owner_problem, read_verified

        if not Path(path).is_file():
            raise InputError(f"{what} {path} does not exist.")
        data = read_verified(self.view, path, self._once(out), what)
        payload = load_safely(path, what, data)
        problem = owner_problem(self.view, path, payload, what)
        if problem:
            raise InputError(problem)
        return data, payload

    def verify(self, out: Reporter) -> None:
        """Refuse now (before any image is read) what ``load_model`` would refuse later."""
        self.load_best(out)

    def verify_resumable(self, out: Reporter) -> None:
        """Refuse now what ``--resume`` would refuse once the data is read: a
        last_checkpoint.pt or best_model.pt that is not this run's own (a CV parent's
        folds are checked as each is continued)."""
        if self.folds or not self.last_checkpoint.is_file():
            return
        self.load_checkpoint(out)
        if self.best_model.is_file():
            self.load_best(out)

    def _once(self, out: Reporter) -> Reporter:
        """``out``, with each of this run's warnings said once (a model is checked when
        its run is opened and again when it is loaded)."""
        return _OnceReporter(out, self._cache.setdefault("warned", set()))

    # ------------------------------------------------------------ its data
    def developed_on(self) -> tuple[set[str], set[str]] | None:
        """(patients, exams) of every image the run trained or validated on, from its
        splits.csv; None when it has none (``eval-export --split test`` checks them)."""
        from mammography.data.splits import read_splits_csv

        if not self.view.splits.is_file():
            return None
        patients, exams = set(), set()
        for _, row in read_splits_csv(self.view.splits):
            if row.get("split") in ("", "unused"):
                continue
            patients.add(row.get("patient", ""))
            exams.add(row.get("accession", ""))
        return patients - {""}, exams - {""}

    def own_validation_split(self) -> LabelTable:
        """The images the run validated on, from its splits.csv."""
        from mammography.data.splits import read_splits_csv
        from mammography.data.table.records import ImageRecord, LabelTable

        data = self.data_config
        root = Path(data["dicom_root"]) if data.get("dicom_root") else None
        splits = self.view.splits
        if not splits.is_file():
            raise InputError(f"{self.run_dir} has no {SPLITS_FILE}; pass --csv to evaluate "
                             "it on given data.")
        records = []
        for line, row in read_splits_csv(splits):
            if row["split"] != "val":
                continue
            path = Path(row["image_path"])
            path = path if path.is_absolute() or root is None else root / path
            records.append(ImageRecord(path=path, accession=row["accession"],
                                       patient=row["patient"], view=row["view"],
                                       laterality=row["laterality"], label=int(row["label"]),
                                       row=line))
        missing = [r.path for r in records if not r.path.is_file()]
        if missing:
            raise DataError(f"{len(missing)} validation images of {self.run_dir} are not "
                            f"reachable (e.g. {missing[0]}); the data moved? Pass --csv and "
                            "--dicom-root.")
        csv_path = Path(data.get("csv", splits))
        return LabelTable(records, [], csv_path if csv_path.is_file() else splits, root,
                          "splits", len(records), images_found=len(records))

    @property
    def manifest(self) -> dict[str, Any] | None:
        """Its data_manifest.json, read once (None when unreadable: see
        ``training_fingerprint``)."""
        return self._manifest()[0]

    def _manifest(self) -> tuple[dict[str, Any] | None, str | None]:
        if "manifest" not in self._cache:
            path = self.view.manifest
            try:
                document = json.loads(path.read_text(encoding="utf-8"))
                found = (document if isinstance(document, dict) else None, None)
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                found = (None, f"its {path} is unreadable ({exc})")
            self._cache["manifest"] = found
        return self._cache["manifest"]

    def training_fingerprint(self) -> TrainingData:
        """The acquisition fingerprint of the images it trained on, and its manifest's
        digest; the fingerprint is None, with the reason, when there is nothing to
        compare scored images with."""
        path = self.view.manifest
        manifest, unreadable = self._manifest()
        if unreadable is not None:
            return TrainingData(None, "", path, unreadable)
        fingerprint = (manifest or {}).get("fingerprint")
        if not isinstance(fingerprint, dict) or not fingerprint.get("images"):
            return TrainingData(None, "", path,
                                f"its {path} has no acquisition fingerprint (an older run)")
        if fingerprint.get("images_without_header") == fingerprint.get("images"):
            return TrainingData(None, "", path, f"its {path} fingerprint has no header facts")
        return TrainingData(fingerprint, str((manifest or {}).get("digest") or path), path,
                            None)


def checkpoint_preprocessing(recorded: Any, where: Path) -> PreprocessSettings:
    """The preprocessing a checkpoint (or an export's card, ``where``) records, or an
    ``InputError`` saying why it cannot be used."""
    from mammography.data.preprocess import PreprocessSettings

    if not isinstance(recorded, dict):
        raise InputError(f"{where} records no preprocessing settings; it was not written by "
                         "this package's train-density / eval-export.")
    try:
        return PreprocessSettings(**recorded)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where} records preprocessing settings this version does not "
                         f"understand ({exc}); score it with the version that wrote it.") from None


def open_models(paths: Sequence[Path], out: Reporter, command: str = "eval-export"
                ) -> list[TrainedRun]:
    """Each ``--run`` as the models it stands for (a CV parent: every fold's), each
    with a label of its own: the same run id from two outdirs is told apart by the
    folders above it (``a-results_1``, ``b-results_1``: record/naming.py), each model
    file verified against its run's record before anything else happens."""
    from mammography.config.evaluate import model_view_problem

    models: list[TrainedRun] = []
    places: list[Path] = []
    for path in paths:
        run = TrainedRun.open(path)
        problem = model_view_problem(run.view, command)
        if problem:
            raise InputError(problem)
        found = run.models()
        models += found
        places += [_outdir(Path(path))] * len(found)
    for model in models:
        model.verify(out)
    labels = distinct_labels([(m.label, place) for m, place in zip(models, places,
                                                                    strict=True)])
    return [m if m.label == label else replace(m, label=label)
            for m, label in zip(models, labels, strict=True)]


def _outdir(run_dir: Path) -> Path:
    """The ``--outdir`` folder holding a run's ``results_N`` (also for a fold's or a
    trial's ``results_N/fold_k/results``)."""
    current = Path(run_dir)
    while current.name == "results" and is_run_dir(current.parent.parent):
        current = current.parent.parent
    return current.parent


class _OnceReporter:
    """A reporter that says each warning once (``seen`` is shared by its copies)."""

    def __init__(self, out: Reporter, seen: set[str]) -> None:
        self._out, self._seen = out, seen

    def log(self, message: str = "") -> None:
        self._out.log(message)

    def warn(self, message: str) -> None:
        if message not in self._seen:
            self._seen.add(message)
            self._out.warn(message)


def _open_folds(view: RunView, base: str) -> tuple[FoldRun, ...]:
    """A CV parent's folds in order, each opened once (see ``RunView.fold_run_dir``)."""
    folds = []
    for number, where in enumerate(view.fold_run_dirs(), 1):
        reused = where is not None and where != view.fold_dir(number)
        if where is None:
            folds.append(FoldRun(number, None, None, reused))
            continue
        try:
            fold_view = RunView.read(where)
        except SummaryUnreadable as exc:
            folds.append(FoldRun(number, where, None, reused, str(exc)))
            continue
        folds.append(FoldRun(number, where, TrainedRun.of(
            fold_view, label=f"{base}-{fold_name(number)}"), reused))
    return tuple(folds)
