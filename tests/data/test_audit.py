"""`mammography data check` and `data cache` through the CLI."""

import json
import shutil

import pytest

from tests.helpers import child_env

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
    assert "notes.dcm" in proc.stderr and "--on-bad-image skip" in proc.stderr
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
