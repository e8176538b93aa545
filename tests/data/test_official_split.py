"""--split official/test: the publisher's sets kept, leaks across them refused or resolved."""

from __future__ import annotations

from pathlib import Path

import pytest

from mammography.data.official_split import leaking_groups, select_official_set
from mammography.data.table.records import ImageRecord, LabelTable
from mammography.errors import DataError
from mammography.record.reporter import CollectingReporter


def record(patient: str, split: str, n: int, *, study: str = "", path: Path | None = None
           ) -> ImageRecord:
    return ImageRecord(path=path or Path(f"/data/{patient}/{split}{n}.dcm"), accession=patient,
                       patient=patient, view="CC", laterality="L", label=2, row=n,
                       study_uid=study, split=split)


def table_of(records: list[ImageRecord]) -> LabelTable:
    table = LabelTable(list(records), [], Path("cases.csv"), Path("/data"), "cbis-ddsm",
                       len(records))
    table.dataset = {"title": "CBIS-DDSM", "official_sets": {"train": 1, "test": 1}}
    return table


def leaky() -> list[ImageRecord]:
    """P1, P2 training only; P3 test only; P4 in both (2 training, 1 test image); P5 and P6
    are different patients sharing one study (a study in both sets)."""
    return [record("P1", "train", 1), record("P2", "train", 2), record("P3", "test", 3),
            record("P4", "train", 4), record("P4", "train", 5), record("P4", "test", 6),
            record("P5", "train", 7, study="1.2.3"), record("P6", "test", 8, study="1.2.3")]


def test_leaking_groups_link_patients_exams_and_studies():
    leaks = leaking_groups(leaky())
    assert sorted(leaks) == ["P4", "P5"]  # a group is named after its smallest patient
    assert sorted(r.patient for r in leaks["P5"]) == ["P5", "P6"]


def test_a_leak_is_refused_by_default_naming_groups_and_the_fix():
    out = CollectingReporter()
    with pytest.raises(DataError) as refused:
        select_official_set(table_of(leaky()), "official", "refuse", out, hash_files=False)
    text = str(refused.value)
    assert "2 split groups" in text and "(3 images) and the test set (2)" in text
    assert "--official-split-leak drop" in text and "--official-split-leak train" in text


@pytest.mark.parametrize(("split", "policy", "kept"), [
    ("official", "drop", ["P1", "P2"]),                      # leakers out of training
    ("test", "drop", ["P3", "P4", "P6"]),                    # the test set as published
    ("official", "train", ["P1", "P2", "P4", "P4", "P5"]),   # leakers kept in training
    ("test", "train", ["P3"]),                               # ... and out of the test set
])
def test_drop_and_train_resolve_a_leak_each_on_its_side(split, policy, kept):
    table = table_of(leaky())
    out = CollectingReporter()
    select_official_set(table, split, policy, out, hash_files=False)
    assert sorted(r.patient for r in table.images) == kept
    record_ = table.dataset["split"]
    assert record_["mode"] == split and record_["leak_policy"] == policy
    assert record_["leaks"]["groups"] == 2 and record_["kept"] == len(kept)
    assert len(table.exclusions) == 8 - len(kept)
    assert any(f"--official-split-leak {policy}" in w for w in out.warnings)
    if policy == "drop" and split == "official":
        leak_reasons = [e for e in table.exclusions if "official-split leak" in e["reason"]]
        assert len(leak_reasons) == 3  # P4 twice and P5 from the training set


def test_all_keeps_every_image_and_records_the_leak():
    table = table_of(leaky())
    out = CollectingReporter()
    select_official_set(table, "all", "refuse", out, hash_files=False)
    assert len(table.images) == 8 and not table.exclusions
    assert table.dataset["split"]["mode"] == "all"
    assert table.dataset["split"]["leaks"]["groups"] == 2
    assert any("The official split leaks: 2 split groups" in line for line in out.lines)


def test_a_dataset_without_an_official_split_refuses_split_official():
    table = table_of([record("P1", "", 1)])
    table.dataset = {"title": "RSNA Screening Mammography", "official_sets": None}
    with pytest.raises(DataError, match="RSNA Screening Mammography has no official "
                                        "training/test split.*--split all"):
        select_official_set(table, "official", "refuse", CollectingReporter())


def test_a_file_copied_into_both_sets_is_a_leak(tmp_path, cache_dir):
    """Different patients, the same bytes (CBIS-DDSM's Mass-/Calc- copies look like this
    when their patient IDs differ): found through the files' checksums."""
    a, b = tmp_path / "a.dcm", tmp_path / "b.dcm"
    a.write_bytes(b"the same image")
    b.write_bytes(b"the same image")
    table = table_of([record("P1", "train", 1, path=a), record("P2", "test", 2, path=b),
                      record("P3", "train", 3, path=tmp_path / "c.dcm")])
    (tmp_path / "c.dcm").write_bytes(b"another image")
    with pytest.raises(DataError, match="1 split group .* has images in both"):
        select_official_set(table, "official", "refuse", CollectingReporter())
