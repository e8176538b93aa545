"""Labels CSV → one image-level table (path, accession, patient, view, laterality, label).

Two CSV shapes are understood:

* the reference pipeline's ``classificacao.csv``: ``AccessionNumber,
  Classification[, PatientID]``, images at ``DICOM_ROOT/<AccessionNumber>/**/*.dcm``
  (every view of the exam is used);
* a generic ``path,label`` CSV (column names configurable; paths absolute or
  relative to ``--dicom-root``, else to the CSV's folder).

Density labels are 1-4 or A-D (stored as 1-4); 5 means "not classifiable" and
is excluded unless asked for. Problems with single rows or files become
``WARNING`` lines plus recorded exclusions; problems that make the data
unusable (no usable row at all, missing columns, unreadable CSV) raise
``DataError`` (exit 2) with the file, row and fix.
"""

from __future__ import annotations

import codecs
import csv
import errno
import io
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mammography.data.density_labels import exam_labels, label_problem, parse_label
from mammography.data.file_identity import missing_file_reason
from mammography.domain import to_index
from mammography.errors import DataError
from mammography.record.reporter import CONSOLE, Reporter

DICOM_SUFFIXES = (".dcm", ".dicom")
_GZIPPED_SUFFIXES = tuple(f"{s}.gz" for s in DICOM_SUFFIXES)
DICM_MAGIC = b"DICM"
GZIP_MAGIC = b"\x1f\x8b"
CLASSES = (1, 2, 3, 4)
SEED_COLUMNS = ("accessionnumber", "classification")



@dataclass
class ImageRecord:
    path: Path
    accession: str
    patient: str
    view: str
    laterality: str
    label: int | None  # None: an unlabelled image (``unlabelled.py``, for predict)
    row: int | None  # CSV line number (header = 1), for messages; None: found in a folder
    for_processing: bool = False
    study_uid: str = ""  # StudyInstanceUID
    sha256: str = ""  # file content, from the data manifest
    group: str = ""  # leakage-proof split group (data/grouping.py)
    view_source: str = ""        # where view came from: ViewPosition, ..., file name, folder name
    laterality_source: str = ""  # ImageLaterality, Laterality, FrameLaterality, ..., file name
    manufacturer: str = ""
    header: Any = None           # the DicomHeader (acquisition fingerprint), once read
    #: The file's identity (``file_identity.FileIdentity``) when its header was looked
    #: up: later steps of the same run (cache, manifest) key their memos by it
    #: instead of asking the file system again.
    identity: Any = None
    #: The CSV row's values (an exam's row in the seed layout): site, device, age band
    #: ... for evaluation subgroups (`eval-export --subgroup COL`).
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def breast(self) -> str:
        """The breast this image shows: ``<accession>/<L|R|?>`` (the per-breast level)."""
        side = (self.laterality or "").upper()[:1]
        return f"{self.accession}/{side if side in ('L', 'R') else '?'}"

    @property
    def split_group(self) -> str:
        """What splits keep on one side: the leakage-proof group, else the patient."""
        return self.group or self.patient

    @property
    def class_index(self) -> int:
        """The label as a class index 0-3 (what models and metrics use)."""
        return to_index(self.label)


@dataclass
class LabelTable:
    """The images a run will use, and everything left out with the reason."""

    images: list[ImageRecord]
    exclusions: list[dict[str, Any]]
    csv_path: Path | None  # None: images found in a folder (predict --dicom-root)
    dicom_root: Path | None
    csv_format: str  # "classificacao", "generic" or "folder" (no CSV)
    csv_rows: int
    warnings: list[str] = field(default_factory=list)
    #: ``density_labels.check_breast_labels``'s counts (exams labelled per breast, …)
    label_checks: dict[str, Any] = field(default_factory=dict)
    #: PatientIDs that named a breast and view, shortened to the patient (grouping.py)
    per_view_patient_ids: int = 0
    #: How the DICOM headers were obtained (``header_memo.HeaderStats.as_dict``)
    headers: dict[str, Any] = field(default_factory=dict)

    def exclude(self, record: ImageRecord, reason: str) -> None:
        """Record that ``record`` is left out, and why (it stays in ``images`` until the
        caller removes it)."""
        self.exclusions.append({"path": str(record.path), "accession": record.accession,
                                "row": record.row, "reason": reason})
    #: Images found before any was excluded as unusable, and how many were:
    #: every stage (header, decode) counts into the same --max-bad-fraction.
    images_found: int = 0
    bad_images: int = 0

    _fingerprint: Any = field(default=None, init=False, repr=False, compare=False)

    def fingerprint(self) -> dict[str, Any]:
        """The acquisition fingerprint of ``images`` (``fingerprint.py``), computed once
        per list of images: every step that drops images makes a new list."""
        cached = self._fingerprint
        if cached is None or cached[0] is not self.images \
                or cached[1]["images"] != len(self.images):
            from mammography.data.fingerprint import acquisition_fingerprint

            cached = self._fingerprint = (self.images, acquisition_fingerprint(self.images))
        return cached[1]

    @property
    def labels(self) -> list[int]:
        return [r.label for r in self.images]

    def class_distribution(self, per: str = "image") -> dict[str, int]:
        """Counts per class, per image or per exam (``per="exam"``: the exam's label is
        its denser breast's, ``domain.exam_label``)."""
        if per == "exam":
            counts = Counter(exam_labels(self.images).values())
        else:
            counts = Counter(self.labels)
        return {str(k): counts[k] for k in sorted(counts)}

    @property
    def num_exams(self) -> int:
        return len({r.accession for r in self.images})

    @property
    def num_patients(self) -> int:
        return len({r.patient for r in self.images})


def read_csv_rows(path: Path,
                  out: Reporter) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and (line number, row) pairs; tolerant of BOM, ';' or tab, Latin-1, UTF-16."""
    try:
        raw = path.read_bytes()
    except OSError as exc:  # a folder, a permission problem: exit 2, not a traceback
        raise DataError(f"Cannot read {path}: {exc.strerror or exc}. Check the --csv path."
                        ) from None
    if not raw.strip():
        raise DataError(f"{path} is empty; it needs a header row and one row per exam "
                        "(AccessionNumber,Classification) or image (path,label).")
    text = _decode_csv(path, raw, out)
    if "\x00" in text:
        # Binary data (or UTF-16/32 without a byte-order mark) read as Latin-1
        # would give nonsense column names or a csv.Error; say what it is.
        raise DataError(f"{path} contains NUL bytes: it is not a text CSV (a binary file, or "
                        "UTF-16/32 without a byte-order mark). Save it as UTF-8 CSV.")
    sample = text[:8192]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    # newline="": the csv module splits lines itself, so "\r" line ends (old Mac
    # exports) and newlines inside quoted fields are read, not an error.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            header = []
        for values in reader:
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue
            rows.append((line, {h: (values[i].strip() if i < len(values) else "")
                                for i, h in enumerate(header)}))
    except csv.Error as exc:  # e.g. a field over the size limit, a stray quote + newline
        raise DataError(f"{path} line {reader.line_num} is not valid CSV ({exc}). Fix that "
                        "line, or re-export the file as CSV.") from None
    if not rows:
        raise DataError(f"{path} has a header but no data rows; add one row per exam or image.")
    return header, rows


def _decode_csv(path: Path, raw: bytes, out: Reporter) -> str:
    """UTF-8 (BOM or not), UTF-16 with a BOM (Excel's "Unicode text"), else Latin-1."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            raise DataError(f"{path} starts with a UTF-16 byte-order mark but is not valid "
                            "UTF-16. Save it as UTF-8 CSV.") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        out.warn(f"{path} is not UTF-8; read it as Latin-1. Save it as UTF-8 to silence "
                 "this.")
        return raw.decode("latin-1")


def _column(header: list[str], wanted: str) -> str | None:
    """Case- and space-insensitive column lookup."""
    norm = {h.lower().replace(" ", "").replace("_", ""): h for h in header}
    return norm.get(wanted.lower().replace(" ", "").replace("_", ""))


def _is_folder_name(name: str) -> bool:
    return name not in (".", "..") and "/" not in name and "\\" not in name


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # ENAMETOOLONG and friends: not a usable path
        return False


def find_dicoms(folder: Path) -> list[Path]:
    """Every DICOM file below ``folder`` (any depth), sorted for determinism.

    By extension (``.dcm``, ``.dicom``), and by content for the rest: PACS
    exports and DICOMDIR trees name files ``IM000001`` or by UID, without an
    extension, so a file whose bytes 128-131 are ``DICM`` counts too (the
    DICOMDIR index itself does not). A gzip-compressed ``.dcm.gz`` or
    extension-less file is listed as well, so that it is excluded with the
    reason ("decompress it first") instead of silently missing.

    What ``folder.rglob("*")`` filtered by :func:`_looks_like_dicom` gives,
    walked with ``os.scandir``: its entries know whether they are files
    without a ``stat`` each, and names are judged as strings before a Path is
    made (pathlib's rglob cost ~50 us a file, a third of a warm start). As
    rglob, symlinked folders are not followed and unreadable folders skipped.
    """
    try:
        with os.scandir(folder) as listing:
            top = list(listing)
    except OSError as exc:
        # Not a folder, or not one we may list: nothing in it (as is_dir() and
        # rglob say); anything else (a name too long, an I/O error) is raised.
        if isinstance(exc, FileNotFoundError | NotADirectoryError | PermissionError) \
                or exc.errno in (errno.ELOOP, errno.EBADF):
            return []
        raise
    found: list[Path] = []
    pending: list[tuple[Path, list[os.DirEntry]]] = [(folder, top)]
    while pending:
        parent, entries = pending.pop()
        for entry in entries:
            try:
                if entry.is_dir() and not entry.is_symlink():
                    child = parent / entry.name
                    try:
                        with os.scandir(child) as listing:
                            pending.append((child, list(listing)))
                    except PermissionError:
                        pass
                    continue
                if not entry.is_file():
                    continue
            except OSError:
                continue
            verdict = _name_verdict(entry.name)
            if verdict is False:
                continue
            path = parent / entry.name
            if verdict or _has_dicom_bytes(path):
                found.append(path)
    return sorted(found)


def _looks_like_dicom(path: Path) -> bool:
    """Whether ``path`` is a file ``find_dicoms`` lists."""
    if not path.is_file():
        return False
    verdict = _name_verdict(path.name)
    return verdict if verdict is not None else _has_dicom_bytes(path)


def _name_verdict(name: str) -> bool | None:
    """What a file's name says: DICOM (True), not worth opening (False), or look (None)."""
    lower = name.lower()
    if lower.startswith(".") or lower == "dicomdir":
        return False
    dot = name.rfind(".")
    suffix = name[dot:] if 0 < dot < len(name) - 1 else ""  # as PurePath.suffix
    if suffix.lower() in DICOM_SUFFIXES:
        return True
    if suffix and not lower.endswith(_GZIPPED_SUFFIXES) and not _is_uid_like(name):
        return False  # notes.txt, report.pdf
    return None


def _has_dicom_bytes(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return head[128:132] == DICM_MAGIC or head[:2] == GZIP_MAGIC


def _is_uid_like(name: str) -> bool:
    """``1.2.840.113619.2.55.3.12345`` has "suffixes" that are only UID components."""
    return all(part.isdigit() for part in name.split("."))


def load_label_table(csv_path: Path, dicom_root: Path | None, *, include_class_5: bool = False,
                     path_column: str = "path", label_column: str = "label",
                     out: Reporter = CONSOLE) -> LabelTable:
    """Read the CSV and find the images; headers are read later (see ``attach_headers``)."""
    csv_path = Path(csv_path)
    out.log(f"Loading data from {csv_path}")
    header, rows = read_csv_rows(csv_path, out)
    accession_col, class_col = _column(header, "AccessionNumber"), _column(header,
                                                                           "Classification")
    if accession_col and class_col:
        root = Path(dicom_root) if dicom_root else csv_path.parent / "archive"
        if not root.is_dir():
            raise DataError(f"DICOM root {root} does not exist. Pass --dicom-root DIR, the "
                            "folder holding one sub-folder per AccessionNumber.")
        table = _seed_table(csv_path, root, header, rows, accession_col, class_col, out)
    else:
        path_col, lab_col = _column(header, path_column), _column(header, label_column)
        if not (path_col and lab_col):
            raise DataError(
                f"{csv_path}: columns {header} are neither AccessionNumber,Classification "
                f"(classificacao.csv) nor {path_column},{label_column} (generic CSV). Rename "
                "the columns or pass --path-column/--label-column.")
        base = Path(dicom_root) if dicom_root else csv_path.parent
        table = _generic_table(csv_path, base, header, rows, path_col, lab_col, out)
    _apply_class_5(table, include_class_5, out)
    if not table.images:
        raise DataError(f"No usable images in {csv_path}: every row was excluded "
                        f"({_reason_summary(table.exclusions)}). Check the CSV labels and "
                        "--dicom-root.")
    return table


def _seed_table(csv_path: Path, root: Path, header: list[str],
                rows: list[tuple[int, dict[str, str]]], accession_col: str, class_col: str,
                out: Reporter) -> LabelTable:
    patient_col = _column(header, "PatientID")
    table = LabelTable([], [], csv_path, root, "classificacao", len(rows))
    # accession -> [(line, label or None, raw label text, patient)]
    by_accession: dict[str, list[tuple[int, int | None, str, str]]] = defaultdict(list)
    fields_of: dict[str, dict[str, str]] = {}
    for line, row in rows:
        accession = row.get(accession_col, "")
        if not accession:
            _exclude(table, out, row=line, reason="empty AccessionNumber")
            continue
        if not _is_folder_name(accession):
            # ".", "..", "a/b" or "/abs" would make root / accession point at the
            # root itself, its parent or anywhere: every DICOM below would get
            # this row's label (and "/" would walk the whole file system).
            _exclude(table, out, row=line, accession=accession,
                     reason="AccessionNumber is not a plain folder name (no '/', '\\', "
                            "'.' or '..')")
            continue
        raw = row.get(class_col, "")
        patient = row.get(patient_col, "") if patient_col else ""
        by_accession[accession].append((line, parse_label(raw), raw, patient))
        fields_of.setdefault(accession, row)
    for accession, entries in by_accession.items():
        labels = {label for _, label, _, _ in entries}
        line = entries[0][0]
        if None in labels:
            bad_line, raw = next((n, text) for n, label, text, _ in entries if label is None)
            _exclude(table, out, row=bad_line, accession=accession, reason=label_problem(raw))
            continue
        if len(labels) > 1:
            _exclude(table, out, row=line, accession=accession,
                     reason=f"listed {len(entries)} times with conflicting labels "
                            f"{sorted(labels)} (lines {[e[0] for e in entries]})")
            continue
        if len(entries) > 1:
            out.warn(f"AccessionNumber {accession} is listed {len(entries)} times with the "
                     "same label; using it once.")
        try:
            files = find_dicoms(root / accession)
        except OSError as exc:  # e.g. a name too long for the file system
            _exclude(table, out, row=line, accession=accession,
                     reason=f"cannot list {root / accession}: {exc.strerror or exc}")
            continue
        if not files:
            _exclude(table, out, row=line, accession=accession,
                     reason=f"no DICOM files under {root / accession}")
            continue
        label = labels.pop()
        patient = entries[0][3]
        for path in files:
            table.images.append(ImageRecord(path=path, accession=accession, patient=patient,
                                            view="", laterality="", label=label, row=line,
                                            fields=fields_of[accession]))
    orphans = sorted(p.name for p in root.iterdir()  # is_dir only for the few candidates
                     if p.name not in by_accession and p.is_dir()) if root.is_dir() else []
    if orphans:
        shown = ", ".join(orphans[:5]) + (" ..." if len(orphans) > 5 else "")
        out.warn(f"{len(orphans)} folders in {root} have no row in {csv_path.name} and "
                 f"are not used: {shown}")
        for name in orphans:
            table.exclusions.append({"accession": name, "path": str(root / name),
                                     "reason": "folder has no CSV row"})
    return table


def _generic_table(csv_path: Path, base: Path, header: list[str],
                   rows: list[tuple[int, dict[str, str]]], path_col: str, label_col: str,
                   out: Reporter) -> LabelTable:
    accession_col = _column(header, "AccessionNumber") or _column(header, "accession")
    patient_col = _column(header, "PatientID") or _column(header, "patient")
    table = LabelTable([], [], csv_path, base, "generic", len(rows))
    seen: dict[Path, tuple[int, int]] = {}
    for line, row in rows:
        raw_path = row.get(path_col, "")
        label = parse_label(row.get(label_col, ""))
        if not raw_path:
            _exclude(table, out, row=line, reason=f"empty {path_col!r}")
            continue
        path = Path(raw_path)
        if not path.is_absolute():
            candidates = [base / path, csv_path.parent / path]
            path = next((c for c in candidates if _exists(c)), candidates[0])
        if label is None:
            _exclude(table, out, row=line, path=str(path),
                     reason=label_problem(row.get(label_col, "")))
            continue
        try:
            is_file = path.is_file()
        except OSError as exc:  # e.g. a name too long for the file system
            _exclude(table, out, row=line, path=str(path),
                     reason=f"unusable path: {exc.strerror or exc}")
            continue
        if not is_file:
            _exclude(table, out, row=line, path=str(path), reason=missing_file_reason(path))
            continue
        if path in seen:
            first_line, first_label = seen[path]
            if first_label != label:
                out.warn(f"{csv_path.name} line {line}: {path} already labelled "
                         f"{first_label} on line {first_line}; both rows excluded.")
                table.images = [r for r in table.images if r.path != path]
                table.exclusions.append({"row": line, "path": str(path),
                                         "reason": "conflicting duplicate labels"})
            continue
        seen[path] = (line, label)
        table.images.append(ImageRecord(
            path=path, accession=row.get(accession_col, "") if accession_col else "",
            patient=row.get(patient_col, "") if patient_col else "", view="", laterality="",
            label=label, row=line, fields=row))
    return table


def _apply_class_5(table: LabelTable, include: bool, out: Reporter) -> None:
    class5 = [r for r in table.images if r.label == 5]
    exams = len({r.accession or str(r.path) for r in class5})
    if include:
        out.log(f"Keeping class 5 (not classifiable): {exams} exams")
        return
    out.log(f"Excluding class 5 ({exams} samples)")
    table.images = [r for r in table.images if r.label != 5]
    for accession in sorted({r.accession or str(r.path) for r in class5}):
        table.exclusions.append({"accession": accession, "reason": "class 5 (not classifiable)"})


def attach_remembered_headers(table: LabelTable, read_header: Callable[[Path], Any], *,
                               image_problem: Callable[[Any], str | None],
                               on_bad_image: str, max_bad_fraction: float,
                               out: Reporter = CONSOLE) -> None:
    """``attach_headers`` through the header memo in the cache folder (every command
    that reads an archive: training, data check/cache, predict), with its WARNING
    when unusable and the run.log line saying how many headers it gave."""
    from mammography.data.memo import ChecksumMemo, default_memo_path

    with ChecksumMemo(default_memo_path()) as memo:
        try:
            attach_headers(table, read_header, on_bad_image=on_bad_image,
                           max_bad_fraction=max_bad_fraction,
                           workers=min(8, os.cpu_count() or 1), out=out,
                           image_problem=image_problem, memo=memo)
        finally:  # unusable at opening or later: said once, even when the data is refused
            if memo.warning:
                out.warn(memo.warning)
    headers = table.headers
    out.log(f"DICOM headers: {headers['files_from_memo']} remembered, {headers['files_read']} "
            f"read ({headers['seconds']:.1f}s)")


def attach_headers(table: LabelTable, read_header: Callable[[Path], Any], *,
                   on_bad_image: str = "skip", max_bad_fraction: float = 0.2,
                   workers: int = 8, out: Reporter = CONSOLE,
                   image_problem: Callable[[Any], str | None] | None = None,
                   memo: Any = None) -> None:
    """Fill patient/view/laterality from DICOM headers; drop unusable files.

    Patient falls back CSV → DICOM PatientID → accession; accession (generic
    CSV) falls back to DICOM AccessionNumber → the file's folder name. View
    and laterality come from the header (see ``views.py``), else from the
    file name, else from its folder names below the DICOM root.
    ``image_problem(header)`` says what the header alone rules out (no pixel
    data, colour, multi-frame, short pixel data); those files are excluded
    like unreadable ones. ``memo`` (a ``memo.ChecksumMemo``) remembers headers
    between runs (``header_memo.py``); how many came from it is recorded in
    ``table.headers``.
    """
    from mammography.data.dicom.header_memo import read_headers

    outcomes, identities, stats = read_headers([r.path for r in table.images], read_header,
                                               memo, workers)
    table.headers = stats.as_dict()
    table.images_found = table.images_found or len(outcomes)
    kept, bad = [], []
    for record, (header, error), identity in zip(table.images, outcomes, identities,
                                                 strict=True):
        record.identity = identity
        if error is None and image_problem is not None:
            error = image_problem(header)
        if error is not None:
            bad.append((record, error))
            continue
        _fill_from_header(record, header, table.dicom_root)
        kept.append(record)
    table.images = kept
    exclude_bad_images(table, bad, on_bad_image=on_bad_image,
                       max_bad_fraction=max_bad_fraction, out=out, what="unusable")


def _fill_from_header(record: ImageRecord, header: Any, root: Path | None) -> None:
    from mammography.data.dicom.views import text_views

    record.patient = record.patient or header.patient_id or ""
    record.accession = record.accession or header.accession or record.path.parent.name
    record.patient = record.patient or record.accession
    record.view, record.view_source = header.view, header.view_source
    record.laterality, record.laterality_source = header.laterality, header.laterality_source
    if not (record.view and record.laterality):  # the usual case needs no path parsing
        for text, source in _path_texts(record.path, root):
            if record.view and record.laterality:
                break
            view, laterality = text_views(text)
            if view and not record.view:
                record.view, record.view_source = view, source
            if laterality and not record.laterality:
                record.laterality, record.laterality_source = laterality, source
    record.for_processing = bool(header.for_processing)
    record.study_uid = header.study_uid
    record.manufacturer = header.manufacturer
    record.header = header


def _path_texts(path: Path, root: Path | None) -> list[tuple[str, str]]:
    """The file name, then its folders below the DICOM root (nearest first)."""
    texts = [(path.stem, "file name")]
    try:
        parents = path.parent.relative_to(root).parts if root is not None else ()
    except ValueError:
        parents = ()
    texts += [(part, "folder name") for part in reversed(parents)]
    return texts


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


def _exclude(table: LabelTable, out: Reporter, *, reason: str, row: int | None = None,
             **where: str) -> None:
    place = f"{table.csv_path.name} line {row}" if row is not None else str(table.csv_path)
    subject = " ".join(f"{v}" for v in where.values())
    out.warn(f"{place}{' (' + subject + ')' if subject else ''}: {reason}; excluded.")
    table.exclusions.append({"row": row, **where, "reason": reason})


def _reason_summary(exclusions: Iterable[dict[str, Any]]) -> str:
    counts = Counter(str(e.get("reason", "")).split(" (")[0] for e in exclusions)
    return ", ".join(f"{n} x {reason}" for reason, n in counts.most_common(4)) or "no rows"
