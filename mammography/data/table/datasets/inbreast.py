"""INbreast as downloaded.

``INbreast.csv``: ``;``-separated, CRLF - ``Patient ID;Patient age;Laterality;
View;Acquisition date;File Name;ACR;Bi-Rads`` - one row per image; ``Patient
ID`` and ``Patient age`` say ``removed``, so the patient is only in the image's
file name: ``AllDICOMs/<File Name>_<16-hex patient hash>_MG_<R|L>_<CC|ML>_ANON.dcm``
(the CSV's ``MLO`` is ``ML`` there). ``ACR`` (1-4) is the breast's density;
a blank one (one is 193 spaces) is excluded with its line. The file is found
by its ``File Name`` (the name's first part, which is unique) and checked
against the row's laterality and view; there is no official split.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mammography.data.table.datasets.published import (
    DatasetFiles,
    DatasetRecord,
    PublishedFile,
    RowExclusions,
    density,
    file_entries,
    finish,
    start_table,
)
from mammography.data.table.formats import TableRequest
from mammography.data.table.records import ImageRecord, LabelTable
from mammography.record.reporter import Reporter

INBREAST_CSV = "INbreast.csv"
FOLDER = "AllDICOMs"
#: ``<File Name>_<patient hash>_MG_<side>_<view>_ANON.dcm``
FILE_NAME = re.compile(r"^(?P<file>[^_]+)_(?P<patient>[0-9a-fA-F]+)_MG_(?P<side>[LR])_"
                       r"(?P<view>[A-Z]+)_ANON\.dcm$")
#: The CSV's view -> the file name's.
NAME_VIEW = {"MLO": "ML"}


class INbreast:
    name = "inbreast"
    title = "INbreast"
    files = (PublishedFile("images", INBREAST_CSV,
                           ("Laterality", "View", "Acquisition date", "File Name", "ACR")),)
    label_rule = "ACR of INbreast.csv, one row per image: 1-4 (the breast's density)"
    layout = "AllDICOMs/<File Name>_<patient hash>_MG_<R|L>_<CC|ML>_ANON.dcm"
    units = ("patient = the 16-hex hash in the file name; exam = patient x Acquisition date; "
             "breast = exam x Laterality")
    has_official_split = False

    def read(self, files: DatasetFiles, request: TableRequest, out: Reporter) -> LabelTable:
        csv = files.one("images")
        assert csv is not None
        table = start_table(self, files, csv)
        skip = RowExclusions(table, out)
        record = DatasetRecord(self.name, self.title, self.label_rule, self.layout, self.units,
                               file_entries(files))
        side_col, view_col = csv.column("Laterality"), csv.column("View")
        date_col, name_col = csv.column("Acquisition date"), csv.column("File Name")
        acr_col = csv.column("ACR")
        on_disk = _files_by_name(files.root / FOLDER)
        seen: dict[str, int] = {}
        for line, row in csv.rows:
            name = row.get(name_col, "")
            if not name:
                skip.add("no File Name", "File Name is blank", csv=INBREAST_CSV, row=line)
                continue
            if name in seen:
                skip.add("image listed again", f"File Name {name} is already on line "
                         f"{seen[name]}", csv=INBREAST_CSV, row=line)
                continue
            seen[name] = line
            record.images_listed += 1
            found = on_disk.get(name)
            if found is None:
                skip.add("not in the download", f"no {FOLDER}/{name}_*_ANON.dcm",
                         csv=INBREAST_CSV, row=line, path=str(files.root / FOLDER / name))
                continue
            path, match = found
            record.images_present += 1
            side = row.get(side_col, "").strip().upper()[:1]
            view = row.get(view_col, "").strip().upper()
            if (side, NAME_VIEW.get(view, view)) != (match["side"], match["view"]):
                skip.add("file name disagrees with the row", f"the row says {side} {view}, "
                         f"the file {path.name}", csv=INBREAST_CSV, row=line, path=str(path))
                continue
            label = None
            if request.labelled:
                label, refusal = density(row.get(acr_col, ""), allowed="ACR 1-4")
                if refusal is not None:
                    skip.add(refusal.kind, refusal.reason, csv=INBREAST_CSV, row=line,
                             path=str(path))
                    continue
            patient = match["patient"].lower()
            date = row.get(date_col, "").strip()
            table.images.append(ImageRecord(
                path=path, accession=f"{patient}_{date}" if date else patient, patient=patient,
                view=view, laterality=side, label=label, row=line,
                view_source=f"{INBREAST_CSV} {view_col}",
                laterality_source=f"{INBREAST_CSV} {side_col}", fields=row))
        return finish(table, record, skip, out)


def _files_by_name(folder: Path) -> dict[str, tuple[Path, re.Match[str]]]:
    """File Name -> (its DICOM file, the parsed name), from one listing of the folder."""
    found: dict[str, tuple[Path, re.Match[str]]] = {}
    try:
        with os.scandir(folder) as listing:
            names = sorted(entry.name for entry in listing)
    except OSError:
        return found
    for name in names:
        match = FILE_NAME.match(name)
        if match:
            found.setdefault(match["file"], (folder / name, match))
    return found


DATASET = INbreast()
