"""The image table: one record per image, and what was left out with the reason.

``ImageRecord`` is an image a run uses (its file, exam, patient, view, side,
label - None in an unlabelled table - and what its DICOM header said, once
read); ``LabelTable`` holds the records of a run together with every
exclusion, what the CSV was, and the header statistics. Every reader of
data/table/ produces one; everything downstream (cache, manifest, splits,
datasets, predictions) consumes one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mammography.data.density_labels import exam_labels
from mammography.domain import to_index


@dataclass
class ImageRecord:
    path: Path
    accession: str
    patient: str
    view: str
    laterality: str
    label: int | None  # None: an unlabelled image (a table read without labels, for predict)
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
    #: The publisher's official set of the image ("train" or "test"; "" when the table
    #: has none): a public dataset's (``datasets/``), for ``--split``.
    split: str = ""

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
    csv_format: str  # the TableFormat's name ("classificacao", "generic"), "folder" (no CSV)
    csv_rows: int
    warnings: list[str] = field(default_factory=list)
    #: ``density_labels.check_breast_labels``'s counts (exams labelled per breast, …)
    label_checks: dict[str, Any] = field(default_factory=dict)
    #: PatientIDs that named a breast and view, shortened to the patient (grouping.py)
    per_view_patient_ids: int = 0
    #: How the DICOM headers were obtained (``header_memo.HeaderStats.as_dict``)
    headers: dict[str, Any] = field(default_factory=dict)

    #: Images found before any was excluded as unusable, and how many were:
    #: every stage (header, decode) counts into the same --max-bad-fraction.
    images_found: int = 0
    bad_images: int = 0
    #: The CSV's column names as written (empty without a CSV).
    csv_columns: list[str] = field(default_factory=list)
    #: Every CSV the table was read from (a public dataset may ship several); csv_path
    #: is the first.
    csv_paths: list[Path] = field(default_factory=list)
    #: What a public dataset's reader recorded (``datasets/``): the files, the label
    #: rule, how many of its images the download holds, the official split; and, once
    #: ``--split`` chose a set, what that did (``official_split.py``). Empty otherwise.
    dataset: dict[str, Any] = field(default_factory=dict)

    _fingerprint: Any = field(default=None, init=False, repr=False, compare=False)

    def exclude(self, record: ImageRecord, reason: str) -> None:
        """Record that ``record`` is left out, and why (it stays in ``images`` until the
        caller removes it)."""
        self.exclusions.append({"path": str(record.path), "accession": record.accession,
                                "row": record.row, "reason": reason})

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
