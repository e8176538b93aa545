"""eval-export and predict score through one path: the same probabilities, the same rule.

One tiny model (test_efficientnet, 64 px, one epoch) and one CSV of exams,
one of whose images has all-zero pixels (a readable header, an image
preprocessing refuses). eval-export (labels, the metric pack) and predict
(no labels) must leave that image out the same way - a WARNING and an
exclusion in data_manifest.json under the default ``--on-bad-image skip``,
exit 2 naming it under ``error`` - and give every other image the very same
probabilities in their ``predictions_image.csv``.
"""

import csv
import json
import shutil

import pandas as pd
import pytest

from tests.helpers import child_env, run_cli

pytestmark = pytest.mark.slow

PROBS = ["prob_A", "prob_B", "prob_C", "prob_D"]
TRAIN = ["--arch", "test_efficientnet", "--no-pretrained", "--img-size", "64", "--epochs", "1",
         "--lr", "0.003", "--warmup-epochs", "0", "--num-workers", "0"]
EXAMS = 12


@pytest.fixture(scope="module")
def scored(synthetic_dataset, tmp_path_factory):
    import pydicom

    root = tmp_path_factory.mktemp("one_path")
    env = child_env(MAMMOGRAPHY_CACHE_DIR=str(root / "cache"))

    def cli(*args, expect=0):
        proc = run_cli(*args, env=env)
        assert proc.returncode == expect, proc.stdout[-2000:] + proc.stderr[-3000:]
        return proc

    cli("train-density", "--csv", synthetic_dataset / "classificacao.csv", "--dicom-root",
        synthetic_dataset / "archive", *TRAIN, "--outdir", root / "train")
    # The same CSV for both commands: labelled exams (no class 5, which eval-export leaves
    # out and predict, reading no labels, would score), their folders copied.
    with (synthetic_dataset / "classificacao.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["Classification"] != "5"][:EXAMS]
    archive = root / "archive"
    for row in rows:
        shutil.copytree(synthetic_dataset / "archive" / row["AccessionNumber"],
                        archive / row["AccessionNumber"])
    table = root / "exams.csv"
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    blank = sorted((archive / rows[0]["AccessionNumber"]).glob("*.dcm"))[0]
    dataset = pydicom.dcmread(blank)
    dataset.PixelData = bytes(len(dataset.PixelData))
    dataset.save_as(blank)
    model = root / "train" / "results_1"
    images = ["--csv", table, "--dicom-root", archive]
    evaluated = cli("eval-export", "--run", model, *images, "--bootstrap", "0", "--export",
                    "none", "--outdir", root / "eval")
    predicted = cli("predict", "--run", model, *images, "--outdir", root / "pred")
    return {"cli": cli, "model": model, "images": images, "blank": blank, "root": root,
            "eval": root / "eval" / "results_1", "pred": root / "pred" / "results_1",
            "stdout": {"eval": evaluated.stdout, "pred": predicted.stdout}}


def _probabilities(path):
    table = pd.read_csv(path, dtype=str)  # the cells as written: equal text, equal floats
    return table.set_index("image_path")[PROBS].sort_index()


def test_both_commands_give_each_image_the_same_probabilities(scored):
    evaluated = _probabilities(scored["eval"] / "models" / "results_1" /
                               "predictions_image.csv")
    predicted = _probabilities(scored["pred"] / "predictions_image.csv")
    assert len(evaluated) >= 3 * EXAMS - 1
    assert list(evaluated.index) == list(predicted.index)
    pd.testing.assert_frame_equal(evaluated, predicted)


@pytest.mark.parametrize("command", ["eval", "pred"])
def test_the_undecodable_image_is_left_out_with_a_warning_and_an_exclusion(scored, command):
    blank = str(scored["blank"])
    run = scored[command]
    assert blank not in set(_probabilities(next(run.rglob("predictions_image.csv"))).index)
    manifest = json.loads((run / "data_manifest.json").read_text())
    (excluded,) = [e for e in manifest["exclusions"] if blank.endswith(e["path"])]
    assert excluded["reason"]
    log = (run / "run.log").read_text()
    assert f"WARNING: skipping undecodable image {blank}" in log
    summary = json.loads((run / "summary.json").read_text())
    assert summary["warnings"]["count"] >= 1


def test_on_bad_image_error_stops_both_commands_naming_the_image(scored):
    for command in ("eval-export", "predict"):
        proc = scored["cli"](command, "--run", scored["model"], *scored["images"],
                             "--on-bad-image", "error", "--outdir",
                             scored["root"] / f"{command}_strict", expect=2)
        assert str(scored["blank"]) in proc.stderr and "--on-bad-image skip" in proc.stderr
        assert "Traceback" not in proc.stderr
