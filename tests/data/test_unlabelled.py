"""Images to score without labels: accession CSVs, path CSVs, bare folders, and what is left out."""

import csv
import os
import shutil
from pathlib import Path

import pytest

from mammography.data.unlabelled import load_unlabelled
from mammography.errors import DataError
from mammography.record.reporter import CollectingReporter

PYDICOM_FILES = Path(__import__("pydicom").__file__).parent / "data" / "test_files"


def _exams(dataset: Path) -> list[str]:
    with (dataset / "classificacao.csv").open() as handle:
        return [row["AccessionNumber"] for row in csv.DictReader(handle)]


def _pacs_folder(dataset: Path, target: Path) -> dict[str, Path]:
    """One exam's four views as a PACS export names them (no or odd extensions), nested,
    plus real objects that are not mammograms and a note."""
    exam = dataset / "archive" / _exams(dataset)[0]
    views = sorted(exam.glob("*.dcm"))
    names = {views[0]: target / "STUDY1" / "IM000001",
             views[1]: target / "STUDY1" / "SERIES2" / "1.2.826.0.1.3680043.2.1125.7",
             views[2]: target / "IMG0003.IMA"}
    for source, path in names.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)
    shutil.copyfile(PYDICOM_FILES / "CT_small.dcm", target / "ct_slice")
    shutil.copyfile(PYDICOM_FILES / "reportsi.dcm", target / "report")
    (target / "README.txt").write_text("exported by the PACS\n")
    return {path.name: source for source, path in names.items()}


def test_a_bare_folder_of_extension_less_files_is_read_by_content(synthetic_dataset, tmp_path):
    copies = _pacs_folder(synthetic_dataset, tmp_path / "pacs")
    out = CollectingReporter()
    table = load_unlabelled(None, tmp_path / "pacs", max_bad_fraction=0.5, out=out)
    assert sorted(r.path.name for r in table.images) == sorted(copies)
    assert all(r.label is None and r.row is None for r in table.images)
    # identity from the headers: one exam, its accession and patient, views and sides
    assert len({r.accession for r in table.images}) == 1
    assert table.images[0].accession == synthetic_dataset.joinpath(
        "archive", _exams(synthetic_dataset)[0]).name
    assert {r.view for r in table.images} <= {"CC", "MLO"} and all(r.laterality in "LR"
                                                                  for r in table.images)
    assert table.csv_path is None and table.csv_format == "folder"
    reasons = {Path(e["path"]).name: e["reason"] for e in table.exclusions}
    assert reasons["ct_slice"] == "Modality CT: not a mammogram"
    assert reasons["report"].startswith("no pixel data")
    assert sum("skipping unusable image" in w for w in out.warnings) == 2
    assert any("1 files under" in line and "README.txt" in line for line in out.lines)


def test_a_corrupt_file_is_excluded_with_its_reason(synthetic_dataset, tmp_path):
    _pacs_folder(synthetic_dataset, tmp_path / "pacs")
    good = next((tmp_path / "pacs").rglob("IM000001")).read_bytes()
    (tmp_path / "pacs" / "broken").write_bytes(good[:900])  # cut inside the header
    shutil.copyfile(PYDICOM_FILES / "MR_truncated.dcm", tmp_path / "pacs" / "truncated")
    out = CollectingReporter()
    table = load_unlabelled(None, tmp_path / "pacs", max_bad_fraction=0.8, out=out)
    reasons = {Path(e["path"]).name: e["reason"] for e in table.exclusions}
    assert "broken" in reasons and reasons["broken"]
    assert reasons["truncated"].startswith("truncated pixel data")
    assert not {"broken", "truncated"} & {r.path.name for r in table.images}
    assert any("broken" in w for w in out.warnings)


def test_a_csv_of_accessions_only(synthetic_dataset, tmp_path):
    chosen = _exams(synthetic_dataset)[:3]
    path = tmp_path / "todo.csv"
    path.write_text("AccessionNumber\n" + "\n".join(chosen) + f"\n{chosen[0]}\n")
    out = CollectingReporter()
    table = load_unlabelled(path, synthetic_dataset / "archive", out=out)
    assert {r.accession for r in table.images} == set(chosen)
    on_disk = sum(len(list((synthetic_dataset / "archive" / a).glob("*.dcm"))) for a in chosen)
    assert len(table.images) == on_disk
    assert all(r.label is None and r.patient for r in table.images)
    assert {r.row for r in table.images if r.accession == chosen[0]} == {2}
    assert any("listed 2 times" in w for w in out.warnings)
    # the exams of the archive not listed are named, and recorded as not scored
    others = len(list((synthetic_dataset / "archive").iterdir())) - 3
    assert sum(e["reason"] == "folder has no CSV row" for e in table.exclusions) == others


def test_labels_in_the_csv_are_ignored(synthetic_dataset):
    out = CollectingReporter()
    table = load_unlabelled(synthetic_dataset / "classificacao.csv", None, out=out)
    assert all(r.label is None for r in table.images)
    # class 5 exams are images like any other here: nobody is asking for their label
    assert table.num_exams == len(_exams(synthetic_dataset))
    assert any("Classification" in line and "ignored" in line for line in out.lines)


def test_a_csv_of_paths_resolves_and_reports_missing_files(synthetic_dataset, tmp_path):
    archive = synthetic_dataset / "archive"
    files = sorted(archive.rglob("*.dcm"))[:3]
    path = tmp_path / "paths.csv"
    rows = [str(files[0]), str(files[1].relative_to(archive)), "nowhere/missing.dcm",
            str(files[2]), str(files[0])]
    path.write_text("path,label\n" + "".join(f"{r},B\n" for r in rows))
    out = CollectingReporter()
    table = load_unlabelled(path, archive, out=out)
    assert [r.path for r in table.images] == [files[0], archive / files[1].relative_to(archive),
                                             files[2]]
    assert [e["reason"] for e in table.exclusions] == ["file not found"]
    assert table.exclusions[0]["row"] == 4
    assert any("already listed on line 2" in w for w in out.warnings)


def test_a_csv_naming_no_image_is_refused(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("PatientID,Classification\nP1,2\n")
    with pytest.raises(DataError, match="AccessionNumber column"):
        load_unlabelled(path, tmp_path, out=CollectingReporter())


def test_a_folder_without_dicom_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(DataError, match="No DICOM files under"):
        load_unlabelled(None, tmp_path, out=CollectingReporter())


def test_on_bad_image_error_names_the_file_without_a_csv_line(synthetic_dataset, tmp_path):
    _pacs_folder(synthetic_dataset, tmp_path / "pacs")
    with pytest.raises(DataError) as error:
        load_unlabelled(None, tmp_path / "pacs", on_bad_image="error", out=CollectingReporter())
    assert "CSV line" not in str(error.value) and "pacs" in str(error.value)


def test_a_second_scoring_reads_no_header_and_still_judges_each_file(synthetic_dataset,
                                                                     tmp_path, cache_dir):
    """predict shares training's header memo: nothing is opened the second time, what
    rules a file out (here a CT slice) is decided again, and a changed file is re-read."""
    _pacs_folder(synthetic_dataset, tmp_path / "pacs")
    old = 1_600_000_000
    for path in (tmp_path / "pacs").rglob("*"):
        if path.is_file():
            os.utime(path, (old, old))  # settled: older than the memo's racy window
    first = load_unlabelled(None, tmp_path / "pacs", max_bad_fraction=0.5,
                            out=CollectingReporter())
    out = CollectingReporter()
    second = load_unlabelled(None, tmp_path / "pacs", max_bad_fraction=0.5, out=out)
    assert first.headers["files_read"] == 5 and second.headers["files_read"] == 0
    assert second.headers["files_from_memo"] == 5
    assert any(line.startswith("DICOM headers: 5 remembered, 0 read") for line in out.lines)
    assert [(r.path, r.accession, r.view, r.laterality) for r in second.images] == \
        [(r.path, r.accession, r.view, r.laterality) for r in first.images]
    assert {Path(e["path"]).name: e["reason"] for e in second.exclusions}["ct_slice"] == \
        "Modality CT: not a mammogram"
    # a view replaced by another exam's image (same name): read again, not taken from memo
    replaced = tmp_path / "pacs" / "IMG0003.IMA"
    other = sorted((synthetic_dataset / "archive" / _exams(synthetic_dataset)[1]).glob("*.dcm"))
    shutil.copyfile(other[0], replaced)
    os.utime(replaced, (old + 10, old + 10))
    third = load_unlabelled(None, tmp_path / "pacs", max_bad_fraction=0.5,
                            out=CollectingReporter())
    assert third.headers["files_read"] == 1
    assert next(r for r in third.images if r.path == replaced).accession == \
        _exams(synthetic_dataset)[1]
