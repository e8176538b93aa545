"""What a table format is: a CSV layout that claims a header and turns its rows into images.

A *format* is one dataset layout: which columns it needs, where the images of
a row are, how a row's label is read. It has a name (recorded as the table's
``csv_format`` in summary.json), says whether it ``claims`` a CSV from its
columns, and ``read``s the rows into a ``LabelTable`` of ``ImageRecord`` rows
(with every row it leaves out recorded, ``exclusions.exclude_row``). The
reader (``reader.py``) tries the formats of ``TABLE_FORMATS`` in order.

Adding a generic layout is one small module with a class following
:class:`TableFormat`, added to ``reader.TABLE_FORMATS``. A public dataset
(VinDr-Mammo, RSNA, CBIS-DDSM, INbreast, EMBED) is read as its publisher
ships it - several files, named by ``--dataset`` rather than claimed by
columns - by a module of ``datasets/`` (``datasets/published.py``).

One reading serves both kinds of command: a :class:`TableRequest` with
``labels`` reads density labels (training, evaluation, data checks); one
without reads only which images there are (predict), and a format must then not
require a label column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mammography.data.table.csv_read import find_column
from mammography.data.table.discovery import find_dicoms, find_dicoms_by_content
from mammography.data.table.records import LabelTable
from mammography.record.reporter import Reporter


@dataclass(frozen=True)
class LabelRules:
    """How density labels are read: a path CSV's label column, and class 5."""

    column: str = "label"
    include_class_5: bool = False


@dataclass(frozen=True)
class TableRequest:
    """What a command asks of its image table.

    ``labels``: how to read labels; None for an unlabelled table (predict), whose
    records get ``label=None`` and whose messages say "scoring" instead of "using".
    ``find_by_content``: count every file with the DICM preamble as DICOM, whatever its
    extension (an archive nobody has curated); else by name (``discovery.py``).
    """

    labels: LabelRules | None = LabelRules()
    path_column: str = "path"
    find_by_content: bool = False

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    @property
    def using(self) -> str:
        """The verb of this table's messages: "using" (labelled), "scoring" (not)."""
        return "using" if self.labelled else "scoring"

    @property
    def used(self) -> str:
        return "used" if self.labelled else "scored"

    def dicoms_under(self, folder: Path) -> list[Path]:
        """The DICOM files below ``folder`` (OSError when it cannot be listed)."""
        return find_dicoms_by_content(folder)[0] if self.find_by_content else find_dicoms(folder)


@dataclass(frozen=True)
class CsvTable:
    """A read CSV (``csv_read.read_csv_rows``) with the ``--dicom-root`` it came with."""

    path: Path
    header: list[str]
    rows: list[tuple[int, dict[str, str]]]  # (line number, {column: value})
    dicom_root: Path | None  # as given; each format has its own default

    def column(self, *names: str) -> str | None:
        """The header's spelling of the first of ``names`` it has (case, spaces and
        underscores ignored); None when it has none."""
        for name in names:
            found = find_column(self.header, name)
            if found:
                return found
        return None

    def new_table(self, root: Path, format_name: str) -> LabelTable:
        return LabelTable([], [], self.path, root, format_name, len(self.rows),
                          csv_columns=list(self.header))


class TableFormat(Protocol):
    """One CSV layout (module docstring)."""

    #: Recorded as the table's ``csv_format`` (summary.json ``data_config``).
    name: str

    def claims(self, csv: CsvTable, request: TableRequest) -> bool:
        """Whether this layout is the CSV's, from its columns (and what is asked)."""
        ...

    def read(self, csv: CsvTable, request: TableRequest, out: Reporter) -> LabelTable:
        """The CSV's images, every row left out recorded with the reason; headers are
        not read yet (``headers.py``). A problem that makes the whole table unusable is
        a ``DataError`` naming the file and the fix."""
        ...
