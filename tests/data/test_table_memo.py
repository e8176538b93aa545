"""The whole-table memo: used while nothing the table was read from changed, never after.

Every case compares ``load_table(..., remember=True)`` with a cold read of the
same files (``remember=False``), the reference: the same records, exclusions
and lines, whether the memo was used or refused.
"""

from __future__ import annotations

import csv
import os
import pickle
import shutil
from pathlib import Path

import pytest

from mammography.config.data import LabelsConfig
from mammography.data.pipeline import load_table
from mammography.data.table_memo import FOLDER, TableMemo
from mammography.record.reporter import CollectingReporter

OLD_NS = (os.stat(__file__).st_mtime_ns // 10**9 - 3600) * 10**9  # outside the racy window


def _age(root: Path) -> None:
    """Every file and folder an hour old (as an archive is): the memo may keep them."""
    for folder, dirs, files in os.walk(root, topdown=False):
        for name in files + dirs:
            os.utime(os.path.join(folder, name), ns=(OLD_NS, OLD_NS))
    os.utime(root, ns=(OLD_NS, OLD_NS))


@pytest.fixture
def data(synthetic_dataset, tmp_path, cache_dir) -> Path:
    root = tmp_path / "data"
    shutil.copytree(synthetic_dataset, root)
    _age(root)
    return root


def _cfg(root: Path, **options) -> LabelsConfig:
    return LabelsConfig(csv=root / "classificacao.csv", dicom_root=root / "archive", **options)


def _load(cfg, remember=True):
    out = CollectingReporter()
    table = load_table(cfg, out, remember=remember)
    return table, out.lines


def _same(table, cold) -> None:
    """The same table as a cold read gives (how the headers were had aside)."""
    for name in ("images", "exclusions", "csv_rows", "warnings", "label_checks",
                 "per_view_patient_ids", "images_found", "bad_images", "csv_columns",
                 "csv_paths", "dataset", "csv_format", "dicom_root", "csv_path"):
        assert getattr(table, name) == getattr(cold, name), name
    assert [r.identity for r in table.images] == [r.identity for r in cold.images]
    assert [r.header for r in table.images] == [r.header for r in cold.images]
    assert table.fingerprint() == cold.fingerprint()


def _used(table) -> bool:
    return bool(table.headers.get("table_memo"))


def test_used_when_nothing_changed_and_the_same_as_a_cold_read(data):
    cfg = _cfg(data)
    first, first_lines = _load(cfg)
    assert not _used(first)
    again, lines = _load(cfg)
    assert _used(again)
    cold, cold_lines = _load(cfg, remember=False)
    _same(again, cold)
    _same(first, cold)
    # The same lines (warnings included), the headers line saying where they came from.
    assert [line for line in lines if not line.startswith("DICOM headers")] == \
        [line for line in cold_lines if not line.startswith("DICOM headers")]
    headers = next(line for line in lines if line.startswith("DICOM headers"))
    assert f"{len(cold.images)} remembered, 0 read" in headers
    assert "whole table remembered" in headers


def test_other_options_are_another_table(data):
    _load(_cfg(data))
    with_class_5, _ = _load(_cfg(data, include_class_5=True))
    assert not _used(with_class_5)
    _same(with_class_5, _load(_cfg(data, include_class_5=True), remember=False)[0])
    assert _used(_load(_cfg(data))[0])


def _rewrite_in_place(path: Path, data: bytes) -> None:
    """Same size, mtime put back (``touch -r``): only ctime (and content) differ."""
    before = path.stat()
    assert len(data) == before.st_size
    with open(path, "r+b") as handle:
        handle.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _settle(monkeypatch) -> None:
    """Now an hour later: what was just changed is outside the racy window."""
    import time

    real = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real() + 3600 * 10**9)


def test_refused_when_the_csv_changes_in_place(data, monkeypatch):
    cfg = _cfg(data)
    _load(cfg)
    assert _used(_load(cfg)[0])
    path = data / "classificacao.csv"
    rows = list(csv.reader(path.read_text().splitlines()))
    label = rows[1][1]
    rows[1][1] = "1" if label != "1" else "2"  # one digit for another: the same size
    text = "\n".join(",".join(row) for row in rows) + "\n"
    _rewrite_in_place(path, text.encode())
    _settle(monkeypatch)
    table, _ = _load(cfg)
    assert not _used(table)
    _same(table, _load(cfg, remember=False)[0])
    assert _used(_load(cfg)[0])  # remembered again, as it is now


def test_refused_when_an_image_changes_in_place(data, monkeypatch):
    cfg = _cfg(data)
    first, _ = _load(cfg)
    image = first.images[0].path
    other = next(r.path for r in first.images if r.path.stat().st_size == image.stat().st_size
                 and r.path != image and r.path.parent != image.parent)
    _rewrite_in_place(image, other.read_bytes())
    _settle(monkeypatch)
    table, _ = _load(cfg)
    assert not _used(table)
    cold, _ = _load(cfg, remember=False)
    _same(table, cold)
    assert table.images[0].identity != first.images[0].identity


def test_refused_when_a_folder_changes(data, monkeypatch):
    cfg = _cfg(data)
    first, _ = _load(cfg)
    exam = first.images[0].path.parent
    # An image more in an exam's folder: that folder changed.
    shutil.copy2(first.images[0].path, exam / "extra_copy.dcm")
    _settle(monkeypatch)
    table, _ = _load(cfg)
    assert not _used(table) and len(table.images) == len(first.images) + 1
    _same(table, _load(cfg, remember=False)[0])
    # An exam's folder gone (the root changed): its rows excluded now.
    assert _used(_load(cfg)[0])
    shutil.rmtree(exam)
    table, _ = _load(cfg)
    assert not _used(table)
    _same(table, _load(cfg, remember=False)[0])
    # A sub-folder of an exam gains an image (a folder listed below the exam's).
    assert _used(_load(cfg)[0])
    exam = table.images[0].path.parent
    (exam / "sub").mkdir()
    _age(exam / "sub")
    os.utime(exam, ns=(OLD_NS, OLD_NS))
    assert not _used(_load(cfg)[0])  # the exam's folder changed (a new entry)
    assert _used(_load(cfg)[0])
    shutil.copy2(table.images[0].path, exam / "sub" / "deeper.dcm")
    os.utime(exam / "sub", ns=(OLD_NS, OLD_NS))  # its mtime put back: ctime tells
    table, _ = _load(cfg)
    assert not _used(table)
    assert any(r.path.name == "deeper.dcm" for r in table.images)


def test_a_missing_file_that_appears_is_seen(data, monkeypatch):
    first, _ = _load(_cfg(data))
    listing = data / "paths.csv"
    missing = data / "elsewhere" / "late.dcm"
    rows = [f"{r.path},{r.label}" for r in first.images[:6]] + [f"{missing},2"]
    listing.write_text("path,label\n" + "\n".join(rows) + "\n")
    _age(data)
    cfg = LabelsConfig(csv=listing, dicom_root=data)
    table, _ = _load(cfg)
    assert len(table.images) == 6
    assert _used(_load(cfg)[0])
    missing.parent.mkdir()
    shutil.copy2(first.images[7].path, missing)
    _age(missing.parent)
    table, _ = _load(cfg)
    assert not _used(table) and len(table.images) == 7


def test_files_changed_within_the_racy_window_are_not_remembered(data):
    cfg = _cfg(data)
    os.utime(data / "classificacao.csv")  # just now
    _load(cfg)
    assert not _used(_load(cfg)[0])
    assert not list((Path(os.environ["MAMMOGRAPHY_CACHE_DIR"]) / FOLDER).glob("*.pickle"))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "foreign"])
def test_a_damaged_or_foreign_memo_file_is_a_miss(data, damage, tmp_path):
    cfg = _cfg(data)
    _load(cfg)
    path = TableMemo(cfg, "exclude").path
    assert path.is_file()
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "garbage":
        path.write_bytes(b"not a pickle at all")
    else:  # a pickle that would run code: the unpickler refuses to build it
        marker = tmp_path / "ran"
        path.write_bytes(pickle.dumps(_Evil(str(marker))))
    table, _ = _load(cfg)
    assert not _used(table)
    _same(table, _load(cfg, remember=False)[0])
    assert not (tmp_path / "ran").exists()
    assert _used(_load(cfg)[0])  # written again


class _Evil:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_not_used_for_a_resume_that_proves_its_data(data, tmp_path):
    from mammography.config.train import TrainConfig
    from mammography.data.pipeline import prepare_data

    cfg = TrainConfig(csv=data / "classificacao.csv", dicom_root=data / "archive",
                      img_size=64, arch="test_efficientnet", num_workers=0, workers=1)
    out = CollectingReporter()
    prepare_data(cfg, None, out, progress=False, remember_table=True)
    warm = prepare_data(cfg, None, out, progress=False, remember_table=True)
    assert warm.manifest["headers"]["table_memo"] is True
    proving = prepare_data(cfg, None, out, progress=False, trust_memo=False,
                           remember_table=True)
    assert "table_memo" not in proving.manifest["headers"]
    assert proving.manifest["digest"] == warm.manifest["digest"]


def test_new_code_replaces_the_file_instead_of_adding_one(data, monkeypatch):
    import mammography.data.table_memo as table_memo

    cfg = _cfg(data)
    _load(cfg)
    folder = Path(os.environ["MAMMOGRAPHY_CACHE_DIR"]) / FOLDER
    assert len(list(folder.glob("*.pickle"))) == 1
    monkeypatch.setattr(table_memo, "code_digest", lambda: "other code")
    table, _ = _load(cfg)
    assert not _used(table)  # made by other code: not used
    assert _used(_load(cfg)[0])
    assert len(list(folder.glob("*.pickle"))) == 1
