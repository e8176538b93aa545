"""Density label texts, per-breast labels and the one exam-label rule."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from mammography.data.density_labels import (
    check_breast_labels,
    exam_labels,
    label_problem,
    parse_label,
)
from mammography.record.reporter import CollectingReporter


@pytest.mark.parametrize("raw, expected", [
    ("DENSITY C", 3), ("density a", 1), ("BI-RADS D", 4), ("bi-rads b", 2), ("BIRADS C", 3),
    ("BI-RADS: A", 1), ("  Density   B ", 2), ("ACR C", 3), ("c", 3), ("3", 3), ("E", 5),
    ("BI-RADS 3", None), ("DENSITY 3", None), ("DENSE", None), ("C D", None)])
def test_parse_label_forms(raw, expected):
    assert parse_label(raw) == expected


def test_a_bi_rads_number_is_explained_as_an_assessment_category():
    assert "assessment category, not a density" in label_problem("BI-RADS 3")
    assert "unknown label 'Q'" in label_problem("Q")


@dataclass
class Rec:
    accession: str
    laterality: str
    label: int
    row: int
    path: Path = Path("x.dcm")


def test_breasts_may_differ_but_images_of_one_breast_must_agree():
    records = [Rec("E1", "L", 2, 2), Rec("E1", "L", 2, 3), Rec("E1", "R", 3, 4),
               Rec("E1", "R", 3, 5),                       # per-breast labels: kept
               Rec("E2", "L", 1, 6), Rec("E2", "L", 4, 7), Rec("E2", "R", 1, 8),  # L conflicts
               Rec("E3", "", 2, 9), Rec("E3", "", 3, 10),  # differ, laterality unknown
               Rec("E4", "", 2, 11)]                       # one label: fine without laterality
    excluded = []
    out = CollectingReporter()
    checks = check_breast_labels(records, lambda r, why: excluded.append((r.row, why)), out)
    assert [r.row for r in records] == [2, 3, 4, 5, 8, 11]
    assert checks == {"exams_with_breast_labels": 1, "breasts_excluded": 2}
    reasons = dict(excluded)
    assert set(reasons) == {6, 7, 9, 10}
    assert "conflicting labels [1, 4] within the L breast of exam E2 (CSV lines [6, 7])" \
        in reasons[6]
    assert "no laterality" in reasons[9]
    assert len(out.warnings) == 2
    assert any("1 exams have a different density per breast" in line for line in out.lines)
    # The exam label is the denser breast's; E2 keeps only its right breast.
    assert exam_labels(records) == {"E1": 3, "E2": 1, "E4": 2}
