"""A CSV whatever the export (data/table/csv_read.py): the rows come out the same."""

import codecs

import pytest

from mammography.data.table.csv_read import find_column, read_csv_rows
from mammography.errors import DataError
from mammography.record.reporter import CollectingReporter

EXPECTED = (["AccessionNumber", "Classification", "Nota"],
            [(2, {"AccessionNumber": "10", "Classification": "1", "Nota": "ok"}),
             (3, {"AccessionNumber": "11", "Classification": "B", "Nota": "não"})])


@pytest.mark.parametrize(("name", "data"), [
    ("utf-8", "AccessionNumber,Classification,Nota\n10,1,ok\n11,B,não\n".encode()),
    ("bom", codecs.BOM_UTF8 + "AccessionNumber,Classification,Nota\n10,1,ok\n11,B,não\n"
     .encode()),
    ("utf-16", "AccessionNumber,Classification,Nota\n10,1,ok\n11,B,não\n".encode("utf-16")),
    ("semicolon", "AccessionNumber;Classification;Nota\n10;1;ok\n11;B;não\n".encode()),
    ("tab", "AccessionNumber\tClassification\tNota\n10\t1\tok\n11\tB\tnão\n".encode()),
    ("pipe", "AccessionNumber|Classification|Nota\n10|1|ok\n11|B|não\n".encode()),
    ("crlf", "AccessionNumber,Classification,Nota\r\n10,1,ok\r\n11,B,não\r\n".encode()),
    ("cr", "AccessionNumber,Classification,Nota\r10,1,ok\r11,B,não\r".encode()),
    ("spaces", " AccessionNumber , Classification ,Nota\n 10 , 1 ,ok\n11,B, não \n".encode()),
])
def test_every_export_reads_the_same(tmp_path, name, data):
    path = tmp_path / f"{name}.csv"
    path.write_bytes(data)
    out = CollectingReporter()
    assert read_csv_rows(path, out) == EXPECTED
    assert out.warnings == []


def test_latin1_is_read_with_a_warning(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("AccessionNumber,Classification,Nota\n10,1,ok\n11,B,não\n"
                     .encode("latin-1"))
    out = CollectingReporter()
    assert read_csv_rows(path, out) == EXPECTED
    assert len(out.warnings) == 1 and "not UTF-8" in out.warnings[0]


def test_a_newline_inside_quotes_and_blank_rows(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text('path,label,note\n\na.dcm,A,"two\nlines"\n,,\nb.dcm,B,x\n')
    header, rows = read_csv_rows(path, CollectingReporter())
    assert header == ["path", "label", "note"]
    assert rows == [(4, {"path": "a.dcm", "label": "A", "note": "two\nlines"}),
                    (6, {"path": "b.dcm", "label": "B", "note": "x"})]


def test_a_short_row_gets_empty_cells(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("path,label,PatientID\na.dcm,A\n")
    assert read_csv_rows(path, CollectingReporter())[1] == [
        (2, {"path": "a.dcm", "label": "A", "PatientID": ""})]


@pytest.mark.parametrize(("data", "message"), [
    (b"", "is empty"),
    (b"  \n\n", "is empty"),
    (b"path,label\n", "no data rows"),
    (b"path,label\n\x00\x01\x02,1\n", "NUL bytes"),
    (codecs.BOM_UTF16_LE + b"\x00\xd8", "not valid UTF-16"),
])
def test_what_cannot_be_read_names_the_file(tmp_path, data, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(data)
    with pytest.raises(DataError, match=message) as info:
        read_csv_rows(path, CollectingReporter())
    assert str(path) in str(info.value)


def test_a_folder_instead_of_a_file(tmp_path):
    with pytest.raises(DataError, match="Check the --csv path"):
        read_csv_rows(tmp_path, CollectingReporter())


@pytest.mark.parametrize(("wanted", "found"), [
    ("AccessionNumber", "Accession Number"), ("accession_number", "Accession Number"),
    ("PATIENTID", "patient_id"), ("label", None)])
def test_find_column_ignores_case_spaces_and_underscores(wanted, found):
    assert find_column(["Accession Number", "patient_id", "path"], wanted) == found
