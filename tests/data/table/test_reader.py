"""Labels CSV → image table (data/table/reader.py): both CSV shapes, every reported problem."""

from pathlib import Path

import pytest

from mammography.data.density_labels import parse_label
from mammography.data.table.reader import load_label_table
from mammography.errors import DataError
from mammography.record.reporter import CollectingReporter


def make_tree(root: Path, exams: dict[str, int]) -> Path:
    """DICOM-root layout with ``n`` placeholder .dcm files per accession."""
    archive = root / "archive"
    for accession, n in exams.items():
        folder = archive / accession
        folder.mkdir(parents=True)
        for i in range(n):
            (folder / f"view{i}.dcm").write_bytes(b"x")
    return archive


def write_csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize("raw, expected", [("1", 1), ("4", 4), ("3.0", 3), ("A", 1), ("d", 4),
                                           (" 2 ", 2), ("5", 5), ("6", None), ("Q", None),
                                           ("", None), ("2.5", None)])
def test_parse_label(raw, expected):
    assert parse_label(raw) == expected


def test_seed_csv_uses_every_view_and_excludes_class_5(tmp_path):
    root = make_tree(tmp_path, {"100": 4, "101": 2, "102": 3})
    csv = write_csv(tmp_path / "classificacao.csv",
                    "AccessionNumber,Classification,PatientID\n100,3,P1\n101,B,P2\n102,5,P3\n")
    out = CollectingReporter()
    lines = out.lines
    table = load_label_table(csv, root, out=out)
    assert len(table.images) == 6
    assert {r.accession for r in table.images} == {"100", "101"}
    assert {r.label for r in table.images} == {2, 3}
    assert table.images[0].patient == "P1"
    assert "Excluding class 5 (1 samples)" in lines
    assert {"accession": "102", "reason": "class 5 (not classifiable)"} in table.exclusions
    assert table.class_distribution("exam") == {"2": 1, "3": 1}


def test_include_class_5_keeps_it(tmp_path):
    root = make_tree(tmp_path, {"100": 1, "102": 1})
    csv = write_csv(tmp_path / "c.csv", "AccessionNumber,Classification\n100,1\n102,5\n")
    table = load_label_table(csv, root, include_class_5=True, out=CollectingReporter())
    assert sorted(r.label for r in table.images) == [1, 5]


def test_single_bad_items_are_warned_and_recorded(tmp_path):
    root = make_tree(tmp_path, {"1": 1, "2": 1, "3": 1, "orphan": 1})
    csv = write_csv(tmp_path / "c.csv", "AccessionNumber,Classification\n1,2\n2,Q\n3,1\n3,4\n"
                                        "4,2\n1,2\n")
    out = CollectingReporter()
    lines = out.lines
    table = load_label_table(csv, root, out=out)
    assert [r.accession for r in table.images] == ["1"]
    reasons = {e.get("accession"): e["reason"] for e in table.exclusions}
    assert "unknown label 'Q'" in reasons["2"]
    assert "conflicting labels [1, 4]" in reasons["3"]
    assert "no DICOM files" in reasons["4"]
    assert reasons["orphan"] == "folder has no CSV row"
    text = "\n".join(lines)
    assert "c.csv line 3 (2): unknown label 'Q'" in text
    assert "listed 2 times with the same label" in text
    assert all(line.startswith("WARNING:") for line in lines if "excluded" in line)


def test_bom_semicolon_and_latin1_are_read(tmp_path):
    root = make_tree(tmp_path, {"10": 1, "11": 1})
    csv = write_csv(tmp_path / "c.csv", "\ufeffAccessionNumber;Classification;Observação\n"
                                        "10;1;ok\n11;2;não\n", encoding="utf-8")
    assert len(load_label_table(csv, root, out=CollectingReporter()).images) == 2
    latin = write_csv(tmp_path / "l.csv", "AccessionNumber,Classification,Nota\n10,1,não\n",
                      encoding="latin-1")
    out = CollectingReporter()
    lines = out.lines
    assert len(load_label_table(latin, root, out=out).images) == 1
    assert any("not UTF-8" in line for line in lines)


def test_generic_csv_resolves_relative_paths(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    for name in ("a.dcm", "b.dcm"):
        (images / name).write_bytes(b"x")
    csv = write_csv(tmp_path / "labels.csv",
                    f"path,label,PatientID\nimgs/a.dcm,A,P1\n{images / 'b.dcm'},4,P2\n"
                    "imgs/missing.dcm,2,P3\n")
    table = load_label_table(csv, None, out=CollectingReporter())
    assert [(r.path.name, r.label, r.patient) for r in table.images] == [
        ("a.dcm", 1, "P1"), ("b.dcm", 4, "P2")]
    assert table.exclusions[0]["reason"] == "file not found"


def test_generic_csv_custom_column_names(tmp_path):
    (tmp_path / "x.dcm").write_bytes(b"x")
    csv = write_csv(tmp_path / "labels.csv", "file,density\nx.dcm,C\n")
    table = load_label_table(csv, None, path_column="file", label_column="density",
                             out=CollectingReporter())
    assert table.images[0].label == 3


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("AccessionNumber,Classification\n", "no data rows"),
    ("foo,bar\n1,2\n", "neither AccessionNumber,Classification"),
    ("AccessionNumber,Classification\n1,Q\n", "No usable images"),
])
def test_unusable_csv_is_a_data_error_naming_the_file(tmp_path, content, message):
    make_tree(tmp_path, {"1": 1})
    csv = write_csv(tmp_path / "bad.csv", content)
    with pytest.raises(DataError, match=message) as info:
        load_label_table(csv, tmp_path / "archive", out=CollectingReporter())
    assert "bad.csv" in str(info.value)


def test_missing_dicom_root_says_which_option(tmp_path):
    csv = write_csv(tmp_path / "c.csv", "AccessionNumber,Classification\n1,1\n")
    with pytest.raises(DataError, match="--dicom-root"):
        load_label_table(csv, tmp_path / "nope", out=CollectingReporter())
