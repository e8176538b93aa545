"""Leakage-proof split groups: components over patient, exam, study and file content."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mammography.data.grouping import (
    SplitLeakError,
    assert_disjoint,
    leakage_groups,
    normalise_patient_ids,
)
from mammography.data.splits import kfold_indices
from mammography.record.reporter import CollectingReporter


@dataclass
class Rec:
    patient: str
    accession: str
    study_uid: str = ""
    sha256: str = ""
    path: Path = Path("x.dcm")


def test_components_join_every_key_transitively():
    records = [
        Rec("P1", "A1", "S1", "h1"),
        Rec("P2", "A1", "S2", "h2"),   # same exam as 0, another PatientID
        Rec("P3", "A3", "S2", "h3"),   # same study as 1
        Rec("P4", "A4", "S4", "h1"),   # a copy of 0's file
        Rec("P5", "A5", "S5", "h5"),   # alone
        Rec("P5", "A6", "S6", "h6"),   # same patient as 4
    ]
    grouping = leakage_groups(records)
    assert grouping.groups == ["P1", "P1", "P1", "P1", "P5", "P5"]
    report = grouping.report
    assert report["components"] == 2
    assert report["accessions_with_several_patients"]["count"] == 1
    assert report["study_uids_with_several_patients"]["count"] == 1
    assert report["identical_files_under_several_exams"]["count"] == 1
    assert report["components_joining_several_patient_ids"] == 1
    assert report["patient_ids_joined"] == 4


def test_groups_are_the_patients_when_patients_were_already_enough():
    records = [Rec(f"P{i // 2}", f"A{i}", f"S{i}", f"h{i}") for i in range(8)]
    assert leakage_groups(records).groups == [r.patient for r in records]


def test_per_view_patient_ids_are_shortened_with_a_warning():
    records = [Rec("Mass-Test_P_00173_LEFT_CC", "A1"), Rec("Mass-Test_P_00173_LEFT_MLO", "A2"),
               Rec("Mass-Test_P_00173_RIGHT_CC", "A3"), Rec("P_00200", "A4"),
               Rec("X-12_R_MLO", "A5")]
    out = CollectingReporter()
    normalise_patient_ids(records, out)
    assert [r.patient for r in records] == ["Mass-Test_P_00173"] * 3 + ["P_00200", "X-12"]
    assert len(out.warnings) == 1 and "4 PatientIDs name a breast and view" in out.warnings[0]


def test_splits_keep_every_component_on_one_side():
    rng = np.random.default_rng(0)
    records = []
    for p in range(40):
        for e in range(2):
            records.append(Rec(f"P{p}", f"A{p}-{e}", f"S{p}-{e}", f"h{p}-{e}"))
    # copies across patients: patient k's first file is also filed under patient k + 20
    for k in range(10):
        records.append(Rec(f"P{k + 20}", f"A{k + 20}-copy", f"S{k + 20}-c", f"h{k}-0"))
    groups = leakage_groups(records).groups
    labels = rng.integers(0, 4, len(records))
    for train, val in kfold_indices(labels, groups, 5, seed=1):
        assert_disjoint(records, train, val)  # never raises
    by_patient = kfold_indices(labels, [r.patient for r in records], 5, seed=1)
    with pytest.raises(SplitLeakError, match="sha256"):
        for train, val in by_patient:  # patient-only grouping lets copies straddle
            assert_disjoint(records, train, val)
