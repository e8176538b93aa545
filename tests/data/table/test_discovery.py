"""Which files under a folder are DICOM (data/table/discovery.py)."""

import shutil
from pathlib import Path

from mammography.data.table.discovery import find_dicoms, find_dicoms_by_content, looks_like_dicom

PYDICOM_FILES = Path(__import__("pydicom").__file__).parent / "data" / "test_files"


def test_find_dicoms_lists_what_rglob_would(tmp_path):
    """The scandir walk against its definition: rglob("*") filtered by looks_like_dicom."""
    import gzip

    dicm = b"\0" * 128 + b"DICM" + b"\0" * 64
    root = tmp_path / "tree"
    (root / "a" / "b" / ".hidden").mkdir(parents=True)
    (root / "elsewhere").mkdir()
    files = {"a/x.dcm": dicm, "a/UPPER.DCM": dicm, "a/b/IM000001": dicm,
             "a/b/1.2.840.113619.2.55": dicm, "a/b/plain": b"not dicom",
             "a/notes.txt": b"notes", "a/DICOMDIR": dicm, "a/.hidden.dcm": dicm,
             "a/b/.hidden/y.dcm": dicm, "a/z.dcm.gz": gzip.compress(dicm),
             "a/b/odd.": dicm, "elsewhere/r.dicom": dicm, "a/report.pdf": dicm}
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root / "a" / "dir.dcm").mkdir()
    (root / "a" / "linked").symlink_to(root / "elsewhere")          # not followed
    (root / "a" / "link.dcm").symlink_to(root / "elsewhere" / "r.dicom")  # a file: listed
    (root / "a" / "broken.dcm").symlink_to(root / "nowhere.dcm")
    for folder in (root, root / "a", root / "a" / "b", root / "elsewhere"):
        assert find_dicoms(folder) == sorted(p for p in folder.rglob("*")
                                             if looks_like_dicom(p))
    assert {p.name for p in find_dicoms(root)} == {
        "x.dcm", "UPPER.DCM", "IM000001", "1.2.840.113619.2.55", "z.dcm.gz", "odd.",
        "r.dicom", "link.dcm", "y.dcm"}
    assert find_dicoms(root / "a" / "x.dcm") == [] and find_dicoms(tmp_path / "none") == []


def test_dicom_is_found_whatever_the_extension(tmp_path):
    (tmp_path / "a").mkdir()
    shutil.copyfile(PYDICOM_FILES / "CT_small.dcm", tmp_path / "a" / "scan.dcm.bak")
    shutil.copyfile(PYDICOM_FILES / "CT_small.dcm", tmp_path / "a" / "plain.dcm")
    (tmp_path / "a" / "photo.jpg").write_bytes(b"\xff\xd8" + b"\0" * 200)
    (tmp_path / "a" / ".hidden.dcm").write_bytes(b"\0" * 200)
    found, others = find_dicoms_by_content(tmp_path)
    assert [p.name for p in found] == ["plain.dcm", "scan.dcm.bak"]
    assert [p.name for p in others] == ["photo.jpg"]


def test_by_content_in_a_folder_that_is_not_there(tmp_path):
    assert find_dicoms_by_content(tmp_path / "nowhere") == ([], [])
