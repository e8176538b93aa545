"""embed → fusion training → eval-export, end to end on synthetic DICOM with tiny models."""

import csv
import hashlib
import json
import pickle

import numpy as np
import pytest
import torch

from mammography.record.schema import schema_problems
from tests.helpers import child_env, read_summary, run_cli

pytestmark = pytest.mark.slow

TRAIN = ["--arch", "test_efficientnet", "--no-pretrained", "--img-size", "64", "--epochs", "2",
         "--lr", "0.003", "--warmup-epochs", "1", "--num-workers", "0"]


@pytest.fixture(scope="module")
def pipeline(synthetic_dataset, tmp_path_factory):
    """One embedding run, two seeds of one configuration, and a fusion run."""
    root = tmp_path_factory.mktemp("pipeline")
    env = child_env(MAMMOGRAPHY_CACHE_DIR=str(root / "cache"))
    data = ["--csv", synthetic_dataset / "classificacao.csv",
            "--dicom-root", synthetic_dataset / "archive"]

    def cli(*args):
        proc = run_cli(*args, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    cli("embed", *data, "--arch", "test_resnet", "--no-pretrained", "--img-size", "64",
        "--num-workers", "0", "--outdir", root / "emb")
    for seed in (1, 2):
        cli("train-density", *data, *TRAIN, "--seed", str(seed), "--outdir", root / "train")
    cli("train-density", *data, *TRAIN, "--embeddings-dir", root / "emb",
        "--outdir", root / "fusion")
    return {"root": root, "env": env, "data": data, "emb": root / "emb" / "results_1",
            "runs": [root / "train" / "results_1", root / "train" / "results_2"],
            "fusion": root / "fusion" / "results_1"}


def test_embed_writes_features_metadata_plot_and_probe(pipeline):
    run = pipeline["emb"]
    summary = read_summary(run)
    assert summary["experiment_type"] == "embedding_extraction" and schema_problems(summary) == []
    features = np.load(run / "features.npy")
    assert features.dtype == np.float32 and features.shape[1] == summary["embedding_dim"]
    with (run / "metadata.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == features.shape[0] == summary["data_config"]["num_images"]
    assert list(rows[0]) == ["image_path", "rel_path", "accession", "patient", "view",
                             "laterality", "label"]
    assert (run / "plots" / "embeddings_pca.png").is_file()
    assert (run / "data_manifest.json").is_file()
    assert -1 <= summary["linear_probe_kappa"] <= 1 and 0 <= summary["linear_probe_acc"] <= 1


def test_fusion_run_records_its_embedding_run(pipeline):
    summary = read_summary(pipeline["fusion"])
    model = summary["model_config"]
    assert model["embeddings_fusion"] is True
    assert model["embedding_dim"] == read_summary(pipeline["emb"])["embedding_dim"]
    assert {"run_dir": str(pipeline["emb"].resolve()), "run_id": "results_1",
            "relation": "fusion"} in summary["based_on"]
    assert "Loading embeddings from" in (pipeline["fusion"] / "run.log").read_text()
    assert torch.load(pipeline["fusion"] / "best_model.pt", weights_only=True)[
        "embedding_dim"] == model["embedding_dim"]


def test_fusion_with_embeddings_of_other_images_is_refused(pipeline, tmp_path):
    other = tmp_path / "other_emb" / "results_1"
    other.mkdir(parents=True)
    for name in ("summary.json", "features.npy"):
        (other / name).write_bytes((pipeline["emb"] / name).read_bytes())
    lines = (pipeline["emb"] / "metadata.csv").read_text().splitlines()
    (other / "metadata.csv").write_text("\n".join([lines[0]] + [
        line.replace(".dcm", "_elsewhere.dcm") for line in lines[1:]]) + "\n")
    # An embedding run of other images, recorded as such (its record vouches for its
    # metadata.csv), so that what is refused is the coverage, not the file's digest.
    document = json.loads((other / "summary.json").read_text())
    for entry in document["artifacts"]:
        if entry["path"] == "metadata.csv":
            entry["sha256"] = hashlib.sha256((other / "metadata.csv").read_bytes()).hexdigest()
    (other / "summary.json").write_text(json.dumps(document))
    proc = run_cli("train-density", *pipeline["data"], *TRAIN, "--embeddings-dir", other,
                   "--outdir", tmp_path / "out", env=pipeline["env"])
    assert proc.returncode == 2
    assert "do not cover" in proc.stderr and "mammography embed" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_eval_export_compares_runs_and_exports_with_parity(pipeline, tmp_path):
    runs = [*pipeline["runs"], pipeline["fusion"]]
    args = [a for r in runs for a in ("--run", r)]
    proc = run_cli("eval-export", *args, "--bootstrap", "200", "--outdir", tmp_path,
                   env=pipeline["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("Not paired") <= 1  # one line for every unpaired pair
    out = tmp_path / "results_1"
    summary = read_summary(out)
    assert summary["experiment_type"] == "evaluation" and schema_problems(summary) == []
    assert {b["relation"] for b in summary["based_on"]} == {"evaluation"}
    assert len(summary["based_on"]) == 3
    # two runs named results_1 (outdirs train/ and fusion/) are told apart by their folder
    for label in ("train-results_1", "results_2", "fusion-results_1"):
        folder = out / "models" / label
        metrics = json.loads((folder / "metrics.json").read_text())
        ci = metrics["image_ci95"]["kappa"]
        assert ci["low"] <= metrics["image"]["kappa"] <= ci["high"]
        for name in ("predictions_image.csv", "predictions_exam.csv", "metrics.csv",
                     "plots/confusion_matrix.png", "plots/roc_curves.png",
                     "export/model.torchscript.pt", "export/preprocessing.json"):
            assert (folder / name).is_file(), name
    evaluation = json.loads((out / "eval_summary.json").read_text())
    for model in evaluation["models"]:
        assert model["export"]["parity_ok"] is True
    # the two seeds are one configuration (mean ± std over 2 runs); fusion is another
    with (out / "comparison.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(int(r["n_runs"]) for r in rows) == [1, 2]
    pair = next(r for r in rows if r["n_runs"] == "2")
    kappas = [json.loads((out / "models" / f / "metrics.json").read_text())["image"]["kappa"]
              for f in ("train-results_1", "results_2")]
    assert float(pair["kappa_mean"]) == pytest.approx(np.mean(kappas))
    assert float(pair["kappa_std"]) == pytest.approx(np.std(kappas, ddof=1))
    assert "±" in (out / "comparison.md").read_text()
    assert "\\pm" in (out / "comparison.tex").read_text()
    # the TorchScript file alone reproduces the checkpoint
    card = json.loads((out / "models" / "train-results_1" / "export" / "preprocessing.json")
                      .read_text())
    assert card["preprocess"]["img_size"] == 64 and card["output"]["classes"] == list("ABCD")


def test_onnx_export_matches_the_checkpoint(pipeline, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    proc = run_cli("eval-export", "--run", pipeline["runs"][0], "--export", "onnx",
                   "--bootstrap", "0", "--outdir", tmp_path, env=pipeline["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = json.loads((tmp_path / "results_1" / "eval_summary.json").read_text())["models"][0]
    assert model["export"]["format"] == "onnx" and model["export"]["parity_ok"] is True
    # the exporter's narration is kept for run.log, off the terminal
    assert "[torch.onnx]" in (tmp_path / "results_1" / "run.log").read_text()
    assert "[torch.onnx]" not in proc.stdout + proc.stderr


def _copy_run(source, target):
    target.mkdir(parents=True)
    for name in ("summary.json", "splits.csv"):
        (target / name).write_bytes((source / name).read_bytes())
    return target


class _Payload:
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(MARKER),))


MARKER = ""


@pytest.mark.parametrize("kind", ["other_arch", "corrupt", "pickle"])
def test_bad_checkpoints_are_refused_without_running_anything(pipeline, tmp_path, kind):
    global MARKER
    run = _copy_run(pipeline["runs"][0], tmp_path / "run")
    best = run / "best_model.pt"
    if kind == "other_arch":
        payload = torch.load(pipeline["runs"][0] / "best_model.pt", weights_only=True)
        import timm

        other = timm.create_model("test_resnet", num_classes=0, in_chans=1)
        payload["state_dict"] = {f"backbone.{k}": v for k, v in other.state_dict().items()}
        torch.save(payload, best)
    elif kind == "corrupt":
        best.write_bytes((pipeline["runs"][0] / "best_model.pt").read_bytes()[:5000])
    else:
        MARKER = str(tmp_path / "pwned")
        with best.open("wb") as handle:
            pickle.dump({"state_dict": _Payload()}, handle)
    proc = run_cli("eval-export", "--run", run, "--outdir", tmp_path / "out",
                   env=pipeline["env"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert str(best) in proc.stderr
    assert not (tmp_path / "pwned").exists()


def test_eval_on_another_csv(pipeline, synthetic_dataset, tmp_path):
    proc = run_cli("eval-export", "--run", pipeline["runs"][0], *pipeline["data"],
                   "--bootstrap", "0", "--export", "none", "--outdir", tmp_path,
                   env=pipeline["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = read_summary(tmp_path / "results_1")
    assert summary["data_config"]["source"] == "csv"
    assert summary["data_config"]["num_images"] == read_summary(pipeline["runs"][0])[
        "data_config"]["num_images"]
