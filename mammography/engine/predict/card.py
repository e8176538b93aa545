"""An exported ONNX model and its ``preprocessing.json``, checked before they are trusted.

The card decides how every image is prepared - and for a model whose input
size is not fixed, at what size - so predict believes it only when something
vouches for it:

* inside the eval-export run that wrote them (``models/<label>/export/``), the
  model and its card must have the sha256 that run recorded (``record/digests.py``):
  an edited card is refused, naming the file and both digests;
* the card's preprocessing and normalisation must be its source checkpoint's:
  as the model carries them in its ONNX metadata (``export.model_settings``),
  else as the checkpoint the card names says, when it is reachable and
  unchanged;
* with nothing to compare against, a model with a fixed input size fixes at
  least the size (a WARNING says the rest is unverified); a model whose input
  size is free is refused, since only the card would decide it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mammography.engine.export import ONNX_NORMALIZATION, ONNX_PREPROCESS, ONNX_SOURCE_SHA256
from mammography.engine.trained_run import checkpoint_preprocessing
from mammography.errors import InputError
from mammography.record.contract import EVAL_MODELS_DIR, EXPORT_DIR, PREPROCESSING_CARD
from mammography.record.digests import read_verified, verify_file
from mammography.record.reporter import Reporter
from mammography.record.view import RunView


def export_run(model_path: Path) -> RunView | None:
    """The eval-export run holding ``model_path`` as ``models/<label>/export/<file>``."""
    folder = Path(model_path).resolve().parent
    if folder.name != EXPORT_DIR or folder.parent.parent.name != EVAL_MODELS_DIR:
        return None
    return RunView.try_read(folder.parent.parent.parent)


def read_export(model_path: Path, out: Reporter) -> dict[str, Any]:
    """The model's card, the model and the card verified against the eval-export run that
    wrote them when they are inside it; a WARNING that they are unverified otherwise.
    (onnxruntime then loads the model from its path: an ONNX model may keep its weights
    in files beside it.)"""
    card_path = model_path.parent / PREPROCESSING_CARD
    view = export_run(model_path)
    if view is not None:
        verify_file(view, model_path.resolve(), out, "exported model")
        card = read_verified(view, card_path.resolve(), out, "preprocessing card")
    else:
        out.warn(f"--model {model_path} is not inside the eval-export run that wrote it "
                 f"(models/<label>/{EXPORT_DIR}/ of a run directory), so no recorded sha256 "
                 f"vouches for it or its {PREPROCESSING_CARD}; its card is checked against "
                 "its source checkpoint's settings only.")
        try:
            card = card_path.read_bytes()
        except OSError as exc:
            raise InputError(f"Cannot read {card_path}: {exc.strerror or exc}.") from None
    return parse_card(card, model_path)


def read_card(model_path: Path) -> dict[str, Any]:
    """The ``preprocessing.json`` beside an exported model, checked to describe it (not
    verified: ``read_export`` is)."""
    card_path = model_path.parent / PREPROCESSING_CARD
    try:
        text = card_path.read_bytes()
    except OSError as exc:
        raise InputError(f"Cannot read {card_path}: {exc}. It is the input card eval-export "
                         "writes next to the exported model; export again.") from None
    return parse_card(text, model_path)


def parse_card(data: bytes, model_path: Path) -> dict[str, Any]:
    card_path = model_path.parent / PREPROCESSING_CARD
    try:
        card = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"Cannot read {card_path}: {exc}. It is the input card eval-export "
                         "writes next to the exported model; export again.") from None
    if not isinstance(card, dict):
        raise InputError(f"{card_path} is not a JSON object; export the model again.")
    if card.get("format") != "onnx" or card.get("model_file") not in (None, model_path.name):
        raise InputError(f"{card_path} describes {card.get('model_file')!r} "
                         f"({card.get('format')}), not {model_path.name}: the card and the "
                         "model do not belong together. Copy the export folder as "
                         "eval-export wrote it.")
    return card


def check_card_settings(model_path: Path, card: Mapping[str, Any],
                        metadata: Mapping[str, str], dynamic: bool,
                        payload: Mapping[str, Any] | None, note: str | None,
                        out: Reporter) -> None:
    """Refuse a card whose preprocessing or normalisation is not its source checkpoint's
    (from the model's ``metadata``, else the checkpoint's ``payload``); with neither,
    refuse a model whose input size is free (``dynamic``) and warn for one whose size is
    fixed. ``note``: why the checkpoint is unknown."""
    card_path = model_path.parent / PREPROCESSING_CARD
    if ONNX_PREPROCESS in metadata:
        source = "the settings the model itself carries from its source checkpoint"
        settings = _decoded(metadata, model_path)
        recorded_sha = metadata.get(ONNX_SOURCE_SHA256)
        named_sha = (card.get("source_checkpoint") or {}).get("sha256")
        if recorded_sha and named_sha != recorded_sha:
            raise InputError(
                f"Refusing --model {model_path}: its {PREPROCESSING_CARD} names the source "
                f"checkpoint sha256 {named_sha}, but the model was exported from "
                f"{recorded_sha}: the card belongs to another export or was edited. "
                "Copy the export folder as eval-export wrote it.")
    elif payload is not None:
        source = f"its source checkpoint {(card.get('source_checkpoint') or {}).get('path')}"
        settings = {"preprocess": payload.get("preprocess"),
                    "normalization": payload.get("normalization")}
    else:
        height, width = checkpoint_preprocessing(card.get("preprocess"), card_path).shape
        if dynamic:
            raise InputError(
                f"Refusing --model {model_path}: its input size is not fixed, so only its "
                f"{PREPROCESSING_CARD} says how to prepare the images ({height}x{width}), "
                f"and nothing confirms the card: {note}, and the model carries no settings "
                "of its own. Restore the source checkpoint, or export the model with "
                "eval-export --export onnx.")
        out.warn(f"--model {model_path}: the preprocessing in its {PREPROCESSING_CARD} is "
                 f"unverified beyond the {height}x{width} input the model fixes ({note}, and "
                 "the model carries no settings of its own).")
        return
    differences = _differences(card, settings, card_path, model_path)
    if differences:
        raise InputError(
            f"Refusing --model {model_path}: its {PREPROCESSING_CARD} does not match "
            f"{source}: {'; '.join(differences)}. Images prepared by the card would not be "
            "the images the model was trained on; restore the card eval-export wrote (or "
            "export the model again).")


def _decoded(metadata: Mapping[str, str], model_path: Path) -> dict[str, Any]:
    try:
        return {"preprocess": json.loads(metadata[ONNX_PREPROCESS]),
                "normalization": json.loads(metadata.get(ONNX_NORMALIZATION) or "{}")}
    except json.JSONDecodeError:
        raise InputError(f"--model {model_path}: its metadata {ONNX_PREPROCESS} is not "
                         "JSON; export the model again.") from None


def _differences(card: Mapping[str, Any], settings: Mapping[str, Any], card_path: Path,
                 model_path: Path) -> list[str]:
    """``setting card-value (source value)`` for each setting where they differ."""
    said = checkpoint_preprocessing(card.get("preprocess"), card_path).as_dict()
    true = checkpoint_preprocessing(settings.get("preprocess"), model_path).as_dict()
    found = [f"{key} {said.get(key)!r} (source {true.get(key)!r})"
             for key in sorted(set(said) | set(true)) if said.get(key) != true.get(key)]
    card_norm = card.get("normalization") or {}
    source_norm = settings.get("normalization") or {}
    for key in ("mean", "std"):
        if key in source_norm and _number(card_norm.get(key)) != _number(source_norm[key]):
            found.append(f"normalization {key} {card_norm.get(key)!r} "
                         f"(source {source_norm[key]!r})")
    return found


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
