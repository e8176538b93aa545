"""A public dataset's official training and test sets, and whatever straddles them.

``--split official`` keeps the publisher's training set (train-density and
tune then draw their validation split from it; the test set is held out for
``eval-export --split test``); ``--split test`` keeps its test set;
``--split all`` ignores the publisher's split.

An official split can leak by our grouping (``grouping.py``: patient, exam,
StudyInstanceUID, file content): CBIS-DDSM has 31 patients in both its
training and test sets, and stores the same full image again under its Mass-
and Calc- folders. A split group with images in both sets is a *leak*; what
happens to it is never silent - ``--official-split-leak``:

* ``refuse`` (default): stop (exit 2), naming how many groups and which;
* ``drop``: leave those groups out of the training set (the published test
  set stays whole, so results compare with the literature's);
* ``train``: keep them in training and leave them out of the test set.

``eval-export --split test`` must be given the same choice as the training
run (it is recorded in both summaries). Every image left out - the other set,
a leaking group - is an exclusion with its reason; what was chosen and found
is recorded in ``table.dataset["split"]`` (data_manifest.json and summary.json).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from mammography.data.grouping import leakage_groups
from mammography.data.table.records import ImageRecord, LabelTable
from mammography.errors import DataError
from mammography.record.reporter import Reporter

TRAIN, TEST = "train", "test"
#: --split value -> the official set it keeps.
KEEPS = {"official": TRAIN, "test": TEST}
EXAMPLES = 5


def select_official_set(table: LabelTable, split: str, leak_policy: str, out: Reporter,
                        hash_files: bool = True) -> None:
    """Keep the official set ``split`` names (``all``: every image), leaks handled by
    ``leak_policy``; ``table.dataset["split"]`` records what happened.

    ``hash_files``: give every image its sha256 first (through the checksum memo), so
    that a file copied into both sets is a leak too.
    """
    if split == "all":
        if table.dataset:
            table.dataset["split"] = {"mode": "all", "note": "the publisher's split is not "
                                      "used: every image, whichever official set"}
            if table.dataset.get("official_sets"):  # said, for whoever will use it
                leaks = _leak_report(leaking_groups(table.images))
                table.dataset["split"]["leaks"] = leaks
                if leaks["groups"]:
                    out.log(f"The official split leaks: {_groups(leaks['groups'])} "
                            "(patient, exam or study) with images in both the training and "
                            "the test set; --split official/test will ask what to do "
                            "(--official-split-leak)")
        return
    name = table.dataset.get("title") or table.csv_format
    if not table.dataset.get("official_sets"):
        raise DataError(f"--split {split}: {name} has no official training/test split (or "
                        "none of its images with one is in the download). Use --split all; "
                        "train-density then draws a patient-grouped validation split.")
    if hash_files:
        _hash(table, out)
    keep = KEEPS[split]
    sets_before = Counter(r.split for r in table.images)
    leaks = leaking_groups(table.images)
    report = _leak_report(leaks)
    if leaks:
        _handle(table, leaks, report, leak_policy, out)
    dropped = [r for r in table.images if r.split != keep]
    for record in dropped:
        table.exclude(record, f"official {record.split} set (--split {split} keeps the "
                              f"{keep} set)")
    table.images = [r for r in table.images if r.split == keep]
    table.dataset["split"] = {
        "mode": split, "keeps": keep, "leak_policy": leak_policy,
        "official_sets": dict(sorted(sets_before.items())), "kept": len(table.images),
        "held_out": len(dropped), "leaks": report}
    out.log(f"Official split ({name}): {len(table.images)} images of the {keep} set kept, "
            f"{len(dropped)} of the other set held out"
            + (f"; {_groups(report['groups'])} leaking, handled by --official-split-leak "
               f"{leak_policy}" if leaks else "; no patient, exam, study or file in both"))


def leaking_groups(records: list[ImageRecord]) -> dict[str, list[ImageRecord]]:
    """Split groups (patient, exam, study, file content) with images in both sets."""
    grouping = leakage_groups(records)
    members: dict[str, list[ImageRecord]] = defaultdict(list)
    for record, group in zip(records, grouping.groups, strict=True):
        members[group].append(record)
    return {group: images for group, images in members.items()
            if {TRAIN, TEST} <= {r.split for r in images}}


def _leak_report(leaks: dict[str, list[ImageRecord]]) -> dict[str, Any]:
    examples = []
    for group, images in list(leaks.items())[:EXAMPLES]:
        sides = Counter(r.split for r in images)
        examples.append({"group": group, "patients": sorted({r.patient for r in images}),
                         "train_images": sides[TRAIN], "test_images": sides[TEST]})
    return {"groups": len(leaks),
            "images": {side: sum(1 for images in leaks.values() for r in images
                                 if r.split == side) for side in (TRAIN, TEST)},
            "examples": examples}


def _handle(table: LabelTable, leaks: dict[str, list[ImageRecord]], report: dict[str, Any],
            policy: str, out: Reporter) -> None:
    first = report["examples"][0]
    verb = "has" if report["groups"] == 1 else "have"
    text = (f"the official split leaks: {_groups(report['groups'])} (patient, exam, study "
            f"or identical file) {verb} images in both the training set "
            f"({report['images'][TRAIN]} images) and the test set ({report['images'][TEST]}), "
            f"e.g. {first['group']} ({first['train_images']} training, "
            f"{first['test_images']} test images)")
    if policy == "refuse":
        raise DataError(f"{text}. Say what to do with them: --official-split-leak drop (leave "
                        "them out of training; the test set stays as published) or "
                        "--official-split-leak train (keep them in training, out of the test "
                        "set).")
    side = TRAIN if policy == "drop" else TEST
    leaving = [(group, r) for group, images in leaks.items() for r in images if r.split == side]
    out.warn(f"{text}; --official-split-leak {policy}: {len(leaving)} images of the {side} "
             f"set left out (recorded).")
    for group, record in leaving:
        table.exclude(record, f"official-split leak: group {group} is in both sets "
                              f"(--official-split-leak {policy})")
    gone = {id(r) for _, r in leaving}
    table.images = [r for r in table.images if id(r) not in gone]


def _hash(table: LabelTable, out: Reporter) -> None:
    """Every image's sha256, through the checksum memo (the manifest then reuses it)."""
    from mammography.data.manifest import ChecksumMemo, checksum_files, default_memo_path

    with ChecksumMemo(default_memo_path()) as memo:
        if memo.warning:
            out.warn(memo.warning)
        errors: dict[Any, str] = {}
        facts = checksum_files([r.path for r in table.images], memo, errors=errors,
                               absolute={r.path: r.identity[0] for r in table.images
                                         if r.identity is not None})
    for record in table.images:
        fact = facts.get(record.path)
        record.sha256 = fact.sha256 if fact is not None else ""


def _groups(n: int) -> str:
    return f"{n} split group{'' if n == 1 else 's'}"
