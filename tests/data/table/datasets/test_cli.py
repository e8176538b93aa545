"""The public datasets through the CLI: data check, the official split, training and evaluation.

Each download is a ``layouts.py`` miniature (the publisher's columns, quirks and
folders, synthetic pixels, a partial download). What the commands report is
checked against what the builder wrote.
"""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest

from tests.data.table.datasets import layouts
from tests.helpers import read_summary

TINY = ("--arch", "test_efficientnet", "--no-pretrained", "--img-size", "64", "--epochs", "1",
        "--batch-size", "8")
BUILDERS = {"vindr-mammo": layouts.vindr_mammo, "rsna": layouts.rsna,
            "cbis-ddsm": layouts.cbis_ddsm, "inbreast": layouts.inbreast, "embed": layouts.embed}


def source(layout, name):
    args = ["--dataset", name, "--dicom-root", layout.root]
    for path in layout.csvs:
        args += ["--csv", path]
    return args


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    root = tmp_path_factory.mktemp("downloads")
    return {name: build(root / name) for name, build in BUILDERS.items()}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_data_check_reads_each_download_and_says_how_much_is_there(name, downloads, cli,
                                                                    tmp_path, cache_dir):
    layout = downloads[name]
    report = tmp_path / "check.json"
    proc = cli("data", "check", *source(layout, name), "--no-decode", "--json", report)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    result = json.loads(report.read_text())
    dataset = result["dataset"]
    assert dataset["name"] == name
    assert dataset["images_listed"] == layout.expect["listed"]
    assert dataset["images_present"] == layout.expect["present"]
    missing = layout.expect["listed"] - layout.expect["present"]
    assert result["exclusion_reasons"]["not in the download"] == missing
    assert (f"{layout.expect['present']} of its {layout.expect['listed']} listed images are in "
            "the download") in proc.stdout
    assert result["images"] == layout.expect["usable"]


def test_cbis_official_split_leak_is_refused_then_resolved(downloads, cli, tmp_path, cache_dir):
    layout = downloads["cbis-ddsm"]
    proc = cli("data", "check", *source(layout, "cbis-ddsm"), "--no-decode",
               "--split", "official")
    assert proc.returncode == 2
    assert "the official split leaks: 1 split group" in proc.stderr
    assert "P_00004 (2 training, 2 test images)" in proc.stderr
    assert "--official-split-leak drop" in proc.stderr and "Traceback" not in proc.stderr
    report = tmp_path / "check.json"
    proc = cli("data", "check", *source(layout, "cbis-ddsm"), "--no-decode", "--split",
               "official", "--official-split-leak", "drop", "--json", report)
    assert proc.returncode == 0, proc.stderr
    split = json.loads(report.read_text())["dataset"]["split"]
    assert split["keeps"] == "train" and split["leak_policy"] == "drop"
    assert split["leaks"]["groups"] == 1 and split["leaks"]["images"] == {"train": 2, "test": 2}
    # Training: P_00001-P_00003 (the Calc- copies of P_00001 collapsed) without P_00004.
    assert split["kept"] == 8 and split["official_sets"] == {"train": 10, "test": 5}


def test_split_needs_a_dataset_and_a_dataset_with_an_official_split(downloads, cli,
                                                                    cache_dir):
    rsna = downloads["rsna"]
    proc = cli("data", "check", "--csv", rsna.csvs[0], "--split", "official")
    assert proc.returncode == 2 and "--split official needs --dataset NAME" in proc.stderr
    proc = cli("data", "check", *source(rsna, "rsna"), "--no-decode", "--split", "test")
    assert proc.returncode == 2
    assert "RSNA Screening Mammography has no official training/test split" in proc.stderr


@pytest.mark.slow
def test_vindr_official_split_trains_on_training_and_evaluates_on_test(downloads, cli,
                                                                       tmp_path, cache_dir):
    layout = downloads["vindr-mammo"]
    expect = layout.expect
    proc = cli("train-density", *source(layout, "vindr-mammo"), "--split", "official", *TINY,
               "--val-fraction", "0.3", "--outdir", tmp_path / "runs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "results_1"
    summary = read_summary(run)
    dataset = summary["data_config"]["dataset"]
    assert summary["hyperparameters"]["split"] == "official"
    assert dataset["split"]["kept"] == expect["train"]
    assert dataset["split"]["held_out"] == expect["test"]
    with (run / "splits.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == expect["train"]  # no test image in training or validation
    for row in rows:
        study = row["image_path"].split("/")[1]
        assert int(row["label"]) == expect["breast_labels"][(study, row["laterality"])]
    manifest = json.loads((run / "data_manifest.json").read_text())
    assert manifest["dataset"]["name"] == "vindr-mammo"
    assert sum("official test set" in e["reason"] for e in manifest["exclusions"]) == \
        expect["test"]

    proc = cli("eval-export", "--run", run, *source(layout, "vindr-mammo"), "--split", "test",
               "--bootstrap", "0", "--export", "none", "--outdir", tmp_path / "evals")
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluation = tmp_path / "evals" / "results_1"
    assert read_summary(evaluation)["data_config"]["dataset"]["split"]["keeps"] == "test"
    predictions = next(evaluation.rglob("predictions_breast.csv"))
    with predictions.open() as handle:
        breasts = list(csv.DictReader(handle))
    assert len(breasts) == expect["test"] // 2  # two views per breast
    for row in breasts:
        assert int(row["num_images"]) == 2
        assert int(row["true_label"]) == \
            expect["breast_labels"][(row["accession"], row["laterality"])]

    # A run that trained on every image (the test set too) is not evaluated on the test set.
    proc = cli("train-density", *source(layout, "vindr-mammo"), *TINY,
               "--outdir", tmp_path / "runs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = cli("eval-export", "--run", tmp_path / "runs" / "results_2",
               *source(layout, "vindr-mammo"), "--split", "test", "--export", "none",
               "--outdir", tmp_path / "evals")
    assert proc.returncode == 2
    assert "belong to patients or exams" in proc.stderr and "--split official" in proc.stderr

    # predict reads the download without labels.
    proc = cli("predict", "--run", run, *source(layout, "vindr-mammo"),
               "--outdir", tmp_path / "predictions")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with next((tmp_path / "predictions").rglob("predictions_image.csv")).open() as handle:
        assert len(list(csv.DictReader(handle))) == expect["present"]


@pytest.mark.slow
def test_cbis_training_records_the_leak_and_the_collapsed_rows(downloads, cli, tmp_path,
                                                               cache_dir):
    layout = downloads["cbis-ddsm"]
    proc = cli("train-density", *source(layout, "cbis-ddsm"), "--split", "official",
               "--official-split-leak", "train", *TINY, "--val-fraction", "0.3",
               "--outdir", tmp_path / "runs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "results_1"
    split = read_summary(run)["data_config"]["dataset"]["split"]
    assert split["leak_policy"] == "train" and split["leaks"]["groups"] == 1
    assert split["kept"] == 10  # P_00004's training images stay
    assert "--official-split-leak train: 2 images of the test set left out" in \
        (run / "run.log").read_text()
    with (run / "splits.csv").open() as handle:
        patients = Counter(row["patient"] for row in csv.DictReader(handle))
    assert patients == {"P_00001": 2, "P_00002": 2, "P_00003": 4, "P_00004": 2}
