"""Science integrity through the CLI: no leak between train and validation, weights that
really load, honest labels. Every case checks the exit code, the message, and what
summary.json and data_manifest.json record.

Fixtures mimic real archives: CBIS-DDSM-like per-view PatientIDs with one folder per
view, byte-identical copies filed under another exam, breast-level labels, weights
files in other key layouts. All images are synthetic.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from mammography.data.synthetic import synthesize_mammogram, write_mammogram_dicom
from tests.helpers import read_summary

pytestmark = pytest.mark.slow

TINY = ["--arch", "test_efficientnet", "--no-pretrained", "--img-size", "64",
        "--batch-size", "16", "--epochs", "1", "--num-workers", "0", "--warmup-epochs", "0"]
VIEWS = (("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO"))


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def cbis_like(tmp_path_factory):
    """16 women x 4 views, each view in its own folder with its own per-view PatientID
    (``P_0003_LEFT_CC``) and no AccessionNumber, as CBIS-DDSM has them; a generic CSV
    (path, label, patient) repeating those IDs. Plus one byte-identical copy of woman 0's
    L-CC filed in the CSV as another woman's (P_0099) image."""
    root = tmp_path_factory.mktemp("cbis") / "data"
    rng = np.random.default_rng(5)
    rows = []
    for woman in range(16):
        label = 1 + woman % 4
        for side, view in VIEWS:
            pid = f"Mass-Training_P_{woman:04d}_{'LEFT' if side == 'L' else 'RIGHT'}_{view}"
            path = root / pid / "1.dcm"
            path.parent.mkdir(parents=True)
            image = synthesize_mammogram(rng, label, (96, 80), view=view, laterality=side)
            write_mammogram_dicom(path, image, patient_id=pid, accession="", view=view,
                                  laterality=side, seed_uid_suffix=pid)
            rows.append({"path": str(path.relative_to(root)), "label": label, "patient": pid})
    copy = root / "Mass-Training_P_0099_LEFT_CC" / "1.dcm"
    copy.parent.mkdir(parents=True)
    shutil.copy2(root / "Mass-Training_P_0000_LEFT_CC" / "1.dcm", copy)
    rows.append({"path": str(copy.relative_to(root)), "label": 1,
                 "patient": "Mass-Training_P_0099_LEFT_CC"})
    write_csv(root / "labels.csv", rows)
    return root


def split_of(run_dir: Path) -> list[dict]:
    with (run_dir / "splits.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_per_view_patient_ids_and_copies_never_straddle_the_split(cli, cbis_like, cache_dir,
                                                                  tmp_path):
    proc = cli("train-density", "--csv", cbis_like / "labels.csv", "--dicom-root", cbis_like,
               *TINY, "--val-fraction", "0.25", "--outdir", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "results_1"
    rows = split_of(run)
    assert {"group", "split"} <= set(rows[0])
    side_of_woman: dict[str, set[str]] = {}
    for row in rows:
        woman = row["image_path"].split("_")[2]  # P_0003 of Mass-Training_P_0003_LEFT_CC
        side_of_woman.setdefault(woman, set()).add(row["split"])
    assert all(len(sides) == 1 for sides in side_of_woman.values()), side_of_woman
    copy = next(r for r in rows if "P_0099" in r["image_path"])
    original = next(r for r in rows if r["image_path"].startswith("Mass-Training_P_0000_LEFT_CC"))
    assert copy["group"] == original["group"] and copy["split"] == original["split"]
    manifest = json.loads((run / "data_manifest.json").read_text())
    grouping = manifest["grouping"]
    assert grouping["identical_files_under_several_exams"]["count"] == 1
    assert grouping["components"] == 16  # woman 99 (the copy) joins woman 0
    log = (run / "run.log").read_text()
    assert "65 PatientIDs name a breast and view" in log
    assert "1 files are byte-identical copies under different exams or patients" in log
    summary = read_summary(run)
    assert summary["warnings"]["count"] >= 2
    assert any("byte-identical" in m for m in summary["warnings"]["messages"])


def test_data_check_reports_the_groups_and_the_leakage_it_prevented(cli, cbis_like,
                                                                     cache_dir, tmp_path):
    report = tmp_path / "audit.json"
    proc = cli("data", "check", "--csv", cbis_like / "labels.csv", "--dicom-root", cbis_like,
               "--no-decode", "--json", report)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Split groups: 16" in proc.stdout
    audit = json.loads(report.read_text())
    assert audit["grouping"]["identical_files_under_several_exams"]["count"] == 1
    # the copy joins two patients; the 65 per-view IDs were read as 17 patients
    assert audit["grouping"]["components_joining_several_patient_ids"] == 1
    assert audit["grouping"]["per_view_patient_ids_shortened"] == 65


def test_breast_level_labels_and_a_conflicting_breast(cli, synthetic_dataset, cache_dir,
                                                      tmp_path):
    """A generic per-image CSV: exam X's right breast denser than its left (kept: the exam
    is as dense as its denser breast), exam Y's left breast labelled two ways (excluded,
    naming its lines); a VinDr-style 'DENSITY C' label and a 'BI-RADS 3' one."""
    archive = synthetic_dataset / "archive"
    with (synthetic_dataset / "classificacao.csv").open() as handle:
        exams = [row for row in csv.DictReader(handle) if row["Classification"] in "1234"]
    rows = []
    for exam in exams:
        for path in sorted((archive / exam["AccessionNumber"]).glob("*.dcm")):
            rows.append({"path": str(path.relative_to(archive)),
                         "label": exam["Classification"]})
    x, y, z = exams[0]["AccessionNumber"], exams[1]["AccessionNumber"], exams[2][
        "AccessionNumber"]
    for row in rows:
        name = Path(row["path"]).name
        if row["path"].startswith(x + "/"):
            row["label"] = "2" if name.startswith("L_") else "3"
        if row["path"].startswith(y + "/") and name == "L_MLO.dcm":
            row["label"] = "4" if exams[1]["Classification"] != "4" else "1"
        if row["path"].startswith(z + "/"):
            row["label"] = "DENSITY C" if name.startswith("L_") else "BI-RADS 3"
    csv_path = write_csv(tmp_path / "images.csv", rows)
    bad_line = next(i for i, r in enumerate(rows, start=2) if r["label"] == "BI-RADS 3")
    report = tmp_path / "audit.json"
    proc = cli("data", "check", "--csv", csv_path, "--dicom-root", archive, "--no-decode",
               "--json", report)
    assert proc.returncode == 0, proc.stderr[-3000:]
    audit = json.loads(report.read_text())
    reasons = [e["reason"] for e in audit["exclusions"]]
    assert any(f"within the L breast of exam {y}" in r for r in reasons)
    assert any("BI-RADS assessment category" in r for r in reasons)
    assert f"images.csv line {bad_line} " in proc.stdout  # the bad row's own line
    assert audit["label_checks"]["exams_with_breast_labels"] == 1
    assert "Exams labelled per breast: 1" in proc.stdout
    proc = cli("train-density", "--csv", csv_path, "--dicom-root", archive, *TINY,
               "--outdir", tmp_path / "runs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "results_1"
    manifest = json.loads((run / "data_manifest.json").read_text())
    assert any(f"within the L breast of exam {y}" in e["reason"]
               for e in manifest["exclusions"])
    kept = {r["image_path"]: int(r["label"]) for r in split_of(run)}
    assert {kept[p] for p in kept if p.startswith(x + "/")} == {2, 3}
    assert not any(p.startswith(y + "/L_") for p in kept)
    assert {kept[p] for p in kept if p.startswith(z + "/")} == {3}  # DENSITY C only


@pytest.fixture(scope="module")
def weights_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    source = timm.create_model("test_efficientnet", pretrained=False)

    def rename(key):  # the same tensors under another naming scheme
        base, kind = key.rsplit(".", 1)
        return "_" + base.replace(".", "_") + "." + kind

    torch.save({"state_dict": {rename(k): v for k, v in source.state_dict().items()}},
               folder / "other_layout.pth")
    partial = dict(source.state_dict())
    del partial["bn2.weight"], partial["bn2.bias"]
    torch.save(partial, folder / "partial.pt")
    return folder


def test_weights_in_another_layout_load_fully_and_are_recorded(cli, synthetic_dataset,
                                                               cache_dir, tmp_path,
                                                               weights_files):
    weights = weights_files / "other_layout.pth"
    args = ["--csv", synthetic_dataset / "classificacao.csv", "--dicom-root",
            synthetic_dataset / "archive"]
    proc = cli("train-density", *args, *TINY, "--weights", weights, "--outdir", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = read_summary(tmp_path / "results_1")
    model = summary["model_config"]
    assert model["pretrained"] == "file"
    record = model["weights"]
    assert record["tensors_loaded"] == record["tensors_expected"] == 73
    assert record["path"] == str(weights.resolve()) and len(record["sha256"]) == 64
    assert record["layout"].startswith("by position") and record["wrapper"] == "state_dict"
    assert "73 of 73 backbone tensors loaded" in (tmp_path / "results_1" / "run.log").read_text()
    proc = cli("embed", *args, "--arch", "test_efficientnet", "--img-size", "64",
               "--weights", weights, "--probe-folds", "0", "--outdir", tmp_path / "emb")
    assert proc.returncode == 0, proc.stderr[-3000:]
    embed = read_summary(tmp_path / "emb" / "results_1")["model_config"]
    assert embed["pretrained"] == "file" and embed["weights"]["tensors_loaded"] == 73


def test_partial_weights_are_refused_unless_allowed(cli, synthetic_dataset, cache_dir,
                                                    tmp_path, weights_files):
    weights = weights_files / "partial.pt"
    args = ["--csv", synthetic_dataset / "classificacao.csv", "--dicom-root",
            synthetic_dataset / "archive", *TINY, "--weights", weights]
    proc = cli("train-density", *args, "--outdir", tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert f"--weights {weights} does not fit the test_efficientnet backbone" in proc.stderr
    assert "71 of 73 tensors would load" in proc.stderr and "bn2.weight" in proc.stderr
    assert read_summary(tmp_path / "results_1")["status"] == "failed"
    proc = cli("train-density", *args, "--allow-partial-weights", "--outdir", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = read_summary(tmp_path / "results_2")
    assert summary["hyperparameters"]["allow_partial_weights"] is True
    record = summary["model_config"]["weights"]
    assert record["partial"] and record["missing"] == ["bn2.bias", "bn2.weight"]
    assert any("only 71 of 73 backbone tensors came from" in m
               for m in summary["warnings"]["messages"])
