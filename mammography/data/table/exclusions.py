"""What is left out of an image table, and when too much is: one rule for every reader.

A bad row of a CSV or a bad image is a ``WARNING`` line plus a recorded
exclusion (the run's data_manifest.json lists them with the reason); only what
makes the data unusable - every row excluded, more unusable images than
``--max-bad-fraction`` allows, ``--on-bad-image error`` - stops the command
with a ``DataError`` (exit 2) naming the file and the fix.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from mammography.data.table.records import ImageRecord, LabelTable
from mammography.errors import DataError
from mammography.record.reporter import Reporter


def exclude_row(table: LabelTable, out: Reporter, *, reason: str, row: int | None = None,
                **where: str) -> None:
    """Leave out a CSV row (line ``row``): a WARNING naming the file, the line and what
    the row names (``where``: accession, path), and the exclusion recorded with them."""
    place = f"{table.csv_path.name} line {row}" if row is not None else str(table.csv_path)
    subject = " ".join(f"{v}" for v in where.values())
    out.warn(f"{place}{' (' + subject + ')' if subject else ''}: {reason}; excluded.")
    table.exclusions.append({"row": row, **where, "reason": reason})


def exclude_bad_images(table: LabelTable, bad: list[tuple[ImageRecord, str]], *,
                       on_bad_image: str, max_bad_fraction: float, out: Reporter,
                       what: str = "unusable") -> None:
    """Leave out images that cannot be used (WARNING + recorded exclusion), or stop.

    One rule for every stage and command (``data check``, ``data cache``,
    training): ``--on-bad-image error`` stops at the first, and the share of
    unusable images *over all stages* - header, then decode - may not exceed
    ``--max-bad-fraction`` of the images found.
    """
    if not bad:
        return
    if on_bad_image == "error":
        record, reason = bad[0]
        line = f" (CSV line {record.row})" if record.row else ""
        raise DataError(f"Cannot use {record.path}{line}: {reason}. "
                        f"{len(bad)} {what} images in all; fix or remove them, or pass "
                        "--on-bad-image skip.")
    dropped = {id(record) for record, _ in bad}
    table.images = [r for r in table.images if id(r) not in dropped]
    for record, reason in bad:
        out.warn(f"skipping {what} image {record.path}: {reason}")
        table.exclusions.append({"path": str(record.path), "accession": record.accession,
                                 "row": record.row, "reason": reason})
    table.bad_images += len(bad)
    total = max(table.images_found, table.bad_images, 1)
    share = table.bad_images / total
    if share > max_bad_fraction:
        raise DataError(f"{table.bad_images} of {total} images ({share:.0%}) cannot be used, "
                        f"more than --max-bad-fraction {max_bad_fraction:g}; first: "
                        f"{bad[0][0].path}: {bad[0][1]}. Check --dicom-root, the decoder "
                        "plugins and --multiframe (`mammography data check`).")


def reason_summary(exclusions: Iterable[dict[str, Any]]) -> str:
    """``3 x no DICOM files under, 1 x unknown label``: the commonest reasons first."""
    counts = Counter(str(e.get("reason", "")).split(" (")[0] for e in exclusions)
    return ", ".join(f"{n} x {reason}" for reason, n in counts.most_common(4)) or "no rows"
