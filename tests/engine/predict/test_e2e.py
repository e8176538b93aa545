"""`mammography predict` end to end: a CV run, its folds, its ONNX export, a PACS folder.

One tiny 2-fold CV run is trained and fold 1 exported to ONNX once for the
module; each test scores with the CLI in a fresh process and reads the run
directory back.
"""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mammography.record.schema import schema_problems
from tests.engine.model_runs import write_model_run, write_summary
from tests.helpers import child_env, read_summary, run_cli

pytestmark = pytest.mark.slow

PROBS = ["prob_A", "prob_B", "prob_C", "prob_D"]
TRAIN = ["--arch", "test_efficientnet", "--no-pretrained", "--img-size", "64", "--epochs", "1",
         "--lr", "0.003", "--warmup-epochs", "0", "--num-workers", "0", "--cv-folds", "2"]


@pytest.fixture(scope="module")
def trained(synthetic_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    env = child_env(MAMMOGRAPHY_CACHE_DIR=str(root / "cache"))

    def cli(*args, expect=0):
        proc = run_cli(*args, env=env)
        assert proc.returncode == expect, proc.stderr[-3000:]
        return proc

    cli("train-density", "--csv", synthetic_dataset / "classificacao.csv", *TRAIN,
        "--outdir", root / "train")
    parent = root / "train" / "results_1"
    fold_1 = parent / "fold_1" / "results"
    onnx = None
    if all(__import__("importlib").util.find_spec(m) for m in ("onnxruntime", "onnxscript")):
        cli("eval-export", "--run", fold_1, "--export", "onnx", "--bootstrap", "0",
            "--outdir", root / "eval")
        onnx = root / "eval" / "results_1" / "models" / "results_1-fold_1" / "export" / \
            "model.onnx"
    with (synthetic_dataset / "classificacao.csv").open() as handle:
        exams = [row["AccessionNumber"] for row in csv.DictReader(handle)]
    accessions = root / "accessions.csv"  # the identity only: no label column at all
    accessions.write_text("AccessionNumber\n" + "\n".join(exams) + "\n")
    done: dict[str, Path] = {}

    def predict(name, *args, expect=0):
        """``predict ARGS`` once per name; its run directory."""
        if name not in done:
            proc = cli("predict", *args, "--outdir", root / "pred" / name, expect=expect)
            done[name] = root / "pred" / name / "results_1"
            done[name + ":stderr"] = proc.stderr
        return done[name]

    images = ["--csv", accessions, "--dicom-root", synthetic_dataset / "archive"]
    return {"root": root, "env": env, "parent": parent, "fold_1": fold_1,
            "fold_2": parent / "fold_2" / "results", "onnx": onnx, "images": images,
            "predict": predict, "archive": synthetic_dataset / "archive"}


def _image_probs(run_dir: Path) -> pd.DataFrame:
    table = pd.read_csv(run_dir / "predictions_image.csv", dtype={"accession": str})
    return table.set_index("image_path")


def test_a_cv_parent_is_the_mean_of_its_folds(trained):
    predict = trained["predict"]
    cv = predict("cv", "--run", trained["parent"], *trained["images"])
    folds = [predict(f"fold{k}", "--run", trained[f"fold_{k}"], *trained["images"])
             for k in (1, 2)]
    ensemble = _image_probs(cv)
    singles = [_image_probs(f).loc[ensemble.index] for f in folds]
    # written to 9 significant digits (report/probabilities.py): the float32 values back
    np.testing.assert_allclose(ensemble[PROBS], (singles[0][PROBS] + singles[1][PROBS]) / 2,
                               atol=1e-6)
    assert set(ensemble["members"]) == {2} and set(singles[0]["members"]) == {1}
    assert not np.allclose(singles[0][PROBS], singles[1][PROBS], atol=1e-3)
    # every DICOM of the archive was scored (class 5 too: labels are not read)
    assert len(ensemble) == len(list(trained["archive"].rglob("*.dcm")))
    exam = pd.read_csv(cv / "predictions_exam.csv", dtype={"accession": str})
    by_exam = ensemble.groupby("accession")[PROBS].mean()
    np.testing.assert_allclose(exam.set_index("accession").loc[by_exam.index][PROBS],
                               by_exam, atol=2e-6)
    breast = pd.read_csv(cv / "predictions_breast.csv")
    assert len(breast) == ensemble["breast"].nunique()

    summary = read_summary(cv)
    assert summary["command"] == "predict" and summary["experiment_type"] == "evaluation"
    assert summary["status"] == "completed" and schema_problems(summary) == []
    assert sorted(b["run_dir"] for b in summary["based_on"]) == sorted(
        str(f.resolve()) for f in (trained["fold_1"], trained["fold_2"]))
    results = summary["results"]
    assert results["num_members"] == 2 and results["num_images"] == len(ensemble)
    assert results["images_per_second"] > 0 and results["tta"] == "none"
    assert results["data_shift"]["checked"] and not results["data_shift"]["shift_detected"]
    assert summary["model_config"]["ensemble"].startswith("mean of the members' probabilities")
    manifest = json.loads((cv / "data_manifest.json").read_text())
    assert manifest["fingerprint"]["images"] == len(ensemble)
    log = (cv / "run.log").read_text()
    assert "Prediction Complete" in log and "images/s)" in log
    assert "Column" not in log  # the CSV had no label column to ignore


def test_the_onnx_model_gives_the_checkpoints_probabilities(trained):
    if trained["onnx"] is None:
        pytest.skip("onnxruntime/onnxscript not installed")
    predict = trained["predict"]
    checkpoint = _image_probs(predict("fold1", "--run", trained["fold_1"], *trained["images"]))
    run = predict("onnx", "--model", trained["onnx"], *trained["images"])
    portable = _image_probs(run).loc[checkpoint.index]
    assert np.abs(portable[PROBS].to_numpy() - checkpoint[PROBS].to_numpy()).max() <= 1e-4
    assert (portable["pred_label"] == checkpoint["pred_label"]).all()
    summary = read_summary(run)
    assert schema_problems(summary) == [] and summary["model_config"]["kind"] == "onnx"
    assert summary["model_config"]["members"][0]["onnx_providers"] == ["CPUExecutionProvider"]
    # the card names its source checkpoint, reachable here: that run's data is compared
    assert summary["results"]["data_shift"]["checked"]
    assert summary["based_on"][0]["run_dir"] == str(trained["fold_1"].resolve())


def test_an_onnx_model_away_from_its_run_says_no_fingerprint_is_known(trained):
    if trained["onnx"] is None:
        pytest.skip("onnxruntime/onnxscript not installed")
    hospital = trained["root"] / "hospital" / "export"
    shutil.copytree(trained["onnx"].parent, hospital)
    card = json.loads((hospital / "preprocessing.json").read_text())
    card["source_checkpoint"]["path"] = "/lab/outputs/results_1/fold_1/results/best_model.pt"
    (hospital / "preprocessing.json").write_text(json.dumps(card))
    run = trained["predict"]("hospital", "--model", hospital / "model.onnx", "--dicom-root",
                             trained["archive"] / sorted(p.name for p in
                                                         trained["archive"].iterdir())[0])
    summary = read_summary(run)
    shift = summary["results"]["data_shift"]
    assert not shift["checked"] and "not reachable" in shift["unchecked"][0]["reason"]
    assert summary["based_on"] is None
    assert "No training fingerprint for" in (run / "run.log").read_text()


def test_tta_differs_from_none_and_is_recorded(trained):
    predict = trained["predict"]
    plain_run = predict("fold1", "--run", trained["fold_1"], *trained["images"])
    tta_run = predict("tta", "--run", trained["fold_1"], *trained["images"], "--tta")
    plain, tta = _image_probs(plain_run), _image_probs(tta_run).loc[_image_probs(plain_run).index]
    assert np.abs(tta[PROBS].to_numpy() - plain[PROBS].to_numpy()).max() > 1e-4
    summary = read_summary(tta_run)
    assert summary["results"]["tta"] == "vertical flip"
    assert summary["model_config"]["tta"] == "vertical flip"
    assert summary["hyperparameters"]["tta"] is True
    assert read_summary(plain_run)["results"]["tta"] == "none"


def test_a_pacs_folder_extension_less_a_corrupt_file_and_a_shift(trained, tmp_path):
    from mammography.config.synth import SynthConfig
    from mammography.data.synthetic import generate_dataset

    pacs = tmp_path / "pacs"
    copies = []
    for e, exam in enumerate(sorted(trained["archive"].iterdir())[:2]):
        for i, image in enumerate(sorted(exam.glob("*.dcm"))):
            copies.append(pacs / f"STUDY{e}" / f"IM{i:06d}")  # a PACS export: no extension
            copies[-1].parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, copies[-1])
    other = tmp_path / "other_site"  # another site: a detector size training never saw
    generate_dataset(SynthConfig(out=other, exams=1, seed=3, size="256x208"),
                     log=lambda message: None)
    for i, image in enumerate(sorted((other / "archive").rglob("*.dcm"))):
        copies.append(pacs / f"SITE_B_{i}")
        shutil.copyfile(image, copies[-1])
    (pacs / "STUDY0" / "IM999999").write_bytes(copies[0].read_bytes()[:1000])  # cut short

    run = trained["predict"]("pacs", "--run", trained["fold_1"], "--dicom-root", pacs,
                             "--max-bad-fraction", "0.5")
    images = _image_probs(run)
    assert sorted(images.index) == sorted(str(p) for p in copies)
    manifest = json.loads((run / "data_manifest.json").read_text())
    (excluded,) = [e for e in manifest["exclusions"] if e["path"].endswith("IM999999")]
    assert excluded["reason"]
    summary = read_summary(run)
    shift = summary["results"]["data_shift"]
    assert shift["shift_detected"]
    assert any(d.startswith("image size 256x208 not in training") for d in shift["differences"])
    log = (run / "run.log").read_text()
    assert "WARNING: skipping unusable image" in log and "IM999999" in log
    assert "WARNING: The images scored differ from the training data" in log
    assert summary["warnings"]["count"] >= 2
    assert summary["data_config"]["csv"] is None and summary["data_config"]["csv_format"] == \
        "folder"


def test_bad_inputs_stop_with_exit_2_and_say_why(trained, tmp_path):
    images = ["--dicom-root", trained["archive"]]
    tune = write_summary(tmp_path / "tune", experiment_type="hyperparameter_search",
                         results={"best_trial": {"run_dir": "trial_0/results"}})
    unfinished = write_summary(tmp_path / "unfinished", status="failed")
    fusion = write_model_run(tmp_path / "fusion", img_size=64, embedding_dim=8,
                             extra={"embeddings_run_dir": str(tmp_path / "emb_gone")})
    cases = [([], "--run RUN_DIR (a train-density run) or --model MODEL.onnx"),
             (["--run", trained["fold_1"], "--model", tmp_path / "x.onnx"],
              "--run and --model are alternatives"),
             (["--run", tune], "is a tune run"),
             (["--run", unfinished], "has no best_model.pt"),
             (["--run", fusion], "fuses embeddings")]
    for args, message in cases:
        proc = run_cli("predict", *args, *images, "--outdir", tmp_path / "out",
                       env=trained["env"])
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        assert message in proc.stderr, (args, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr
