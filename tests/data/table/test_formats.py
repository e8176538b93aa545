"""One reader, labels optional: the layouts read alike with and without labels, and a new
layout is one small class in TABLE_FORMATS."""

import dataclasses
from pathlib import Path

import pytest

from mammography.data.density_labels import label_problem, parse_label
from mammography.data.table import reader
from mammography.data.table.exclusions import exclude_row
from mammography.data.table.formats import CsvTable, LabelRules, TableRequest
from mammography.data.table.reader import load_label_table, read_image_table
from mammography.data.table.records import ImageRecord, LabelTable
from mammography.data.unlabelled import unlabelled_table
from mammography.errors import DataError
from mammography.record.reporter import CollectingReporter, Reporter

LABELLED = TableRequest(labels=LabelRules())
UNLABELLED = TableRequest(labels=None, find_by_content=True)


def _archive(root: Path, exams: dict[str, int]) -> Path:
    archive = root / "archive"
    for accession, n in exams.items():
        (archive / accession).mkdir(parents=True)
        for i in range(n):
            (archive / accession / f"v{i}.dcm").write_bytes(b"x")
    return archive


def _reasons(table: LabelTable) -> list[tuple]:
    return [(e.get("row"), e.get("accession"), e["reason"]) for e in table.exclusions]


def test_an_accession_csv_reads_alike_with_and_without_labels(tmp_path):
    archive = _archive(tmp_path, {"1": 2, "2": 1, "3": 1, "empty": 0, "orphan": 1})
    csv = tmp_path / "c.csv"
    csv.write_text("AccessionNumber,Classification,PatientID\n1,2,P1\n,3,P2\n../x,1,P3\n"
                   "empty,4,P4\n2,B,P5\n1,2,P1\n3,1,P6\n")
    labelled_out, unlabelled_out = CollectingReporter(), CollectingReporter()
    labelled = read_image_table(csv, archive, LABELLED, labelled_out)
    unlabelled = read_image_table(csv, archive, UNLABELLED, unlabelled_out)
    key = [(r.path, r.accession, r.patient, r.row) for r in labelled.images]
    assert key == [(r.path, r.accession, r.patient, r.row) for r in unlabelled.images]
    assert [r.label for r in labelled.images] == [2, 2, 2, 1]
    assert {r.label for r in unlabelled.images} == {None}
    assert _reasons(labelled) == _reasons(unlabelled) == [
        (3, None, "empty AccessionNumber"),
        (4, "../x", "AccessionNumber is not a plain folder name (no '/', '\\', '.' or '..')"),
        (5, "empty", f"no DICOM files under {archive / 'empty'}"),
        (None, "orphan", "folder has no CSV row")]
    assert labelled.csv_format == unlabelled.csv_format == "classificacao"
    assert labelled.csv_columns == ["AccessionNumber", "Classification", "PatientID"]
    # the same warnings, each in its command's words
    assert any("listed 2 times with the same label; using it once" in w
               for w in labelled_out.warnings)
    assert any("listed 2 times (lines [2, 7]); scoring it once" in w
               for w in unlabelled_out.warnings)
    assert any("are not used: orphan" in w for w in labelled_out.warnings)
    assert any("are not scored: orphan" in w for w in unlabelled_out.warnings)


def test_a_path_csv_reads_alike_with_and_without_labels(tmp_path):
    for name in ("a.dcm", "b.dcm"):
        (tmp_path / name).write_bytes(b"x")
    csv = tmp_path / "p.csv"
    csv.write_text(f"path,label,AccessionNumber\na.dcm,A,E1\n,B,E2\nmissing.dcm,C,E3\n"
                   f"{'x' * 300}.dcm,D,E4\nb.dcm,D,E5\na.dcm,A,E1\n")
    labelled_out, unlabelled_out = CollectingReporter(), CollectingReporter()
    labelled = read_image_table(csv, None, LABELLED, labelled_out)
    unlabelled = read_image_table(csv, None, UNLABELLED, unlabelled_out)
    assert [(r.path.name, r.accession, r.label) for r in labelled.images] == [
        ("a.dcm", "E1", 1), ("b.dcm", "E5", 4)]
    assert [(r.path.name, r.accession, r.label) for r in unlabelled.images] == [
        ("a.dcm", "E1", None), ("b.dcm", "E5", None)]
    reasons = [e["reason"] for e in labelled.exclusions]
    assert reasons == [e["reason"] for e in unlabelled.exclusions]
    assert reasons[:2] == ["empty 'path'", "file not found"]
    assert reasons[2].startswith("unusable path: ")
    assert labelled.csv_format == unlabelled.csv_format == "generic"
    assert any("a.dcm is already listed on line 2; using it once" in w
               for w in labelled_out.warnings)
    assert any("a.dcm is already listed on line 2; scoring it once" in w
               for w in unlabelled_out.warnings)


def test_only_a_labelled_reading_judges_labels(tmp_path):
    (tmp_path / "a.dcm").write_bytes(b"x")
    csv = tmp_path / "p.csv"
    csv.write_text("path,label\na.dcm,Q\na.dcm,7\n")
    labelled = read_image_table(csv, None, LABELLED, CollectingReporter())
    assert [e["reason"] for e in labelled.exclusions] == [label_problem("Q"),
                                                          label_problem("7")]
    unlabelled = read_image_table(csv, None, UNLABELLED, CollectingReporter())
    assert [r.path.name for r in unlabelled.images] == ["a.dcm"]


def test_a_csv_naming_each_file_is_read_by_its_paths(tmp_path):
    """A path column wins over AccessionNumber: the rows name their files, which are then
    the images (not every file of the exam's folder)."""
    archive = _archive(tmp_path, {"E1": 3})
    csv = tmp_path / "both.csv"
    csv.write_text("AccessionNumber,Classification,path,label\nE1,2,archive/E1/v1.dcm,2\n")
    for request in (LABELLED, UNLABELLED):
        table = read_image_table(csv, tmp_path, request, CollectingReporter())
        assert table.csv_format == "generic"
        assert [r.path for r in table.images] == [archive / "E1" / "v1.dcm"]


def test_without_labels_a_label_column_is_not_needed_and_is_said_to_be_ignored(tmp_path):
    _archive(tmp_path, {"E1": 1})
    csv = tmp_path / "ids.csv"
    csv.write_text("AccessionNumber,Classification\nE1,3\n")
    out = CollectingReporter()
    table = unlabelled_table(csv, tmp_path / "archive", out=out)
    assert [r.accession for r in table.images] == ["E1"]
    assert any("Column Classification of ids.csv ignored" in line for line in out.lines)
    csv.write_text("AccessionNumber\nE1\n")
    with pytest.raises(DataError, match="have AccessionNumber but no Classification column"):
        load_label_table(csv, tmp_path / "archive", out=CollectingReporter())


@pytest.mark.parametrize("header, says, not_said", [
    # a classificacao.csv without its label column: --label-column cannot help
    ("AccessionNumber,Density", "Rename its density column to Classification",
     "--label-column"),
    ("path,density", "no label column 'label': name the column holding the density labels "
     "with --label-column NAME", "Classification"),
    ("file,density", "or name the image-path and label columns with --path-column NAME "
     "--label-column NAME", None),
])
def test_a_table_no_layout_claims_gets_the_fix_that_applies(tmp_path, header, says, not_said):
    csv = tmp_path / "labels.csv"
    csv.write_text(f"{header}\nE1,3\n")
    with pytest.raises(DataError) as info:
        load_label_table(csv, tmp_path, out=CollectingReporter())
    assert says in str(info.value)
    if not_said:
        assert not_said not in str(info.value).split("columns [")[1].split("]", 1)[1]


# --------------------------------------------------------------- the extension point
@dataclasses.dataclass
class StudyImageFormat:
    """A publisher-style layout, for the test: ``study_id, image_id, breast_density``,
    images at ``<root>/<study_id>/<image_id>.dicom``."""

    name: str = "study_image"

    def claims(self, csv: CsvTable, request: TableRequest) -> bool:
        return bool(csv.column("study_id") and csv.column("image_id"))

    def read(self, csv: CsvTable, request: TableRequest, out: Reporter) -> LabelTable:
        root = csv.dicom_root or csv.path.parent
        table = csv.new_table(root, self.name)
        for line, row in csv.rows:
            path = root / row["study_id"] / f"{row['image_id']}.dicom"
            if not path.is_file():
                exclude_row(table, out, row=line, path=str(path), reason="file not found")
                continue
            label = parse_label(row["breast_density"]) if request.labelled else None
            table.images.append(ImageRecord(path=path, accession=row["study_id"], patient="",
                                            view="", laterality="", label=label, row=line,
                                            fields=row))
        return table


def test_a_new_layout_is_one_class_in_the_registry(tmp_path, monkeypatch):
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1" / "i1.dicom").write_bytes(b"x")
    csv = tmp_path / "breast-level_annotations.csv"
    csv.write_text("study_id,image_id,breast_density\ns1,i1,DENSITY C\ns1,i2,DENSITY A\n")
    monkeypatch.setattr(reader, "TABLE_FORMATS", (StudyImageFormat(), *reader.TABLE_FORMATS))
    table = load_label_table(csv, tmp_path, out=CollectingReporter())
    assert table.csv_format == "study_image"
    assert [(r.accession, r.label) for r in table.images] == [("s1", 3)]
    assert [e["reason"] for e in table.exclusions] == ["file not found"]
    unlabelled = unlabelled_table(csv, tmp_path, out=CollectingReporter())
    assert [r.label for r in unlabelled.images] == [None]
