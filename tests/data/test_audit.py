"""`mammography data check` and `data cache` through the CLI."""

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import child_env, write_film_archive

pytestmark = pytest.mark.slow


@pytest.fixture
def broken_dataset(synthetic_dataset, tmp_path):
    """The shared dataset plus a text file posing as DICOM and a truncated DICOM."""
    data = tmp_path / "data"
    shutil.copytree(synthetic_dataset, data)
    exams = sorted(p for p in (data / "archive").iterdir() if p.is_dir())
    (exams[0] / "notes.dcm").write_text("not a DICOM file")
    victim = sorted(exams[1].glob("*.dcm"))[0]
    victim.write_bytes(victim.read_bytes()[:-5000])
    return data


def test_check_reports_counts_and_every_exclusion(cli, broken_dataset, cache_dir, tmp_path):
    report_file = tmp_path / "audit.json"
    proc = cli("data", "check", "--csv", broken_dataset / "classificacao.csv",
               "--dicom-root", broken_dataset / "archive", "--img-size", "64",
               "--json", report_file, env=child_env(MAMMOGRAPHY_CACHE_DIR=str(cache_dir)))
    assert proc.returncode == 0, proc.stderr
    assert "Verdict: usable" in proc.stdout
    report = json.loads(report_file.read_text())
    reasons = [e["reason"] for e in report["exclusions"]]
    assert sum("class 5" in r for r in reasons) == 2
    assert any("notes.dcm" in str(e.get("path")) for e in report["exclusions"])
    assert any("truncat" in r.lower() or "pixel data" in r.lower() for r in reasons), reasons
    assert report["patients"] > 10 and set(report["class_distribution_exams"]) == {
        "1", "2", "3", "4"}
    assert "L-CC" in report["views"]
    assert not (cache_dir / "images").exists()  # check never writes the cache


def test_check_without_decoding_is_header_only(cli, broken_dataset, cache_dir):
    proc = cli("data", "check", "--csv", broken_dataset / "classificacao.csv", "--no-decode",
               env=child_env(MAMMOGRAPHY_CACHE_DIR=str(cache_dir)))
    assert proc.returncode == 0, proc.stderr
    assert "notes.dcm" in proc.stdout + proc.stderr


def test_on_bad_image_error_stops_with_exit_2(cli, broken_dataset, cache_dir):
    proc = cli("data", "check", "--csv", broken_dataset / "classificacao.csv",
               "--on-bad-image", "error", env=child_env(MAMMOGRAPHY_CACHE_DIR=str(cache_dir)))
    assert proc.returncode == 2
    assert "2 unusable images in all" in proc.stderr and "--on-bad-image skip" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cache_builds_then_reuses(cli, synthetic_dataset, cache_dir):
    env = child_env(MAMMOGRAPHY_CACHE_DIR=str(cache_dir))
    args = ("data", "cache", "--csv", synthetic_dataset / "classificacao.csv",
            "--img-size", "64", "--workers", "2")
    first = cli(*args, env=env)
    assert first.returncode == 0, first.stderr
    assert "0 reused" in first.stdout and "Cache ready" in first.stdout
    second = cli(*args, env=env)
    assert "0 decoded" in second.stdout


def test_missing_csv_is_exit_2(cli, tmp_path):
    proc = cli("data", "check", "--csv", tmp_path / "nope.csv")
    assert proc.returncode == 2 and "--csv" in proc.stderr and "does not exist" in proc.stderr


def _blank_out(path):
    """Make a DICOM file decode to a blank image (every pixel 0, window tags kept)."""
    import numpy as np
    import pydicom

    ds = pydicom.dcmread(path)
    ds.PixelData = np.zeros((ds.Rows, ds.Columns), np.uint16).tobytes()
    ds.save_as(path)


def test_check_applies_max_bad_fraction_to_decode_failures(cli, synthetic_dataset, cache_dir,
                                                           tmp_path):
    """data check, data cache and training agree: too many undecodable images = exit 2."""
    data = tmp_path / "data"
    shutil.copytree(synthetic_dataset, data)
    files = sorted((data / "archive").rglob("*.dcm"))
    for path in files[: len(files) // 3]:  # decode failures the header cannot see
        _blank_out(path)
    env = child_env(MAMMOGRAPHY_CACHE_DIR=str(cache_dir))
    args = ("--csv", data / "classificacao.csv", "--img-size", "64")
    check = cli("data", "check", *args, env=env)
    cache = cli("data", "cache", *args, env=env)
    for proc in (check, cache):
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "--max-bad-fraction" in proc.stderr and "Traceback" not in proc.stderr
    assert "blank image" in check.stdout + check.stderr
    relaxed = cli("data", "check", *args, "--max-bad-fraction", "0.5", "--json",
                  tmp_path / "a.json", env=env)
    assert relaxed.returncode == 0, relaxed.stderr
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["unusable_images"] == len(files) // 3
    # Zeroed pixels map to black (MONOCHROME2) or, inverted, to white (MONOCHROME1).
    assert sum(e["reason"].startswith(("blank image", "saturated image", "constant image"))
               for e in report["exclusions"]) == len(files) // 3


def test_no_decode_rejects_what_the_header_rules_out_and_finds_files_by_content(
        cli, synthetic_dataset, cache_dir, tmp_path):
    import gzip

    from pydicom.data import get_testdata_file

    data = tmp_path / "data"
    shutil.copytree(synthetic_dataset, data)
    exams = sorted(p for p in (data / "archive").iterdir() if p.is_dir())
    shutil.copy(get_testdata_file("test-SR.dcm"), exams[0] / "report.dcm")
    shutil.copy(get_testdata_file("SC_rgb_rle.dcm"), exams[1] / "colour.dcm")
    first = sorted(exams[2].glob("*.dcm"))[0]
    (exams[2] / "IM000001").write_bytes(first.read_bytes())  # no extension, found by content
    (exams[3] / "packed.dcm.gz").write_bytes(gzip.compress(first.read_bytes()))
    report_file = tmp_path / "audit.json"
    proc = cli("data", "check", "--csv", data / "classificacao.csv", "--no-decode",
               "--json", report_file, env=child_env(MAMMOGRAPHY_CACHE_DIR=str(cache_dir)))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(report_file.read_text())
    reasons = {Path(e["path"]).name: e["reason"] for e in report["exclusions"] if e.get("path")}
    assert reasons["report.dcm"].startswith("no pixel data (SR")
    assert "photometric interpretation 'RGB'" in reasons["colour.dcm"]
    assert reasons["packed.dcm.gz"].startswith("gzip-compressed file: decompress it first")
    assert "IM000001" not in reasons
    baseline_file = tmp_path / "baseline.json"
    cli("data", "check", "--csv", synthetic_dataset / "classificacao.csv", "--no-decode",
        "--json", baseline_file, env=child_env(MAMMOGRAPHY_CACHE_DIR=str(cache_dir)))
    # Every image of the untouched dataset, plus the extension-less copy.
    assert report["images"] == json.loads(baseline_file.read_text())["images"] + 1
    assert report["fingerprint"]["manufacturer"] and "WARNING" in proc.stdout + proc.stderr


def test_check_names_the_images_whose_segmentation_looks_wrong(cli, cache_dir, tmp_path):
    import numpy as np

    from mammography.data.synthetic import synthesize_mammogram, write_mammogram_dicom

    films = write_film_archive(tmp_path / "films")
    # A film whose unexposed border is too broad to be taken for an edge strip (10 % of
    # the image): the breast touches it, and the "breast" runs along all four sides.
    framed = synthesize_mammogram(np.random.default_rng(3), 2, (400, 320), "CC", "L")
    framed[:40], framed[-40:], framed[:, :32], framed[:, -32:] = 0.9, 0.9, 0.9, 0.9
    odd = films / "archive" / "F001" / "X_CC.dcm"
    write_mammogram_dicom(odd, framed, patient_id="FP1", accession="F001", view="CC",
                          laterality="L", window=False, seed_uid_suffix="odd")
    report_file = tmp_path / "audit.json"
    proc = cli("data", "check", "--csv", films / "classificacao.csv", "--img-size", "128x64",
               "--json", report_file, env=child_env(MAMMOGRAPHY_CACHE_DIR=str(cache_dir)))
    assert proc.returncode == 0, proc.stderr
    segmentation = json.loads(report_file.read_text())["segmentation"]
    assert segmentation["checked"] == 5 and segmentation["input_shape"] == [128, 64]
    assert [item["path"] for item in segmentation["flagged"]] == [str(odd)]
    assert "runs along 4 sides" in segmentation["flagged"][0]["problems"][0]
    assert 0.4 < segmentation["median_breast_share"] <= 1
    assert "1 look wrong" in proc.stdout and str(odd) in proc.stdout


def test_check_json_is_written_when_the_data_is_refused(cli, synthetic_dataset, cache_dir,
                                                       tmp_path):
    """Issue 23 (6): the audit is what the user needs most when the verdict is unusable;
    before, --json wrote nothing then."""
    data = tmp_path / "data"
    shutil.copytree(synthetic_dataset, data)
    for path in sorted((data / "archive").rglob("*.dcm"))[::3]:
        path.write_bytes(b"not DICOM")
    out = tmp_path / "audit.json"
    proc = cli("data", "check", "--csv", data / "classificacao.csv", "--dicom-root",
               data / "archive", "--no-decode", "--json", out, env=child_env())
    assert proc.returncode == 2 and "max-bad-fraction" in proc.stderr
    audit = json.loads(out.read_text())
    assert audit["usable"] is False and "max-bad-fraction" in audit["error"]
    assert audit["unusable_images"] > 0
    assert any(e["reason"].startswith("not a DICOM file") for e in audit["exclusions"])


def test_check_names_the_one_for_processing_image(cli, synthetic_dataset, cache_dir,
                                                  tmp_path):
    """Issue 23 (6): one "For Processing" image among many: the WARNING names its file
    and exam."""
    import pydicom

    data = tmp_path / "data"
    shutil.copytree(synthetic_dataset, data)
    odd = sorted((data / "archive").rglob("*.dcm"))[7]
    ds = pydicom.dcmread(odd)
    ds.PresentationIntentType = "FOR PROCESSING"
    ds.save_as(odd)
    proc = cli("data", "check", "--csv", data / "classificacao.csv", "--dicom-root",
               data / "archive", "--no-decode", env=child_env())
    assert proc.returncode == 0, proc.stderr
    warning = next(line for line in (proc.stdout + proc.stderr).splitlines()
                   if "WARNING" in line and "For Processing" in line)
    assert odd.name in warning and f"of exam {odd.parent.name}" in warning, warning
