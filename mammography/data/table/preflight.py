"""The image table checked before a run starts: what makes it unusable as a whole.

A run directory is made for work that starts. A CSV that cannot be read (empty,
binary, no data rows), whose columns no layout of ``TABLE_FORMATS`` claims, or
whose layout's DICOM root is missing is refused before any ``results_N`` exists
(exit 2), with the very message the run would have given, and before torch is
imported. Problems of single rows are the run's: they become WARNINGs and
recorded exclusions as usual.

The CSV is read in full (the run reads it again): a few milliseconds for
thousands of rows, about a second for half a million. No DICOM file is opened and
no folder listed here.
"""

from __future__ import annotations

from pathlib import Path

from mammography.data.table.csv_read import read_csv_rows
from mammography.data.table.formats import CsvTable, LabelRules, TableRequest
from mammography.data.table.reader import claiming_format
from mammography.errors import DataError
from mammography.record.reporter import CollectingReporter


def table_problems(csv_path: Path, dicom_root: Path | None, *, labels: LabelRules | None,
                   path_column: str = "path") -> list[str]:
    """Why the image table ``csv_path`` cannot be used at all (empty when it can).

    ``labels``: how a labelled command reads labels, None for one that only scores
    images (predict). A format may say what makes its whole table unusable with a
    ``problems(csv, request)`` method (``AccessionFormat``: the DICOM root)."""
    request = TableRequest(labels=labels, path_column=path_column)
    try:
        # Its warnings (a Latin-1 file) are the run's to give, once.
        header, rows = read_csv_rows(Path(csv_path), CollectingReporter())
        csv = CsvTable(Path(csv_path), header, rows, Path(dicom_root) if dicom_root else None)
        table_format = claiming_format(csv, request)
    except DataError as exc:
        return [exc.render()]
    check = getattr(table_format, "problems", None)
    return list(check(csv, request)) if check is not None else []
