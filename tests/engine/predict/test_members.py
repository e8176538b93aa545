"""predict's models: which runs they come from, what is refused, and the shift warning."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from mammography.engine.data_shift import check_shift
from mammography.engine.predict.card import read_card
from mammography.engine.predict.members import members_from_runs as _members_from_runs
from mammography.engine.predict.members import training_run_of
from mammography.engine.predict.recipe import header_frames
from mammography.errors import InputError
from mammography.record.reporter import CollectingReporter
from tests.engine.model_runs import write_cv_parent, write_model_run, write_summary

FINGERPRINT = {"fingerprint_version": 1, "images": 10, "images_without_header": 0,
               "manufacturer": {"SYNTH-A": 10}, "image_kind": {"For Presentation": 10},
               "photometric": {"MONOCHROME2": 10}, "bits_stored": {"12": 10},
               "image_size": {"192x160": 10}}


def members_from_runs(paths, out=None):
    """Model runs written without digests (tests/engine/model_runs.py): each warns once
    that its best_model.pt is unverified."""
    return _members_from_runs(paths, out or CollectingReporter())


def test_a_cv_parent_stands_for_all_its_folds(tmp_path):
    members = members_from_runs([write_cv_parent(tmp_path / "cv", folds=3)])
    assert [m.label for m in members] == ["results_1-fold_1", "results_1-fold_2",
                                          "results_1-fold_3"]
    assert [m.run_dir for m in members] == [tmp_path / "cv" / f"fold_{k}" / "results"
                                            for k in (1, 2, 3)]
    assert all(m.kind == "checkpoint" and m.preprocess.img_size == 48 for m in members)
    # distinct weights: the folds are really different models
    first, second = (dict(m.model.state_dict()) for m in members[:2])
    assert any((first[k] != second[k]).any() for k in first)


def test_a_run_without_best_model_is_refused(tmp_path):
    run = write_summary(tmp_path / "run", status="failed")
    with pytest.raises(InputError, match="best_model.pt"):
        members_from_runs([run])


def test_a_fusion_model_whose_embedding_run_is_gone_is_refused(tmp_path):
    run = write_model_run(tmp_path / "fusion", embedding_dim=8,
                          extra={"embeddings_run_dir": str(tmp_path / "gone")})
    with pytest.raises(InputError) as error:
        members_from_runs([run])
    message = str(error.value)
    assert "fuses embeddings" in message and str(tmp_path / "gone") in message
    assert "not reachable" in message


def test_a_checkpoint_normalised_otherwise_is_refused(tmp_path):
    run = write_model_run(tmp_path / "run", normalization={"mean": 0.5, "std": 0.25})
    with pytest.raises(InputError, match="normalisation"):
        members_from_runs([run])


def test_the_header_check_lets_through_only_what_every_member_reads(tmp_path):
    members = members_from_runs([write_model_run(tmp_path / "a")])
    assert header_frames(members) == "exclude"
    members[0].preprocess = replace(members[0].preprocess, multiframe="middle")
    assert header_frames(members) == "middle"
    more = members_from_runs([write_model_run(tmp_path / "b")])
    assert header_frames(members + more) == "exclude"


def test_shift_names_what_training_never_saw(tmp_path):
    members = members_from_runs([write_model_run(tmp_path / "a", fingerprint=FINGERPRINT)])
    scored = {**FINGERPRINT, "images": 5, "manufacturer": {"SYNTH-A": 3, "ACME": 2},
              "image_kind": {"For Processing": 5}, "bits_stored": {"12": 3, "16": 2},
              "image_size": {"192x160": 3, "3328x2560": 2}}
    out = CollectingReporter()
    shift = check_shift(members, scored, out)
    assert shift["checked"] and shift["shift_detected"]
    assert shift["differences"] == sorted([
        "manufacturer ACME never seen in training (2 images)",
        "For Processing images, none in training (5 images)",
        "bits stored 16 not in training (2 images)",
        "image size 3328x2560 not in training (2 images)"])
    (warning,) = out.warnings
    assert "training data of results_1" in warning and "ACME" in warning


def test_no_shift_no_warning_and_folds_share_one_training_set(tmp_path):
    parent = write_cv_parent(tmp_path / "cv", folds=2)
    for k in (1, 2):
        (parent / f"fold_{k}" / "results" / "data_manifest.json").write_text(
            json.dumps({"digest": "same", "fingerprint": FINGERPRINT}))
    out = CollectingReporter()
    shift = check_shift(members_from_runs([parent]), FINGERPRINT, out)
    assert out.warnings == [] and not shift["shift_detected"]
    assert [t["models"] for t in shift["training_data"]] == [["results_1-fold_1",
                                                              "results_1-fold_2"]]


def test_models_without_a_training_fingerprint_are_said_to_be_unchecked(tmp_path):
    old = write_model_run(tmp_path / "old")
    (old / "data_manifest.json").write_text(json.dumps({"digest": "x"}))  # an older run
    members = members_from_runs([old])
    out = CollectingReporter()
    shift = check_shift(members, FINGERPRINT, out)
    assert not shift["checked"] and out.warnings == []
    assert "no acquisition fingerprint" in shift["unchecked"][0]["reason"]
    assert any(line.startswith("No training fingerprint for results_1") for line in out.lines)


def _card(folder: Path, source: Path | None, **fields) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    from mammography.engine.export import sha256

    card = {"model_file": "model.onnx", "format": "onnx",
            "source_checkpoint": {"path": str(source), "sha256": sha256(source)}
            if source else {}, **fields}
    (folder / "preprocessing.json").write_text(json.dumps(card))
    (folder / "model.onnx").write_bytes(b"")
    return folder / "model.onnx"


def _run_dir_of(found):
    """training_run_of's answer with the training run as its folder."""
    training, note, payload = found
    return (training.run_dir if training is not None else None), note, payload


def test_an_export_finds_its_training_run_by_checkpoint_checksum(tmp_path):
    run = write_model_run(tmp_path / "run")
    model = _card(tmp_path / "export", run / "best_model.pt")
    run_dir, note, payload = _run_dir_of(training_run_of(read_card(model)))
    assert run_dir == run and note is None and payload["arch"] == "test_efficientnet"
    # the checkpoint was replaced after the export: not the exported model's run
    write_model_run(tmp_path / "other", seed=5)
    (run / "best_model.pt").write_bytes((tmp_path / "other" / "best_model.pt").read_bytes())
    run_dir, note, payload = _run_dir_of(training_run_of(read_card(model)))
    assert run_dir is None and payload is None and "sha256 differs" in note
    # moved to another machine: the checkpoint is not there
    (run / "best_model.pt").unlink()
    run_dir, note, _ = _run_dir_of(training_run_of(read_card(model)))
    assert run_dir is None and "not reachable" in note


def test_a_card_of_another_export_is_refused(tmp_path):
    model = _card(tmp_path / "export", None, model_file="model.torchscript.pt",
                  format="torchscript")
    with pytest.raises(InputError, match="do not belong together"):
        read_card(model)
