"""Density labels as archives write them, and their consistency within a breast and an exam.

Accepted label texts (any case, surrounding spaces ignored): ``1``-``4`` (also
``3.0``), ``A``-``D``, ``DENSITY A``-``D`` and ``BI-RADS A``-``D`` (VinDr-Mammo
writes ``DENSITY C``), and ``5``/``E`` for "not classifiable". A bare
``BI-RADS 3`` is refused: with a number, BI-RADS names the assessment
category of a finding, not the density.

Density may differ between a woman's breasts (VinDr-Mammo: 32 of 5,000
studies), so labels are per breast: the images of one breast (accession ×
laterality) must agree — if they do not, the breast is excluded with a
WARNING naming its CSV lines — while the two breasts of an exam may differ.
The exam's label is then the denser breast's (``domain.exam_label``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from mammography.domain import NOT_CLASSIFIABLE, exam_label
from mammography.record.reporter import Reporter

LETTERS = {"A": 1, "B": 2, "C": 3, "D": 4, "E": NOT_CLASSIFIABLE}
_PREFIXED = re.compile(r"^(?:DENSITY|BI-?RADS|BIRADS|ACR)[\s:_\-]*([A-E])$")
_BIRADS_NUMBER = re.compile(r"^BI-?RADS[\s:_\-]*\d")
LABEL_FORMS = "1-4, A-D, DENSITY A-D or BI-RADS A-D; 5 = not classifiable"


def parse_label(value: str | None) -> int | None:
    """'3', '3.0', 'C', 'c', 'DENSITY C', 'BI-RADS C' → 3; 5/E = not classifiable;
    anything else → None."""
    text = " ".join((value or "").strip().upper().split())
    if text in LETTERS:
        return LETTERS[text]
    prefixed = _PREFIXED.match(text)
    if prefixed:
        return LETTERS[prefixed.group(1)]
    try:
        number = float(text)
    except ValueError:
        return None
    if number.is_integer() and 1 <= number <= NOT_CLASSIFIABLE:
        return int(number)
    return None


def label_problem(value: str | None) -> str:
    """Why ``value`` is not a density label (for the exclusion reason)."""
    text = (value or "").strip()
    if _BIRADS_NUMBER.match(text.upper()):
        return (f"label {text!r} is a BI-RADS assessment category, not a density (use "
                f"{LABEL_FORMS})")
    return f"unknown label {text!r} (use {LABEL_FORMS})"


def check_breast_labels(records: list[Any], exclude: Callable[[Any, str], None],
                        out: Reporter) -> dict[str, Any]:
    """Drop breasts whose images disagree; report exams with a density per breast.

    ``exclude(record, reason)`` records one image's exclusion. Returns the
    counts for the audit. An exam whose images disagree while their laterality is
    unknown cannot be split into breasts: those images are excluded too.
    """
    by_exam: dict[str, list[Any]] = defaultdict(list)
    for record in records:
        by_exam[record.accession].append(record)
    excluded: set[int] = set()
    per_breast: list[tuple[str, dict[str, int]]] = []
    conflicts = 0
    for accession, images in by_exam.items():
        if len({r.label for r in images}) == 1:
            continue
        by_breast: dict[str, list[Any]] = defaultdict(list)
        for record in images:
            by_breast[(record.laterality or "").upper()[:1]].append(record)
        known = {}
        for side, group in by_breast.items():
            labels = sorted({r.label for r in group})
            if side in ("L", "R") and len(labels) == 1:
                known[side] = labels[0]
                continue
            conflicts += 1
            lines = sorted({r.row for r in group})
            where = f"the {side} breast" if side in ("L", "R") else "images without laterality"
            reason = (f"conflicting labels {labels} within {where} of exam {accession} "
                      f"(CSV lines {lines})" if side in ("L", "R") else
                      f"labels {sorted({r.label for r in images})} differ within exam "
                      f"{accession} and these images have no laterality to tell the breasts "
                      f"apart (CSV lines {lines})")
            out.warn(f"{reason}; {len(group)} images excluded.")
            for record in group:
                excluded.add(id(record))
                exclude(record, reason)
        if len(known) == 2 and len(set(known.values())) == 2:
            per_breast.append((accession, known))
    if per_breast:
        accession, sides = per_breast[0]
        out.log(f"{len(per_breast)} exams have a different density per breast (e.g. "
                f"{accession}: L={sides['L']}, R={sides['R']}); metrics per breast use each "
                "breast's label, per exam the denser breast's (BI-RADS).")
    records[:] = [r for r in records if id(r) not in excluded]
    return {"exams_with_breast_labels": len(per_breast), "breasts_excluded": conflicts}


def exam_labels(records: list[Any]) -> dict[str, int]:
    """accession → the exam's label (the denser breast's)."""
    labels: dict[str, list[int]] = defaultdict(list)
    for record in records:
        labels[record.accession].append(record.label)
    return {accession: exam_label(values) for accession, values in labels.items()}
