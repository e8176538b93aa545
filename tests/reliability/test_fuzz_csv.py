"""Fuzzing the image-table reader (read_csv_rows, load_label_table, and the unlabelled
reading predict makes) with hypothesis:
structured CSV text (both shapes, odd cells, delimiters, quoting, line ends,
encodings) and raw bytes. Only DataError may come out; a table that comes out
keeps its invariants (labels 1-4, or 1-5 with class 5 kept; images are files under
the DICOM root or named by the CSV; every exclusion has a reason).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from mammography.data.table.csv_read import read_csv_rows
from mammography.data.table.reader import load_label_table
from mammography.data.unlabelled import unlabelled_table
from mammography.errors import DataError
from mammography.record.reporter import CollectingReporter
from tests.reliability.common import SEED, budget

ACCESSIONS = ["100", "101", "102", "A-1", "x y", "ção"]
CELLS = st.one_of(
    st.sampled_from([*ACCESSIONS, "1", "2", "3", "4", "5", "A", "d", "", " ", "6", "0", "-1",
                     "2.0", "2.5", "nan", "inf", "1e0", "..", ".", "/", "/etc", "../archive",
                     "a/b", "img.dcm", "archive/100/v.dcm", "missing.dcm", "x" * 300, '"',
                     '""', "\r", "\n", ";", ",", "\t"]),
    st.text(max_size=12))
HEADERS = st.one_of(
    st.just(["AccessionNumber", "Classification", "PatientID"]), st.just(["path", "label"]),
    st.just(["accession_number", "CLASSIFICATION"]), st.just(["Path", "Label", "patient"]),
    st.lists(st.sampled_from(["AccessionNumber", "Classification", "path", "label",
                              "PatientID", "", "x"]), max_size=4))


@st.composite
def csv_bytes(draw) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=400))
    delimiter = draw(st.sampled_from([",", ";", "\t", "|", " "]))
    rows = [draw(HEADERS), *draw(st.lists(st.lists(CELLS, max_size=5), max_size=8))]
    quote = draw(st.booleans())
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = end.join(delimiter.join(f'"{v}"' if quote and draw(st.booleans()) else v
                                   for v in row) for row in rows)
    text += draw(st.sampled_from(["", end]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16", "cp1252"]))
    try:
        return text.encode(encoding)
    except UnicodeEncodeError:
        return text.encode("utf-8")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("csv_fuzz")
    for accession in ACCESSIONS:
        (root / "archive" / accession).mkdir(parents=True)
        (root / "archive" / accession / "v.dcm").write_bytes(b"x")
    (root / "img.dcm").write_bytes(b"x")
    return root


@seed(SEED)
@settings(max_examples=budget(400, 20_000), deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=csv_bytes(), with_root=st.booleans(), keep_class_5=st.booleans())
def test_only_data_errors_or_a_sound_table(tree, data, with_root, keep_class_5):
    csv = tree / "labels.csv"
    csv.write_bytes(data)
    archive = tree / "archive"
    with contextlib.suppress(DataError):
        read_csv_rows(csv, out=CollectingReporter())
    try:
        table = load_label_table(csv, archive if with_root else None,
                                 include_class_5=keep_class_5, out=CollectingReporter())
    except DataError as exc:
        assert str(csv) in str(exc) or "--dicom-root" in str(exc), str(exc)
        return
    allowed = {1, 2, 3, 4, 5} if keep_class_5 else {1, 2, 3, 4}
    assert table.images
    for record in table.images:
        assert record.label in allowed
        assert record.path.is_file()
        if table.csv_format == "classificacao":
            # an accession row never reaches outside its own folder
            assert archive / record.accession in record.path.parents
    assert all(e.get("reason") for e in table.exclusions)


@seed(SEED)
@settings(max_examples=budget(200, 10_000), deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=csv_bytes(), with_root=st.booleans())
def test_an_unlabelled_reading_is_as_sound(tree, data, with_root):
    """The same bytes read for predict (no labels): only DataError, and every image a file
    the CSV names or below its own exam's folder, with no label."""
    csv = tree / "to_score.csv"
    csv.write_bytes(data)
    archive = tree / "archive"
    try:
        table = unlabelled_table(csv, archive if with_root else None, out=CollectingReporter())
    except DataError as exc:
        assert str(csv) in str(exc) or "--dicom-root" in str(exc), str(exc)
        return
    for record in table.images:
        assert record.label is None and record.path.is_file()
        if table.csv_format == "classificacao":
            assert archive / record.accession in record.path.parents
    assert all(e.get("reason") for e in table.exclusions)

