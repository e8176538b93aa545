"""Model files are part of the record (issue 23, item 2 and the ONNX card of item 6),
through the real CLI.

Each case is what a user can do with ``cp -p`` or an editor: another run's
``best_model.pt`` or ``last_checkpoint.pt`` copied over a run's own, another
embedding run's ``features.npy``, an edited ``preprocessing.json``, a checkpoint
moved together with a doctored summary. Every consumer - predict, eval-export,
train-density --resume, --embeddings-dir fusion, runs validate - must refuse
(exit 2; runs validate: a problem line, exit 1) naming the file and both
digests, or both run ids; a run from before digests must still work, with a
WARNING that its files are unverified. Before this, each of them exited 0 and
credited one run's weights to another.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import child_env, read_summary, run_cli

pytestmark = pytest.mark.slow

TINY = ["--arch", "test_efficientnet", "--no-pretrained", "--img-size", "64",
        "--batch-size", "16", "--epochs", "1", "--num-workers", "0", "--warmup-epochs", "0"]


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def copy_run(source: Path, target: Path) -> Path:
    """``cp -rp``: the run directory with its files' times."""
    shutil.copytree(source, target, copy_function=shutil.copy2)
    return target


def patch_summary(run_dir: Path, change) -> None:
    path = run_dir / "summary.json"
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def record_digest(run_dir: Path, rel: str) -> None:
    """Doctor the run's record so that it vouches for the file now there."""
    def change(document):
        for entry in document["artifacts"]:
            if entry["path"] == rel:
                entry["sha256"] = sha256(run_dir / rel)
                entry.pop("pending_sha256", None)
    patch_summary(run_dir, change)


def as_before_digests(run_dir: Path) -> Path:
    """The run as versions before file digests wrote it: no run_uid in its summary or its
    checkpoints, artifacts with sizes only."""
    import torch

    def change(document):
        document.pop("run_uid", None)
        document["artifacts"] = [{"path": e["path"], "bytes": e["bytes"]}
                                 for e in document.get("artifacts", [])]
    patch_summary(run_dir, change)
    for name in ("best_model.pt", "last_checkpoint.pt"):
        checkpoint = torch.load(run_dir / name, weights_only=True)
        for key in ("run_uid", "run_dir"):
            checkpoint.pop(key, None)
        torch.save(checkpoint, run_dir / name)
    return run_dir


@pytest.fixture(scope="module")
def lab(synthetic_dataset, tmp_path_factory):
    """Two runs A and B of one configuration (other seeds), trained once."""
    root = tmp_path_factory.mktemp("model_files")
    env = child_env(MAMMOGRAPHY_CACHE_DIR=str(root / "cache"))
    data = ["--csv", synthetic_dataset / "classificacao.csv",
            "--dicom-root", synthetic_dataset / "archive"]

    def cli(*args):
        return run_cli(*args, env=env)

    for seed in (1, 2):
        proc = cli("train-density", *data, *TINY, "--seed", str(seed), "--outdir", root / "density")
        assert proc.returncode == 0, proc.stderr[-3000:]
    return {"root": root, "cli": cli, "data": data, "a": root / "density" / "results_1",
            "b": root / "density" / "results_2"}


def refused(proc, *needles: str) -> str:
    """Exit 2, one message (no traceback) naming every needle."""
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text[-3000:]
    assert "Traceback" not in text
    for needle in needles:
        assert needle in text, (needle, text[-3000:])
    return text


def test_a_run_records_the_digest_and_id_of_each_model_file(lab):
    import torch

    summary = read_summary(lab["a"])
    recorded = {e["path"]: e for e in summary["artifacts"]}
    for name in ("best_model.pt", "last_checkpoint.pt"):
        assert recorded[name]["sha256"] == sha256(lab["a"] / name)
        assert "pending_sha256" not in recorded[name]
        checkpoint = torch.load(lab["a"] / name, weights_only=True)
        assert checkpoint["run_uid"] == summary["run_uid"] != read_summary(lab["b"])["run_uid"]
        assert checkpoint["run_id"] == "results_1"
    proc = lab["cli"]("runs", "validate", lab["root"] / "density")
    assert proc.returncode == 0, proc.stdout


def test_another_runs_best_model_copied_over_is_refused_by_every_consumer(lab, tmp_path):
    a = copy_run(lab["a"], tmp_path / "runs" / "results_1")
    shutil.copy2(lab["b"] / "best_model.pt", a / "best_model.pt")  # cp -p
    recorded, actual = sha256(lab["a"] / "best_model.pt"), sha256(lab["b"] / "best_model.pt")
    needles = (str(a / "best_model.pt"), recorded, actual)
    cli = lab["cli"]
    refused(cli("predict", "--run", a, *lab["data"], "--outdir", tmp_path / "p"), *needles)
    refused(cli("eval-export", "--run", a, "--bootstrap", "0", "--outdir", tmp_path / "e"),
            *needles)
    resume = refused(cli("train-density", "--resume", a, "--epochs", "2", "--outdir",
                         tmp_path / "r"), *needles)
    assert "Loading data from" not in resume  # refused before any image is read
    proc = cli("runs", "validate", tmp_path / "runs")
    assert proc.returncode == 1 and f"best_model.pt: sha256 {actual} is not the {recorded}" \
        in proc.stdout, proc.stdout


def test_another_runs_last_checkpoint_is_refused_by_resume(lab, tmp_path):
    a = copy_run(lab["a"], tmp_path / "results_1")
    shutil.copy2(lab["b"] / "last_checkpoint.pt", a / "last_checkpoint.pt")
    refused(lab["cli"]("train-density", "--resume", a, "--epochs", "2",
                            "--outdir", tmp_path / "r"),
            str(a / "last_checkpoint.pt"), sha256(lab["a"] / "last_checkpoint.pt"),
            sha256(lab["b"] / "last_checkpoint.pt"))


def test_a_checkpoint_of_another_run_is_refused_even_with_a_doctored_record(lab, tmp_path):
    """The checkpoint says whose it is: copying it with a summary edited to match names
    both runs."""
    a = copy_run(lab["a"], tmp_path / "results_1")
    shutil.copy2(lab["b"] / "best_model.pt", a / "best_model.pt")
    record_digest(a, "best_model.pt")
    uid_a, uid_b = read_summary(lab["a"])["run_uid"], read_summary(lab["b"])["run_uid"]
    needles = (str(a / "best_model.pt"), uid_a, uid_b, "results_2", str(lab["b"]))
    refused(lab["cli"]("predict", "--run", a, *lab["data"], "--outdir", tmp_path / "p"),
            *needles)
    refused(lab["cli"]("eval-export", "--run", a, "--bootstrap", "0", "--outdir",
                       tmp_path / "e"), *needles)


def test_a_resumed_run_owns_the_best_model_it_took_over_and_nobody_else_does(lab, tmp_path):
    """--resume copies the old best_model.pt in (no later epoch may beat it): the copy keeps
    the old run's id, and the new run records that it adopted it from the run it resumes.
    The run resumed is A as interrupted after its last epoch's checkpoint, before it ended
    (a completed run resumes only with epochs left, and a new epoch might beat the old
    best)."""
    cli = lab["cli"]
    a = copy_run(lab["a"], tmp_path / "interrupted" / "results_1")
    patch_summary(a, lambda document: document.update(status="interrupted"))
    proc = cli("train-density", "--resume", a, "--outdir", tmp_path / "resumed")
    assert proc.returncode == 0, proc.stderr[-3000:]
    c = tmp_path / "resumed" / "results_1"
    summary, uid_a = read_summary(c), read_summary(a)["run_uid"]
    entry = next(e for e in summary["artifacts"] if e["path"] == "best_model.pt")
    assert entry["sha256"] == sha256(c / "best_model.pt") == sha256(a / "best_model.pt")
    assert entry["adopted_from"]["run_uid"] == uid_a == entry["checkpoint_run_uid"]
    assert entry["adopted_from"]["run_dir"] in [link["run_dir"] for link in summary["based_on"]]
    proc = cli("predict", "--run", c, *lab["data"], "--outdir", tmp_path / "p")
    assert proc.returncode == 0 and "WARNING" not in proc.stdout + proc.stderr, proc.stderr
    assert cli("runs", "validate", tmp_path / "resumed").returncode == 0
    # adoption is not transferable: the same file in B (record doctored) is refused
    b = copy_run(lab["b"], tmp_path / "b" / "results_2")
    shutil.copy2(c / "best_model.pt", b / "best_model.pt")
    record_digest(b, "best_model.pt")
    refused(cli("predict", "--run", b, *lab["data"], "--outdir", tmp_path / "p"), uid_a,
            read_summary(lab["b"])["run_uid"])


def test_a_run_from_before_digests_is_used_with_a_warning(lab, tmp_path):
    old = as_before_digests(copy_run(lab["a"], tmp_path / "results_1"))
    cli = lab["cli"]
    for proc in (cli("predict", "--run", old, *lab["data"], "--outdir", tmp_path / "p"),
                 cli("eval-export", "--run", old, "--bootstrap", "0", "--outdir",
                     tmp_path / "e"),
                 cli("train-density", "--resume", old, "--epochs", "2", "--outdir",
                     tmp_path / "r")):
        text = proc.stdout + proc.stderr
        assert proc.returncode == 0, text[-3000:]
        assert f"WARNING: best model {old / 'best_model.pt'} is unverified (recorded before " \
            "digests)" in text
    proc = cli("runs", "validate", tmp_path)
    assert f"{tmp_path / 'results_1'}:" not in proc.stdout  # not a problem of the run


def test_a_fold_checkpoint_belongs_to_its_fold(lab, tmp_path):
    cli = lab["cli"]
    proc = cli("train-density", *lab["data"], *TINY, "--cv-folds", "2", "--outdir",
               tmp_path / "cv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    parent = copy_run(tmp_path / "cv" / "results_1", tmp_path / "copy" / "results_1")
    one, two = (parent / f"fold_{k}" / "results" for k in (1, 2))
    shutil.copy2(one / "best_model.pt", two / "best_model.pt")
    refused(cli("predict", "--run", parent, *lab["data"], "--outdir", tmp_path / "p"),
            str(two / "best_model.pt"), sha256(one / "best_model.pt"))
    record_digest(two, "best_model.pt")  # and with the fold's record doctored: its run id
    refused(cli("eval-export", "--run", parent, "--bootstrap", "0", "--outdir",
                tmp_path / "e"), read_summary(one)["run_uid"], read_summary(two)["run_uid"])


def test_fusion_refuses_features_of_another_embedding_run(lab, tmp_path):
    cli = lab["cli"]
    for seed in (1, 2):
        proc = cli("embed", *lab["data"], "--arch", "test_efficientnet", "--no-pretrained",
                   "--img-size", "64", "--num-workers", "0", "--probe-folds", "0",
                   "--seed", str(seed), "--outdir", tmp_path / "emb")
        assert proc.returncode == 0, proc.stderr[-3000:]
    e1, e2 = tmp_path / "emb" / "results_1", tmp_path / "emb" / "results_2"
    recorded = {e["path"]: e.get("sha256") for e in read_summary(e1)["artifacts"]}
    assert recorded["features.npy"] == sha256(e1 / "features.npy")
    assert recorded["metadata.csv"] == sha256(e1 / "metadata.csv")
    proc = cli("train-density", *lab["data"], *TINY, "--embeddings-dir", e1, "--outdir",
               tmp_path / "fusion")
    assert proc.returncode == 0, proc.stderr[-3000:]
    fused = tmp_path / "fusion" / "results_1"
    original = sha256(e1 / "features.npy")
    swapped = copy_run(e1, tmp_path / "swapped" / "results_1")
    shutil.copy2(e2 / "features.npy", swapped / "features.npy")
    needles = (str(swapped / "features.npy"), original, sha256(e2 / "features.npy"))
    refused(cli("train-density", *lab["data"], *TINY, "--embeddings-dir", swapped,
                "--outdir", tmp_path / "t"), *needles)
    # the fusion model's own embedding run, its features replaced: predict refuses it
    shutil.copy2(e2 / "features.npy", e1 / "features.npy")
    refused(cli("predict", "--run", fused, *lab["data"], "--outdir", tmp_path / "p"),
            str(e1 / "features.npy"), original)


# ------------------------------------------------------------------ ONNX and its card


@pytest.fixture(scope="module")
def export(lab):
    """A's model exported to ONNX by eval-export."""
    out = lab["root"] / "eval"
    proc = lab["cli"]("eval-export", "--run", lab["a"], "--bootstrap", "0", "--export", "onnx",
                      "--outdir", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "results_1" / "models" / "results_1" / "export"


def edit_card(folder: Path, **preprocess) -> Path:
    card = json.loads((folder / "preprocessing.json").read_text())
    card["preprocess"].update(preprocess)
    (folder / "preprocessing.json").write_text(json.dumps(card, indent=2))
    return folder / "model.onnx"


def test_an_edited_card_next_to_an_exported_model_is_refused(lab, export, tmp_path):
    cli = lab["cli"]
    summary = read_summary(export.parents[2])
    recorded = {e["path"]: e.get("sha256") for e in summary["artifacts"]}
    card = "models/results_1/export/preprocessing.json"
    assert recorded[card] == sha256(export / "preprocessing.json")
    assert recorded["models/results_1/export/model.onnx"] == sha256(export / "model.onnx")
    proc = cli("predict", "--model", export / "model.onnx", *lab["data"], "--outdir",
               tmp_path / "p")
    assert proc.returncode == 0 and "WARNING" not in proc.stdout + proc.stderr, proc.stderr

    # in its run: the card's digest is not the one recorded
    inside = copy_run(export.parents[2], tmp_path / "eval" / "results_1")
    folder = inside / "models" / "results_1" / "export"
    crop = json.loads((folder / "preprocessing.json").read_text())["preprocess"]["crop_breast"]
    edit_card(folder, crop_breast=not crop)
    refused(cli("predict", "--model", folder / "model.onnx", *lab["data"], "--outdir",
                tmp_path / "p"), str(folder / "preprocessing.json"), recorded[card],
            sha256(folder / "preprocessing.json"))
    # copied out of its run: checked against the settings the model carries
    alone = tmp_path / "deploy"
    shutil.copytree(export, alone)
    proc = cli("predict", "--model", alone / "model.onnx", *lab["data"], "--outdir",
               tmp_path / "p")
    assert proc.returncode == 0 and "is not inside the eval-export run" in proc.stdout + \
        proc.stderr, proc.stderr
    refused(cli("predict", "--model", edit_card(alone, crop_breast=not crop), *lab["data"],
                "--outdir", tmp_path / "p"), "crop_breast")


def test_a_model_with_a_free_input_size_is_scored_only_at_its_checkpoints_size(
        lab, export, tmp_path):
    """A user's own ONNX export with dynamic height and width (no settings of its own):
    the card alone would decide the size, so it must match the source checkpoint."""
    import torch

    from mammography.engine.checkpoint import model_from_best

    model, _ = model_from_best(lab["a"] / "best_model.pt")
    folder = tmp_path / "dynamic"
    folder.mkdir()
    torch.onnx.export(model, (torch.zeros(1, 1, 64, 64),), str(folder / "model.onnx"),
                      dynamo=True, input_names=["image"], output_names=["logits"],
                      dynamic_shapes=({0: torch.export.Dim("batch"), 2: torch.export.Dim.AUTO,
                                       3: torch.export.Dim.AUTO},))
    shutil.copy2(export / "preprocessing.json", folder / "preprocessing.json")
    cli = lab["cli"]
    proc = cli("predict", "--model", folder / "model.onnx", *lab["data"], "--outdir",
               tmp_path / "p")
    assert proc.returncode == 0, proc.stderr[-3000:]
    refused(cli("predict", "--model", edit_card(folder, img_size=96), *lab["data"],
                "--outdir", tmp_path / "p"), "img_size 96", "source 64",
            str(lab["a"] / "best_model.pt"))
    card = json.loads((folder / "preprocessing.json").read_text())
    card["preprocess"]["img_size"] = 64
    card["source_checkpoint"]["path"] = str(tmp_path / "elsewhere" / "best_model.pt")
    (folder / "preprocessing.json").write_text(json.dumps(card))
    refused(cli("predict", "--model", folder / "model.onnx", *lab["data"], "--outdir",
                tmp_path / "p"), "input size is not fixed", "not reachable")
