"""Public datasets' downloads in miniature, written from their documented layouts.

Each builder writes what a user's download holds - the publisher's CSV files
with their exact columns and quirks (CRLF, quoted newlines, ``breast density``
with a space, ``;`` separators, a 193-space ACR field, absolute EMBED paths),
its folder layout (``.dicom`` files, TCIA folders, ``ML`` in INbreast's file
names) - with synthetic pixels from the project's phantom (the density class
is the label, so the images are learnable) and real-looking identifiers, plus
a partial download (files removed). No publisher's file is copied: every row
is made here. Each returns a ``Layout``: the root, the files to pass with
``--csv``, and what a correct reader must find (``expect``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from mammography.data.synthetic import synthesize_mammogram
from mammography.data.synthetic.dicom_writer import write_mammogram_dicom

SIZE = (64, 52)
LETTERS = "ABCD"


@dataclass
class Layout:
    root: Path
    csvs: list[Path]
    expect: dict[str, Any] = field(default_factory=dict)


def hexid(*parts: object, n: int = 32) -> str:
    """A 32-hex identifier like VinDr's (md5 of the parts)."""
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()[:n]


def uid(prefix: str, *parts: object) -> str:
    """A DICOM UID under ``prefix`` (CBIS-DDSM's 1.3.6.1.4.1.9590.100.1.2.), digits from
    the parts."""
    digits = str(int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest(), 16))
    return (prefix + digits)[:64]


def write_image(path: Path, *, label: int, view: str, side: str, patient: str, exam: str,
                seed: int, study_uid: str | None = None, series_uid: str | None = None,
                sop_uid: str | None = None) -> Path:
    """One synthetic MG DICOM file (density ``label``); UIDs set where given."""
    rng = np.random.default_rng(seed)
    view = "MLO" if view.upper() in ("MLO", "ML") else "CC"
    image = synthesize_mammogram(rng, label, SIZE, view, side)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mammogram_dicom(path, image, patient_id=patient, accession=exam[:16], view=view,
                          laterality=side, seed_uid_suffix=str(seed))
    if study_uid or series_uid or sop_uid:
        ds = pydicom.dcmread(path)
        if study_uid:
            ds.StudyInstanceUID = study_uid
        if series_uid:
            ds.SeriesInstanceUID = series_uid
        if sop_uid:
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.save_as(path, enforce_file_format=True)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]], *, sep: str = ",",
              crlf: bool = False, quote_last: bool = False) -> Path:
    """A CSV as the publisher writes it (``quote_last``: the last field quoted, as
    CBIS-DDSM's ROI mask path with its embedded newline)."""
    end = "\r\n" if crlf else "\n"
    lines = [sep.join(header)]
    for row in rows:
        cells = list(row)
        if quote_last:
            cells[-1] = f'"{cells[-1]}"'
        lines.append(sep.join(cells))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((end.join(lines) + end).encode("utf-8"))
    return path


# ----------------------------------------------------------------------------- VinDr-Mammo

VINDR_COLUMNS = ["study_id", "series_id", "image_id", "laterality", "view_position", "height",
                 "width", "breast_birads", "breast_density", "split"]


def vindr_mammo(root: Path, studies: int = 10, test_every: int = 4) -> Layout:
    """``studies`` studies x 4 views; every ``test_every``-th study in the test set; study 1
    with a different density per breast; the last study not downloaded."""
    rows, findings = [], []
    per_breast: dict[tuple[str, str], int] = {}
    for s in range(studies):
        study = hexid("vindr-study", s)
        split = "test" if s % test_every == test_every - 1 else "training"
        for side in ("L", "R"):
            label = 1 + (s + s // 4) % 4  # every class in both official sets
            if s == 1 and side == "R":
                label = 1 + (label % 4)  # this study's breasts differ
            per_breast[(study, side)] = label
            series = hexid("vindr-series", s, side)
            for view in ("CC", "MLO"):
                image = hexid("vindr-image", s, side, view)
                rows.append([study, series, image, side, view, str(SIZE[0]), str(SIZE[1]),
                             "BI-RADS 1", f"DENSITY {LETTERS[label - 1]}", split])
                if s < studies - 1:
                    write_image(root / "images" / study / f"{image}.dicom", label=label,
                                view=view, side=side, patient=hexid("vindr-patient", s, n=16),
                                exam=study, seed=1000 + s * 4 + len(rows))
                findings.append([study, series, image, side, view, str(SIZE[0]), str(SIZE[1]),
                                 "BI-RADS 1", f"DENSITY {LETTERS[label - 1]}",
                                 "['No Finding']", "", "", "", "", "", split])
    breast = write_csv(root / "breast-level_annotations.csv", VINDR_COLUMNS, rows)
    finding = write_csv(root / "finding_annotations.csv",
                        [*VINDR_COLUMNS[:9], "finding_categories", "finding_birads", "xmin",
                         "ymin", "xmax", "ymax", "split"], findings)
    present = [r for r in rows if r[0] != hexid("vindr-study", studies - 1)]
    return Layout(root, [breast, finding], {
        "listed": len(rows), "present": len(present), "usable": len(present),
        "train": sum(r[-1] == "training" for r in present),
        "test": sum(r[-1] == "test" for r in present),
        "breast_labels": {k: v for k, v in per_breast.items()
                          if k[0] != hexid("vindr-study", studies - 1)},
        "per_breast_study": hexid("vindr-study", 1)})


# ----------------------------------------------------------------------------------- RSNA

RSNA_COLUMNS = ["site_id", "patient_id", "image_id", "laterality", "view", "age", "cancer",
                "biopsy", "invasive", "BIRADS", "implant", "density", "machine_id",
                "difficult_negative_case"]


def rsna(root: Path, patients: int = 10, missing: int = 1) -> Layout:
    """Patients of site 1 (density A-D) and site 2 (blank); the last ``missing``
    patients' folders not downloaded."""
    rows = []
    for p in range(patients):
        patient = str(10006 + 1733 * p)
        site = "1" if p % 3 != 2 else "2"
        label = 1 + (p % 4)
        for i, (side, view) in enumerate((("L", "CC"), ("L", "MLO"), ("R", "CC"),
                                          ("R", "MLO"))):
            image = str(462822612 + 97 * p + i * 13)
            rows.append([site, patient, image, side, view, "61.0", "0", "0", "0", "", "0",
                         LETTERS[label - 1] if site == "1" else "", "29", "False"])
            if p < patients - missing:
                write_image(root / "train_images" / patient / f"{image}.dcm", label=label,
                            view=view, side=side, patient=patient, exam=patient,
                            seed=2000 + p * 4 + i)
    csv = write_csv(root / "train.csv", RSNA_COLUMNS, rows)
    present = [r for r in rows if int(r[1]) < 10006 + 1733 * (patients - missing)]
    return Layout(root, [csv], {
        "listed": len(rows), "present": len(present),
        "labelled": sum(r[0] == "1" for r in present),
        "usable": sum(r[0] == "1" for r in present),
        "site2_blank": sum(r[0] == "2" for r in present)})


# ------------------------------------------------------------------------------ CBIS-DDSM

CBIS_PREFIX = "1.3.6.1.4.1.9590.100.1.2."
CASE_TAIL = ["abnormality id", "abnormality type"]
MASS_COLUMNS = ["patient_id", "breast_density", "left or right breast", "image view",
                *CASE_TAIL, "mass shape", "mass margins", "assessment", "pathology", "subtlety",
                "image file path", "cropped image file path", "ROI mask file path"]
CALC_COLUMNS = ["patient_id", "breast density", "left or right breast", "image view",
                *CASE_TAIL, "calc type", "calc distribution", "assessment", "pathology",
                "subtlety", "image file path", "cropped image file path", "ROI mask file path"]
METADATA_COLUMNS = ["Series UID", "Collection", "3rd Party Analysis", "Data Description URI",
                    "Subject ID", "Study UID", "Study Description", "Study Date",
                    "Series Description", "Manufacturer", "Modality", "SOP Class Name",
                    "SOP Class UID", "Number of Images", "File Size", "File Location",
                    "Download Timestamp"]


@dataclass
class _CbisImage:
    kind: str       # Mass / Calc
    official: str   # Training / Test
    patient: str
    side: str       # LEFT / RIGHT
    view: str
    density: int
    abnormalities: int = 1
    densities: tuple[str, ...] = ()  # per abnormality row, when not all `density`

    @property
    def subject(self) -> str:
        return f"{self.kind}-{self.official}_{self.patient}_{self.side}_{self.view}"


def cbis_images() -> list[_CbisImage]:
    """The miniature collection: 6 patients; P_00001 has a mass and a calcification on the
    same image (stored under both folders); P_00004 is in both official sets (a leak);
    an image with 3 abnormality rows; a calc-test row with density 0; P_00006 not
    downloaded."""
    images = []
    for patient, density, sides in (("P_00001", 2, ("LEFT",)), ("P_00002", 3, ("RIGHT",)),
                                    ("P_00003", 4, ("LEFT", "RIGHT"))):
        for side in sides:
            for view in ("CC", "MLO"):
                images.append(_CbisImage("Mass", "Training", patient, side, view, density,
                                         abnormalities=3 if patient == "P_00002" and
                                         view == "CC" else 1))
    # The same full images of P_00001 under the Calc- folder (calcifications too).
    images += [_CbisImage("Calc", "Training", "P_00001", "LEFT", v, 2) for v in ("CC", "MLO")]
    images += [_CbisImage("Calc", "Training", "P_00004", "RIGHT", v, 1) for v in ("CC", "MLO")]
    # P_00004 again in the test set (its other breast): a patient in both official sets.
    images += [_CbisImage("Mass", "Test", "P_00004", "LEFT", v, 1) for v in ("CC", "MLO")]
    images += [_CbisImage("Calc", "Test", "P_00005", "LEFT", v, 3) for v in ("CC", "MLO")]
    images.append(_CbisImage("Calc", "Test", "P_00005", "RIGHT", "CC", 3, abnormalities=2,
                             densities=("3", "0")))
    images.append(_CbisImage("Calc", "Test", "P_00007", "RIGHT", "MLO", 3, densities=("0",)))
    images += [_CbisImage("Mass", "Test", "P_00006", "RIGHT", v, 2) for v in ("CC", "MLO")]
    return images


def cbis_ddsm(root: Path, *, metadata: bool = True, windows_paths: bool = True) -> Layout:
    """The four case-description CSVs (CRLF, quoted ROI paths holding a newline), the TCIA
    download under ``root`` (``CBIS-DDSM/<Subject>/<date>-DDSM-[NA-]<5>/1.000000-full
    mammogram images-<5>/1-1.dcm``) and, with ``metadata``, the retriever's metadata.csv."""
    rows: dict[tuple[str, str], list[list[str]]] = {}
    meta_rows = []
    present = 0
    for n, image in enumerate(cbis_images()):
        study = uid(CBIS_PREFIX, "study", image.subject)
        series = uid(CBIS_PREFIX, "series", image.subject)
        path = f"{image.subject}/{study}/{series}/000000.dcm"
        older = n % 2 == 1  # older retrievers wrote no "NA-"
        date = "07-20-2016" if image.official == "Training" else "08-29-2017"
        study_dir = f"{date}-DDSM-{'' if older else 'NA-'}{study[-5:]}"
        series_dir = f"1.000000-full mammogram images-{series[-5:]}"
        if image.patient != "P_00006":  # not downloaded
            write_image(root / "CBIS-DDSM" / image.subject / study_dir / series_dir / "1-1.dcm",
                        label=image.density, view=image.view, side=image.side[0],
                        patient=image.subject, exam=image.patient, seed=3000 + n,
                        study_uid=study, series_uid=series,
                        sop_uid=uid(CBIS_PREFIX, "sop", image.subject))
            present += 1
            location = f"./CBIS-DDSM/{image.subject}/{study_dir}/{series_dir}"
            if windows_paths:
                location = location.replace("/", "\\").replace(".\\", ".\\", 1)
            meta_rows.append([series, "CBIS-DDSM", "NO", "https://doi.org/10.7937/K9/TCIA.2016"
                              ".7O02S9CY", image.subject, study, "", date, "full mammogram "
                              "images", "", "MG", "Secondary Capture Image Storage",
                              "1.2.840.10008.5.1.4.1.1.7", "1", "24.11 MB", location,
                              "2024-03-01T10:00:00.000"])
        densities = image.densities or (str(image.density),) * image.abnormalities
        for a, density in enumerate(densities, start=1):
            roi = f"{image.subject}_{a}/{uid(CBIS_PREFIX, 'roi-study', image.subject, a)}/" \
                  f"{uid(CBIS_PREFIX, 'roi', image.subject, a)}/000001.dcm\n"
            crop = roi.replace("000001.dcm\n", "000000.dcm")
            middle = (["IRREGULAR", "SPICULATED"] if image.kind == "Mass"
                      else ["PLEOMORPHIC", "CLUSTERED"])
            rows.setdefault((image.kind, image.official), []).append(
                [image.patient, density, image.side, image.view, str(a), image.kind.upper()
                 if image.kind == "Mass" else "calcification", *middle, "4", "MALIGNANT", "3",
                 path, crop, roi])
    csvs = []
    for kind, columns in (("Mass", MASS_COLUMNS), ("Calc", CALC_COLUMNS)):
        for official, name in (("Training", "train"), ("Test", "test")):
            csvs.append(write_csv(root / f"{kind.lower()}_case_description_{name}_set.csv",
                                  columns, rows.get((kind, official), []), crlf=True,
                                  quote_last=True))
    if metadata:
        write_csv(root / "metadata.csv", METADATA_COLUMNS, meta_rows)
    # Usable: present, less the Calc- copies of P_00001 and P_00007's density-0 image.
    return Layout(root, csvs, {
        "listed": len({(i.subject) for i in cbis_images()}), "present": present,
        "usable": present - 3})


# ---------------------------------------------------------------------------------- INbreast

INBREAST_COLUMNS = ["Patient ID", "Patient age", "Laterality", "View", "Acquisition date",
                    "File Name", "ACR", "Bi-Rads"]


def inbreast(root: Path, patients: int = 5) -> Layout:
    """4 images per patient; the CSV says MLO, the file name ML; one ACR is 193 spaces;
    the last image not downloaded."""
    rows = []
    n = 0
    for p in range(patients):
        patient = hexid("inbreast", p, n=16)
        label = 1 + (p % 4)
        for side in ("R", "L"):
            for view in ("CC", "MLO"):
                n += 1
                name = str(22678600 + 7 * n)
                acr = " " * 193 if (p, side, view) == (1, "L", "CC") else str(label)
                rows.append(["removed", "removed", side, view, "201001" if p % 2 else "200907",
                             name, acr, "2"])
                if (p, side, view) != (patients - 1, "L", "MLO"):
                    stem = f"{name}_{patient}_MG_{side}_{'ML' if view == 'MLO' else view}_ANON"
                    write_image(root / "AllDICOMs" / f"{stem}.dcm", label=label, view=view,
                                side=side, patient=patient, exam=patient, seed=4000 + n)
    csv = write_csv(root / "INbreast.csv", INBREAST_COLUMNS, rows, sep=";", crlf=True)
    return Layout(root, [csv], {"listed": len(rows), "present": len(rows) - 1,
                                "usable": len(rows) - 2, "blank_acr_row": 1 + 1 * 4 + 2 + 1})


# ------------------------------------------------------------------------------------- EMBED

EMBED_PREFIX = "/mnt/NAS2/mammo/anon_dicom/"
EMBED_META_COLUMNS = ["empi_anon", "acc_anon", "spot_mag", "anon_dicom_path", "Modality",
                      "StudyDescription", "SeriesDescription", "FinalImageType",
                      "ImageLateralityFinal", "ViewPosition", "SeriesInstanceUID"]
EMBED_CLINICAL_COLUMNS = ["empi_anon", "acc_anon", "desc", "side", "asses", "tissueden",
                          "numfind", "age_at_study"]


def embed(root: Path, exams: int = 8) -> Layout:
    """Exams of 2D images plus a C-View each; the clinical table one row per finding (two
    for some exams, one with a blank tissueden); exam 3 is a man (5), exam 5 has no
    tissueden; the last exam not downloaded."""
    meta, clinical = [], []
    for e in range(exams):
        patient = str(10000000 + 31 * (e // 2))  # two exams per patient
        exam = str(6000000000000000 + 977 * e)
        label = 1 + (e % 4)
        tissueden = "5.0" if e == 3 else "" if e == 5 else f"{label}.0"
        clinical.append([patient, exam, "MG Screening Bilateral", "B", "N", tissueden, "1",
                         "57.3"])
        if e % 2 == 0:  # a second finding row, its density blank
            clinical.append([patient, exam, "MG Screening Bilateral", "L", "B", "", "2",
                             "57.3"])
        study = uid("1.2.826.0.1.3680043.8.498.", "embed-study", e)
        for side in ("L", "R"):
            for view in ("CC", "MLO"):
                for kind in ("2D", "cview"):
                    series = uid("1.2.826.0.1.3680043.8.498.", "embed-series", e, side, view,
                                 kind)
                    sop = uid("1.2.826.0.1.3680043.8.498.", "embed-sop", e, side, view, kind)
                    rel = f"cohort_1/{patient}/{study}/{series}/{sop}.dcm"
                    meta.append([patient, exam, "", EMBED_PREFIX + rel, "MG",
                                 "MG Screening Bilateral", f"{side} {view}", kind, side, view,
                                 series])
                    if e < exams - 1:
                        write_image(root / rel, label=label if label < 5 else 1, view=view,
                                    side=side, patient=patient, exam=exam,
                                    seed=5000 + len(meta))
    meta_csv = write_csv(root / "tables" / "EMBED_OpenData_metadata.csv", EMBED_META_COLUMNS,
                         meta)
    clinical_csv = write_csv(root / "tables" / "EMBED_OpenData_clinical.csv",
                             EMBED_CLINICAL_COLUMNS, clinical)
    two_d = 4  # 2D images per exam
    labelled = [e for e in range(exams - 1) if e not in (3, 5)]
    return Layout(root, [meta_csv, clinical_csv], {
        "listed": exams * two_d, "present": (exams - 1) * two_d,
        "usable": len(labelled) * two_d,
        "labelled_exams": [str(6000000000000000 + 977 * e) for e in range(exams - 1)
                           if e not in (3, 5)]})
