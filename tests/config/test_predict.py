"""`mammography predict` settings: every bad combination named before any work starts."""

import json

import pytest

from mammography.config.core import build_config
from mammography.config.predict import PredictConfig
from mammography.errors import ConfigError


def _run(folder, kind="density_classification", **summary):
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"experiment_type": kind,
                                                     "run_id": "results_1", **summary}))
    return folder


def _problems(**values):
    with pytest.raises(ConfigError) as error:
        build_config(PredictConfig, values)
    return error.value.problems


def test_a_model_and_images_are_required(tmp_path):
    problems = _problems()
    assert any("--run RUN_DIR" in p and "--model MODEL.onnx" in p for p in problems)
    assert any("--csv FILE or --dicom-root DIR is required" in p for p in problems)


def test_run_and_model_are_alternatives(tmp_path):
    run = _run(tmp_path / "run")
    export = tmp_path / "export"
    export.mkdir()
    (export / "model.onnx").write_bytes(b"")
    (export / "preprocessing.json").write_text("{}")
    problems = _problems(run=[str(run)], model=[str(export / "model.onnx")],
                         dicom_root=str(tmp_path))
    assert problems == ["--run and --model are alternatives: score with trained runs or with "
                        "exported ONNX models, not both at once"]


def test_a_tune_run_points_at_its_best_trial(tmp_path):
    tune = _run(tmp_path / "tune", "hyperparameter_search",
                results={"best_trial": {"run_dir": "trial_3/results"}})
    (problem,) = _problems(run=[str(tune)], dicom_root=str(tmp_path))
    assert "is a tune run" in problem and str(tune / "trial_3" / "results") in problem


def test_other_runs_are_named_for_what_they_are(tmp_path):
    embed = _run(tmp_path / "emb", "embedding_extraction")
    (problem,) = _problems(run=[str(embed)],
                           dicom_root=str(tmp_path))
    assert problem.endswith("is a embedding_extraction run; predict takes train-density runs")
    (problem,) = _problems(run=[str(tmp_path / "nothing")], dicom_root=str(tmp_path))
    assert "is not a run directory" in problem


def test_an_onnx_model_needs_its_card(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"")
    (tmp_path / "model.pt").write_bytes(b"")
    problems = _problems(model=[str(tmp_path / "model.onnx"), str(tmp_path / "model.pt"),
                                str(tmp_path / "missing.onnx")], dicom_root=str(tmp_path))
    assert "has no preprocessing.json beside it" in problems[0]
    assert "is not an .onnx file" in problems[1]
    assert "does not exist" in problems[2]


def test_image_options_are_checked(tmp_path):
    run = _run(tmp_path / "run")
    problems = _problems(run=[str(run)], csv=str(tmp_path / "none.csv"),
                         dicom_root=str(tmp_path / "nowhere"), batch_size=0,
                         max_bad_fraction=2)
    assert len(problems) == 4
    assert any("--csv" in p for p in problems) and any("--dicom-root" in p for p in problems)


def test_a_good_config_records_tta(tmp_path):
    run = _run(tmp_path / "run")
    cfg = build_config(PredictConfig, {"run": [str(run)], "dicom_root": str(tmp_path),
                                       "tta": True})
    assert cfg.tta is True and cfg.EXPERIMENT_TYPE == "evaluation"
