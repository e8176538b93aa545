"""The models a predict run averages: train-density checkpoints, or portable ONNX exports.

Each :class:`Member` carries what scoring it needs - its preprocessing and
normalisation (as recorded when it was trained), the model itself (a torch
module rebuilt from ``best_model.pt`` with a weights-only load, or an
onnxruntime session that never builds the training model) - and where it
came from: its training run, whose data manifest holds the acquisition
fingerprint the scored images are compared with (``data_shift.py``).

Everything is checked before any image is read, so a run that cannot work
stops with exit 2 and one clear message: a tune run, a run without
``best_model.pt``, a model file that is not the one its run recorded (sha256,
run id), a fusion model whose embedding run is gone or whose features changed,
an ONNX file whose input card is missing, edited or does not describe it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mammography.data.augment import GRAY_MEAN, GRAY_STD
from mammography.data.preprocess import PreprocessSettings
from mammography.engine.predict.card import check_card_settings, read_export
from mammography.engine.trained_run import TrainedRun, checkpoint_preprocessing, open_models
from mammography.errors import InputError
from mammography.record.contract import (
    EXPORT_DIR,
    FEATURES_FILE,
    PREPROCESSING_CARD,
    SummaryUnreadable,
    is_run_dir,
)
from mammography.record.naming import distinct_labels
from mammography.record.reporter import Reporter
from mammography.record.view import RunView


@dataclass
class Member:
    """One model of the ensemble."""

    label: str
    kind: str  # "checkpoint" or "onnx"
    file: Path  # best_model.pt or model.onnx
    preprocess: PreprocessSettings
    normalization: dict[str, float]
    arch: str | None
    embedding_dim: int
    model: Any  # the torch module, or the onnxruntime InferenceSession
    training: TrainedRun | None = None  # the training run (manifest, lineage); None: unknown
    run_id: str | None = None
    training_note: str | None = None  # why the training run is unknown
    payload: dict[str, Any] | None = None  # the checkpoint's payload (fusion: embedding run)
    providers: list[str] | None = None  # onnxruntime execution providers

    @property
    def run_dir(self) -> Path | None:
        """The training run's directory (None when unknown: ``training_note``)."""
        return self.training.run_dir if self.training is not None else None

    def record(self) -> dict[str, Any]:
        """What summary.json says about this member."""
        return {"label": self.label, "kind": self.kind, "file": str(self.file.resolve()),
                "arch": self.arch, "epoch": (self.payload or {}).get("epoch"),
                "run_dir": str(self.run_dir.resolve()) if self.run_dir else None,
                "run_id": self.run_id, "training_run_note": self.training_note,
                "preprocess": self.preprocess.as_dict(), "normalization": self.normalization,
                "embedding_dim": self.embedding_dim, "onnx_providers": self.providers}


def members_from_runs(paths: list[Path], out: Reporter) -> list[Member]:
    """One member per model of each ``--run`` (a CV parent: one per fold), each model
    file verified against its run's record."""
    members = []
    for source in open_models(paths, out, command="predict"):
        model, payload = source.load_model(out)
        members.append(checkpoint_member(source, model, payload, out))
    return members


def checkpoint_member(source: TrainedRun, model: torch.nn.Module,
                      payload: dict[str, Any], out: Reporter) -> Member:
    """The member of ``source``'s best model, loaded (``TrainedRun.load_model``): what
    predict averages and eval-export scores alone."""
    path = source.best_model
    normalization = _checked_normalization(payload.get("normalization"), path)
    check_embeddings_reachable(payload, path, out)
    return Member(
        label=source.label, kind="checkpoint", file=path,
        preprocess=checkpoint_preprocessing(payload.get("preprocess"), path),
        normalization=normalization, arch=str(payload.get("arch")),
        embedding_dim=int(payload.get("embedding_dim", 0)), model=model, training=source,
        run_id=source.run_id, payload=payload)


def members_from_onnx(paths: list[Path], device: torch.device, out: Reporter) -> list[Member]:
    """One member per ``--model`` file, scored through onnxruntime; the model and its card
    verified first (``card.py``)."""
    from mammography.engine.predict.onnx import open_session

    members = []
    for path in paths:
        card = read_export(path, out)
        preprocess = checkpoint_preprocessing(card.get("preprocess"),
                                              path.parent / PREPROCESSING_CARD)
        session, providers = open_session(path, device)
        inputs = session.get_inputs()
        expected, got = ["batch", 1, *preprocess.shape], list(inputs[0].shape)
        if len(got) != 4 or any(isinstance(g, int) and g != e
                                for g, e in zip(got[1:], expected[1:], strict=True)):
            raise InputError(f"--model {path} takes images of shape {got}, but its "
                             f"{PREPROCESSING_CARD} says {expected}: the card belongs to "
                             "another export. Copy the export folder as eval-export wrote it.")
        training, note, payload = training_run_of(card)
        check_card_settings(path, card, session.get_modelmeta().custom_metadata_map,
                            any(not isinstance(g, int) for g in got[2:]), payload, note, out)
        embedding_dim = 0
        if len(inputs) > 1:  # a fusion model: its second input is the image's embedding
            if payload is None:
                raise InputError(f"--model {path} fuses embeddings, which come from the "
                                 f"embedding run its source checkpoint names; {note}. Score "
                                 "the training run with --run where it is reachable.")
            check_embeddings_reachable(payload, path, out)
            embedding_dim = int(payload.get("embedding_dim", 0))
        run_id = (training.run_id if training is not None else
                  (card.get("source_checkpoint") or {}).get("run_id"))
        members.append(Member(
            label=_onnx_label(path), kind="onnx", file=path, preprocess=preprocess,
            normalization=_card_normalization(card, path), arch=card.get("arch"),
            embedding_dim=embedding_dim, model=session, training=training, run_id=run_id,
            training_note=note, payload=payload, providers=providers))
    # Two exports of one run (from two evaluations, or same-named folders) must not
    # collide: told apart by the folders above them (record/naming.py).
    labels = distinct_labels([(m.label, _onnx_place(m.file)) for m in members])
    for member, label in zip(members, labels, strict=True):
        member.label = label
    return members


def training_run_of(card: dict[str, Any]) -> tuple[TrainedRun | None, str | None,
                                                  dict[str, Any] | None]:
    """(training run, why it is unknown, checkpoint payload) of an exported model.

    The card names its source checkpoint and its sha256; the run holding that
    very checkpoint (same checksum) is the training run. A checkpoint that is
    not reachable, or that changed, gives no run, and the reason.
    """
    from mammography.engine.checkpoint import load_safely
    from mammography.engine.export import sha256

    source = card.get("source_checkpoint") or {}
    if not source.get("path"):
        return None, "its preprocessing card names no source checkpoint", None
    path = Path(source["path"])
    if not path.is_file():
        return None, f"its source checkpoint {path} is not reachable here", None
    if source.get("sha256") and sha256(path) != source["sha256"]:
        return None, (f"the checkpoint at {path} is not the one exported (its sha256 "
                      "differs)"), None
    if not is_run_dir(path.parent):
        return None, f"{path.parent} (the folder of its source checkpoint) is not a run", None
    try:
        training = TrainedRun.of(RunView.read(path.parent))
    except SummaryUnreadable as exc:
        return None, f"its training run {path.parent} is unreadable: {exc}", None
    return training, None, load_safely(path, "best model")


def check_embeddings_reachable(payload: dict[str, Any], path: Path, out: Reporter) -> None:
    """A fusion model needs its embedding run, with the features it recorded; refuse
    before any image is read."""
    from mammography.engine.fusion import verified_embedding_files

    if not int(payload.get("embedding_dim", 0)):
        return
    source = payload.get("embeddings_run_dir")
    if not source or not Path(source, FEATURES_FILE).is_file():
        raise InputError(f"{path} fuses embeddings from the embedding run {source}, which is "
                         "not reachable: a fusion model needs that run's features of every "
                         "image it scores. Restore the embedding run (it must cover the "
                         "images), or score a model trained without --embeddings-dir.")
    verified_embedding_files(Path(source), out)


def _checked_normalization(recorded: Any, path: Path) -> dict[str, float]:
    """The checkpoint's normalisation, which must be the one the inference loop applies."""
    applied = {"mean": GRAY_MEAN, "std": GRAY_STD}
    recorded = recorded or applied
    if (float(recorded.get("mean", GRAY_MEAN)) != GRAY_MEAN
            or float(recorded.get("std", GRAY_STD)) != GRAY_STD):
        raise InputError(f"{path} was trained with normalisation {recorded}, but this version "
                         f"normalises inputs with {applied}: its predictions would be wrong. "
                         "Score it with the version that trained it.")
    return applied


def _card_normalization(card: dict[str, Any], path: Path) -> dict[str, float]:
    norm = card.get("normalization") or {}
    try:
        return {"mean": float(norm["mean"]), "std": float(norm["std"])}
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{path.parent / PREPROCESSING_CARD} has no normalization mean/std; "
                         "export the model again.") from None


def _onnx_label(path: Path) -> str:
    """``models/<label>/export/model.onnx`` (eval-export's layout) -> ``<label>``."""
    resolved = path.resolve()
    if resolved.parent.name == EXPORT_DIR and resolved.parent.parent.name:
        return resolved.parent.parent.name
    return resolved.parent.name or resolved.stem


def _onnx_place(path: Path) -> Path:
    """The folder above what ``_onnx_label`` names: the evaluation run holding
    ``models/<label>/export/model.onnx``, else the export folder's parent."""
    resolved = path.resolve()
    if resolved.parent.name == EXPORT_DIR and resolved.parent.parent.name:
        return resolved.parents[3] if len(resolved.parents) > 3 else resolved.parents[2]
    return resolved.parent.parent


def describe(members: list[Member], out: Reporter) -> None:
    """One log line per member."""
    for m in members:
        where = f"from {m.run_dir}" if m.run_dir else f"(training run unknown: {m.training_note})"
        height, width = m.preprocess.shape
        out.log(f"Model {m.label}: {m.kind} {m.file.name} ({m.arch}, input {height}x{width}"
                f"{', fuses embeddings' if m.embedding_dim else ''}) {where}")
