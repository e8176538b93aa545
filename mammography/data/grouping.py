"""Leakage-proof split groups: everything that could be the same woman stays on one side.

Grouping by patient alone is not enough on real archives. CBIS-DDSM puts the
view into the PatientID (``Mass-Test_P_00173_LEFT_CC``), so one woman's CC and
MLO look like two patients; a study sent twice, or a re-export, puts
byte-identical files under two exams or two patient IDs. A split group is
therefore a connected component over four keys — patient, exam (accession),
StudyInstanceUID and file content (sha256 from the data manifest): two images
sharing any key are in one group, transitively. Splits and CV folds keep every
group on one side (``splits.py``), and :func:`assert_disjoint` proves it on
every key after splitting.

PatientIDs that end in a laterality and a view (``..._LEFT_CC``) are taken
as per-view IDs of one patient and shortened (a WARNING says how many).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mammography.record.reporter import Reporter

#: ``<patient>_<laterality>_<view>`` (CBIS-DDSM and similar per-view PatientIDs).
PER_VIEW_PATIENT = re.compile(
    r"^(?P<patient>.+?)[_\- ](?:LEFT|RIGHT|L|R)[_\- ](?:CC|MLO|ML|LM|LMO|XCCL|XCCM|AT|SIO|FB)$",
    re.IGNORECASE)
EXAMPLES = 5
KEYS = ("patient", "accession", "study_uid", "sha256")


class SplitLeakError(RuntimeError):
    """A split put one patient, exam, study or file on both sides: a bug, not bad input."""


@dataclass
class Grouping:
    groups: list[str]  # one group id per image: the smallest PatientID of its component
    report: dict[str, Any]  # what data_manifest.json and `data check` show


def normalise_patient_ids(records: Sequence[Any], out: Reporter) -> int:
    """Shorten per-view PatientIDs to the patient; the number of per-view IDs found."""
    changed: dict[str, str] = {}
    for record in records:
        match = PER_VIEW_PATIENT.match(record.patient or "")
        if match:
            changed[record.patient] = match.group("patient")
            record.patient = match.group("patient")
    if changed:
        original, short = next(iter(changed.items()))
        out.warn(f"{len(changed)} PatientIDs name a breast and view (e.g. {original}): they "
                 f"are per-view IDs of one patient, grouped as the patient ({short}). Give a "
                 "PatientID column in the CSV if this is wrong.")
    return len(changed)


def _union_find(n: int) -> tuple[list[int], Any, Any]:
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    return parent, find, union


def leakage_groups(records: Sequence[Any]) -> Grouping:
    """The connected components over the records' patient, accession, study_uid, sha256."""
    n = len(records)
    _, find, union = _union_find(n)
    for key in KEYS:  # one dict per key: no (key, value) tuple per image
        first_with: dict[Any, int] = {}
        for i, record in enumerate(records):
            value = getattr(record, key, "")
            if not value:
                continue
            j = first_with.setdefault(value, i)
            if j != i:
                union(i, j)
    # A group is named after the smallest PatientID in it: where grouping by patient
    # was already right, the groups are the patients (and the splits what they were).
    roots = [find(i) for i in range(n)]
    names: dict[int, str] = {}
    for i, (root, record) in enumerate(zip(roots, records, strict=True)):
        patient = str(record.patient or record.accession or f"image {i}")
        current = names.get(root)
        if current is None or patient < current:
            names[root] = patient
    groups = [names[root] for root in roots]
    return Grouping(groups, _report(records, groups))


def _report(records: Sequence[Any], groups: list[str]) -> dict[str, Any]:
    patients_of_accession: dict[str, set[str]] = defaultdict(set)
    patients_of_study: dict[str, set[str]] = defaultdict(set)
    files: dict[str, list[Any]] = defaultdict(list)
    for record in records:
        patients_of_accession[record.accession].add(record.patient)
        if getattr(record, "study_uid", ""):
            patients_of_study[record.study_uid].add(record.patient)
        if getattr(record, "sha256", ""):
            files[record.sha256].append(record)
    several = {a: sorted(p) for a, p in patients_of_accession.items() if len(p) > 1}
    studies = {s: sorted(p) for s, p in patients_of_study.items() if len(p) > 1}
    copies = {h: rs for h, rs in files.items()
              if len({(r.accession, r.patient) for r in rs}) > 1}
    patients_in_group: dict[str, set[str]] = defaultdict(set)
    for record, group in zip(records, groups, strict=True):
        patients_in_group[group].add(record.patient)
    merged = [g for g, p in patients_in_group.items() if len(p) > 1]
    sizes = defaultdict(int)
    for group in groups:
        sizes[group] += 1
    return {
        "keys": list(KEYS),
        "components": len(set(groups)),
        "patients": len({r.patient for r in records}),
        "exams": len({r.accession for r in records}),
        "largest_component_images": max(sizes.values(), default=0),
        # How much patient-only grouping would have let through:
        "components_joining_several_patient_ids": len(merged),
        "patient_ids_joined": sum(len(patients_in_group[g]) for g in merged),
        "accessions_with_several_patients": {
            "count": len(several),
            "examples": [{"accession": a, "patients": p} for a, p in
                         list(several.items())[:EXAMPLES]]},
        "study_uids_with_several_patients": {
            "count": len(studies),
            "examples": [{"study_uid": s, "patients": p} for s, p in
                         list(studies.items())[:EXAMPLES]]},
        "identical_files_under_several_exams": {
            "count": len(copies),
            "images": sum(len(rs) for rs in copies.values()),
            "examples": [{"sha256": h, "files": [str(r.path) for r in rs[:3]],
                          "accessions": sorted({r.accession for r in rs})}
                         for h, rs in list(copies.items())[:EXAMPLES]]},
    }


def warn_leakage(report: dict[str, Any], out: Reporter) -> None:
    """WARNINGs for what would have leaked between train and validation."""
    several = report["accessions_with_several_patients"]
    if several["count"]:
        example = several["examples"][0]
        out.warn(f"{several['count']} exams (AccessionNumber) carry several PatientIDs, e.g. "
                 f"{example['accession']}: {', '.join(example['patients'][:4])}; their images "
                 "are kept in one split group.")
    studies = report["study_uids_with_several_patients"]
    if studies["count"]:
        example = studies["examples"][0]
        out.warn(f"{studies['count']} StudyInstanceUIDs carry several PatientIDs, e.g. "
                 f"{example['study_uid']}: {', '.join(example['patients'][:4])}; kept in one "
                 "split group.")
    copies = report["identical_files_under_several_exams"]
    if copies["count"]:
        example = copies["examples"][0]
        out.warn(f"{copies['count']} files are byte-identical copies under different exams or "
                 f"patients ({copies['images']} images, e.g. {' and '.join(example['files'][:2])}"
                 f"): a copy in validation of a training image would inflate every metric; "
                 "they are kept in one split group.")


def assert_disjoint(records: Sequence[Any], train: np.ndarray, val: np.ndarray) -> None:
    """Raise SplitLeakError if any patient, exam, study or file is on both sides."""
    for key in KEYS:
        left = {getattr(records[i], key, "") for i in train} - {""}
        right = {getattr(records[i], key, "") for i in val} - {""}
        both = left & right
        if both:
            raise SplitLeakError(f"the split puts the same {key} in train and validation "
                                 f"({len(both)}: {sorted(both)[:3]}); this is a bug in the "
                                 "grouping, please report it")
