"""data_manifest.json: digest semantics, the checksum memo, unreadable files, atomic write."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import multiprocessing
import os
import shutil
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from mammography.data import manifest as mf
from mammography.data.file_identity import file_identity
from mammography.data.manifest import (
    ChecksumMemo,
    FileFacts,
    ManifestError,
    build_manifest,
    checksum_files,
    count_csv_rows,
    default_memo_path,
    manifest_digest,
    sha256_file,
    write_manifest,
)

# Old enough to be outside the racy window, so the memo remembers these files.
OLD_NS = (time.time_ns() - 3600 * 10**9) // 10**9 * 10**9


def age(path: Path, mtime_ns: int = OLD_NS) -> None:
    os.utime(path, ns=(mtime_ns, mtime_ns))


def make_dataset(root: Path, n_exams: int = 3, views: int = 2) -> tuple[Path, Path, list[Path]]:
    """A labels CSV and ``root/dicom/<accession>/<view>.dcm`` files, all aged."""
    dicom = root / "dicom"
    images = []
    for exam in range(n_exams):
        for view in range(views):
            path = dicom / f"ACC{exam:03d}" / f"view{view}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(1000 + 97 * exam + view))
            age(path)
            images.append(path)
    csv_path = root / "classificacao.csv"
    csv_path.write_text("AccessionNumber,Classification\n"
                        + "".join(f"ACC{e:03d},{e % 4 + 1}\n" for e in range(n_exams)))
    age(csv_path)
    return csv_path, dicom, images


def build(csv_path, dicom, images, memo=None, exclusions=(), **kw) -> dict:
    return build_manifest(csv_path=csv_path, dicom_root=dicom, images=images,
                          exclusions=list(exclusions), memo=memo, **kw)


@pytest.fixture
def dataset(tmp_path):
    return make_dataset(tmp_path / "data")


@pytest.fixture
def memo(tmp_path):
    with ChecksumMemo(tmp_path / "cache" / "checksums.sqlite") as memo:
        yield memo


def forbid_hashing(monkeypatch) -> None:
    def boom(path, chunk_size=0):
        raise AssertionError(f"read image bytes of {path}")
    monkeypatch.setattr(mf, "sha256_file", boom)


def count_hashing(monkeypatch) -> list[Path]:
    calls: list[Path] = []
    real = mf.sha256_file

    def counting(path, chunk_size=1 << 20):
        calls.append(Path(path))
        return real(path, chunk_size)
    monkeypatch.setattr(mf, "sha256_file", counting)
    return calls


# ------------------------------------------------------------------ manifest shape


def test_manifest_fields(dataset, memo):
    csv_path, dicom, images = dataset
    m = build(csv_path, dicom, images, memo, exclusions=[{"accession": "X9", "reason": "class 5"}],
              extra={"source": "test"})
    assert m["manifest_version"] == 1
    assert m["csv"] == {"path": str(csv_path), "sha256": sha256_file(csv_path),
                        "bytes": csv_path.stat().st_size, "rows": 3}
    assert m["dicom_root"] == str(dicom)
    paths = [e["path"] for e in m["images"]]
    assert paths == sorted(paths) and paths[0] == "ACC000/view0.dcm"
    first = m["images"][0]
    assert first["bytes"] == 1000
    assert first["sha256"] == hashlib.sha256((dicom / first["path"]).read_bytes()).hexdigest()
    assert m["num_images"] == 6
    assert m["total_bytes"] == sum(p.stat().st_size for p in images)
    assert m["exclusions"] == [{"accession": "X9", "reason": "class 5"}]
    assert m["num_exclusions"] == 1
    assert m["hashing"]["files_hashed"] == 6 and m["hashing"]["files_from_memo"] == 0
    assert m["source"] == "test"
    assert manifest_digest(m) == m["digest"]
    json.dumps(m, allow_nan=False)  # JSON-ready as is


def test_image_outside_root_keeps_absolute_path(dataset, tmp_path):
    csv_path, dicom, images = dataset
    outside = tmp_path / "elsewhere.dcm"
    outside.write_bytes(b"x")
    m = build(None, dicom, [*images, outside])
    assert m["csv"] is None
    assert str(outside) in [e["path"] for e in m["images"]]


def test_extra_may_not_replace_core_keys(dataset):
    with pytest.raises(ValueError, match="digest"):
        build(*dataset, extra={"digest": "forged"})


# ------------------------------------------------------------------------- digest


def test_digest_stable_across_builds_order_and_location(dataset, tmp_path, memo):
    csv_path, dicom, images = dataset
    excl = [{"accession": "B", "reason": "class 5"}, {"row": 7, "reason": "bad label"}]
    first = build(csv_path, dicom, images, memo, exclusions=excl)
    again = build(csv_path, dicom, list(reversed(images)), None, exclusions=excl[::-1])
    assert again["digest"] == first["digest"]

    moved = tmp_path / "moved"
    shutil.copytree(csv_path.parent, moved)
    moved_images = [moved / "dicom" / p.relative_to(dicom) for p in images]
    elsewhere = build(moved / csv_path.name, moved / "dicom", moved_images, memo, exclusions=excl)
    assert elsewhere["dicom_root"] != first["dicom_root"]
    assert elsewhere["digest"] == first["digest"]


def test_digest_ignores_created_time(dataset, monkeypatch):
    first = build(*dataset)
    later_now = SimpleNamespace(now=lambda: dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc))
    monkeypatch.setattr(mf, "dt", SimpleNamespace(datetime=later_now))
    later = build(*dataset)
    assert later["created"].startswith("2099-01-01") and first["created"] != later["created"]
    assert later["digest"] == first["digest"]


def test_digest_changes_with_one_image_byte(dataset, memo):
    csv_path, dicom, images = dataset
    before = build(csv_path, dicom, images, memo)
    data = bytearray(images[2].read_bytes())
    data[500] ^= 1
    images[2].write_bytes(bytes(data))  # same size
    age(images[2], OLD_NS + 10**9)  # edited "later", as any real edit would be
    after = build(csv_path, dicom, images, memo)
    assert after["hashing"]["files_hashed"] == 1
    assert after["digest"] != before["digest"]


def test_digest_changes_with_an_exclusion(dataset):
    before = build(*dataset)
    after = build(*dataset, exclusions=[{"accession": "ACC001", "reason": "class 5"}])
    assert after["digest"] != before["digest"]


def test_digest_changes_with_the_csv(dataset):
    csv_path, dicom, images = dataset
    before = build(csv_path, dicom, images)
    csv_path.write_text(csv_path.read_text().replace("ACC002,3", "ACC002,4"))
    after = build(csv_path, dicom, images)
    assert after["digest"] != before["digest"]


def test_several_csvs_are_each_recorded_and_each_in_the_digest(dataset, tmp_path):
    """A public dataset's files (CBIS-DDSM's four CSVs): ``csv`` stays the first, as for one
    CSV (whose digest is unchanged), ``csv_files`` lists all, and each is in the digest."""
    csv_path, dicom, images = dataset
    second = tmp_path / "calc_case_description_test_set.csv"
    second.write_text("patient_id,breast density\nP_00001,2\n")
    one = build(csv_path, dicom, images)
    assert "csv_files" not in one
    both = build([csv_path, second], dicom, images)
    assert both["csv"] == one["csv"]
    assert [f["path"] for f in both["csv_files"]] == [str(csv_path), str(second)]
    assert both["digest"] != one["digest"] and manifest_digest(both) == both["digest"]
    second.write_text("patient_id,breast density\nP_00001,3\n")
    assert build([csv_path, second], dicom, images)["digest"] != both["digest"]


def test_exclusion_paths_inside_root_become_relative(dataset, tmp_path):
    csv_path, dicom, images = dataset
    m = build(csv_path, dicom, images[1:], exclusions=[{"path": images[0], "reason": "bad"}])
    assert m["exclusions"] == [{"path": "ACC000/view0.dcm", "reason": "bad"}]


def test_exclusion_without_reason_is_a_bug(dataset):
    with pytest.raises(ValueError, match="reason"):
        build(*dataset, exclusions=[{"accession": "A"}])


# ------------------------------------------------------------------------- memo


def test_second_run_reads_no_image_bytes(dataset, memo, monkeypatch):
    csv_path, dicom, images = dataset
    first = build(csv_path, dicom, images, memo)
    monkeypatch.setattr(mf, "sha256_file", _csv_only(mf.sha256_file, csv_path))
    second = build(csv_path, dicom, images, memo)
    assert second["hashing"] == {**second["hashing"], "files_hashed": 0, "files_from_memo": 6}
    assert second["digest"] == first["digest"]


def _csv_only(real, csv_path):
    def hash_csv_only(path, chunk_size=1 << 20):
        assert Path(path) == csv_path, f"read image bytes of {path}"
        return real(path, chunk_size)
    return hash_csv_only


def test_memo_survives_reopening(dataset, tmp_path, monkeypatch):
    _, _, images = dataset
    db = tmp_path / "deep" / "er" / "checksums.sqlite"
    with ChecksumMemo(db) as memo:
        assert memo.warning is None
        checksum_files(images, memo)
    forbid_hashing(monkeypatch)
    with ChecksumMemo(db) as memo:
        facts = checksum_files(images, memo)
    assert all(f.from_memo for f in facts.values())


def test_touch_rehashes_only_that_file(dataset, memo, monkeypatch):
    _, _, images = dataset
    checksum_files(images, memo)
    age(images[3], OLD_NS + 5 * 10**9)
    calls = count_hashing(monkeypatch)
    facts = checksum_files(images, memo)
    assert calls == [images[3]]
    assert [p for p, f in facts.items() if not f.from_memo] == [images[3]]


def test_fresh_files_are_hashed_but_not_remembered(tmp_path, memo, monkeypatch):
    # Within the racy window a same-size rewrite may keep its mtime: don't trust it.
    fresh = tmp_path / "fresh.dcm"
    fresh.write_bytes(b"new")
    checksum_files([fresh], memo)
    calls = count_hashing(monkeypatch)
    assert not checksum_files([fresh], memo)[fresh].from_memo
    assert calls == [fresh]


def test_file_facts(dataset, memo):
    _, _, images = dataset
    st = images[0].stat()
    facts = checksum_files(images, memo, workers=1)
    assert facts[images[0]] == FileFacts(st.st_size, st.st_mtime_ns,
                                         sha256_file(images[0]), from_memo=False)


def test_progress_counts_every_file(dataset, memo):
    _, _, images = dataset
    checksum_files(images[:2], memo)
    seen: list[int] = []
    checksum_files(images, memo, progress=seen.append)
    assert sum(seen) == len(images)


def test_corrupt_memo_falls_back_with_warning(dataset, tmp_path):
    csv_path, dicom, images = dataset
    db = tmp_path / "checksums.sqlite"
    db.write_bytes(b"this is not an sqlite database " * 200)
    reference = build(csv_path, dicom, images, None)
    with ChecksumMemo(db) as memo:
        assert memo.warning and str(db) in memo.warning and memo.in_memory
        m = build(csv_path, dicom, images, memo)
    assert m["digest"] == reference["digest"]
    assert m["images"] == reference["images"]
    assert m["hashing"]["memo_warning"] == memo.warning


def test_unwritable_memo_location_falls_back(dataset, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with ChecksumMemo(blocker / "checksums.sqlite") as memo:
        assert memo.warning
        facts = checksum_files(dataset[2], memo)
        assert len(facts) == 6
        assert all(f.from_memo for f in checksum_files(dataset[2], memo).values())


def test_memo_failing_mid_run_falls_back(dataset, memo):
    _, _, images = dataset
    checksum_files(images[:1], memo)
    memo._conn.close()  # any sqlite error from now on, as with a vanished disk
    facts = checksum_files(images, memo)
    assert memo.warning and len(facts) == 6
    assert all(f.from_memo for f in checksum_files(images, memo).values())


def test_memo_uses_wal(memo):
    assert memo._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_default_memo_path_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MAMMOGRAPHY_CACHE_DIR", str(tmp_path))
    assert default_memo_path() == tmp_path / "checksums.sqlite"
    monkeypatch.delenv("MAMMOGRAPHY_CACHE_DIR")
    assert default_memo_path().name == "checksums.sqlite"
    assert "mammography" in str(default_memo_path())


def _concurrent_worker(data_root: str, db: str, queue) -> None:
    csv_path = Path(data_root) / "classificacao.csv"
    dicom = Path(data_root) / "dicom"
    images = sorted(dicom.rglob("*.dcm"))
    with ChecksumMemo(Path(db)) as memo:
        for _ in range(3):  # several write transactions racing the other process
            m = build(csv_path, dicom, images, memo, workers=2)
        queue.put((m["digest"], memo.warning))


def test_concurrent_processes_share_the_memo(tmp_path):
    csv_path, dicom, _ = make_dataset(tmp_path / "data", n_exams=40, views=4)
    db = tmp_path / "cache" / "checksums.sqlite"
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_concurrent_worker, args=(str(csv_path.parent), str(db), queue))
             for _ in range(2)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    (d1, w1), (d2, w2) = results
    assert d1 == d2 and w1 is None and w2 is None
    rows = sqlite3.connect(db).execute("SELECT count(*) FROM checksums_v2").fetchone()[0]
    assert rows == 160


# ------------------------------------------------------------- unreadable files


def test_checksum_files_raises_without_errors_dict(dataset, memo):
    _, dicom, images = dataset
    images[1].unlink()
    with pytest.raises(ManifestError) as info:
        checksum_files(images, memo)
    assert info.value.path == images[1]
    assert info.value.reason == "No such file or directory"
    # the readable ones were still hashed and remembered
    assert sum(1 for p in images if p.exists() and memo.get(file_identity(p))) == 5


def test_checksum_files_reports_into_errors_dict(dataset, memo):
    _, dicom, images = dataset
    images[1].unlink()
    errors: dict[Path, str] = {}
    facts = checksum_files([*images, dicom], memo, errors=errors)
    assert errors == {images[1]: "No such file or directory", dicom: "Is a directory"}
    assert len(facts) == 5


def test_file_vanishing_before_hashing(dataset, monkeypatch):
    # stat succeeds, then the file goes: the thread's OSError becomes an error entry.
    _, _, images = dataset
    real = mf.sha256_file

    def vanish(path, chunk_size=1 << 20):
        if Path(path) == images[0]:
            raise FileNotFoundError(2, "No such file or directory")
        return real(path, chunk_size)
    monkeypatch.setattr(mf, "sha256_file", vanish)
    errors: dict[Path, str] = {}
    checksum_files(images, None, errors=errors)
    assert errors == {images[0]: "No such file or directory"}


def test_unreadable_images_become_exclusions(dataset, tmp_path):
    csv_path, dicom, images = dataset
    images[0].unlink()
    m = build(csv_path, dicom, images)
    assert m["num_images"] == 5
    assert m["exclusions"] == [{"path": "ACC000/view0.dcm",
                                "reason": "unreadable: No such file or directory"}]
    # no absolute path leaks into the digest: another location gives the same one
    moved = tmp_path / "moved"
    shutil.copytree(csv_path.parent, moved)
    moved_images = [moved / "dicom" / p.relative_to(dicom) for p in images]
    assert build(moved / csv_path.name, moved / "dicom", moved_images)["digest"] == m["digest"]


def test_unreadable_csv_raises(dataset, tmp_path):
    _, dicom, images = dataset
    with pytest.raises(ManifestError, match="missing.csv"):
        build(tmp_path / "missing.csv", dicom, images)


# ---------------------------------------------------------------------- CSV rows


@pytest.mark.parametrize("text, rows", [
    ("a,b\n1,2\n3,4\n", 2),
    ("a,b\n1,2\n3,4", 2),  # no trailing newline
    ("\ufeffa,b\r\n1,2\r\n", 1),  # BOM, CRLF
    ('a,b\n1,"two\nlines"\n3,4\n\n\n', 2),  # quoted newline, blank lines
    ("a,b\n", 0),
    ("", 0),
])
def test_count_csv_rows(tmp_path, text, rows):
    path = tmp_path / "labels.csv"
    path.write_bytes(text.encode("utf-8"))
    assert count_csv_rows(path) == rows


def test_count_csv_rows_latin1(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes("nome,classe\nJo\xe3o,2\n".encode("latin-1"))
    assert count_csv_rows(path) == 1


# ------------------------------------------------------------------ atomic write


def test_write_manifest_is_atomic_and_clean(dataset, tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    m = build(*dataset)
    target = out / "data_manifest.json"
    write_manifest(target, m)
    write_manifest(target, m)  # overwrite in place
    assert [p.name for p in out.iterdir()] == ["data_manifest.json"]
    text = target.read_text()
    assert json.loads(text) == m and text.startswith('{\n  "manifest_version": 1')

    def fail(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        write_manifest(target, {**m, "num_images": -1})
    assert [p.name for p in out.iterdir()] == ["data_manifest.json"]
    assert json.loads(target.read_text()) == m


def _open_at(db: str, start: float, queue) -> None:
    while time.time() < start:  # all processes open the fresh file at the same moment
        pass
    with ChecksumMemo(Path(db)) as memo:
        queue.put(memo.warning)


def test_many_processes_creating_one_memo_at_once_all_get_it(tmp_path):
    """SQLite says "database is locked" at once, without waiting out the busy
    timeout, to a connection that loses the race to create the schema; that
    must not push a run onto the in-memory fallback (it did 7 times in 320)."""
    ctx = multiprocessing.get_context("fork")
    warnings = []
    for round_ in range(6):
        queue = ctx.Queue()
        start = time.time() + 0.3
        procs = [ctx.Process(target=_open_at, args=(str(tmp_path / str(round_) / "m.sqlite"),
                                                    start, queue)) for _ in range(8)]
        for proc in procs:
            proc.start()
        warnings += [queue.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
    assert warnings == [None] * 48


def test_written_manifest_has_one_line_per_image(dataset, tmp_path):
    csv_path, dicom, images = dataset
    m = build(csv_path, dicom, images, exclusions=[{"path": str(dicom / "x"), "reason": "é"}])
    target = tmp_path / "out" / "data_manifest.json"
    target.parent.mkdir()
    write_manifest(target, m)
    text = target.read_text(encoding="utf-8")
    assert json.loads(text) == m and manifest_digest(json.loads(text)) == m["digest"]
    lines = text.splitlines()
    for entry in m["images"]:
        assert f"    {json.dumps(entry, ensure_ascii=False)}," in lines or \
            f"    {json.dumps(entry, ensure_ascii=False)}" in lines
    assert '"reason": "é"' in text  # the rest indented as before, unicode kept


def test_display_path_is_relative_inside_the_root_only(tmp_path):
    from mammography.data.manifest import display_path

    root = str(tmp_path / "root")
    assert display_path(tmp_path / "root" / "a" / "b.dcm", root) == "a/b.dcm"
    assert display_path(tmp_path / "root" / "x" / ".." / "c.dcm", root) == "c.dcm"
    assert display_path(tmp_path / "rootless" / "c.dcm", root) == str(tmp_path / "rootless"
                                                                      / "c.dcm")
    assert display_path(tmp_path / "root", root) == "."
    assert display_path("/a/b", "/") == "a/b"


def test_files_changed_since_their_header_was_read_are_hashed_as_they_are(dataset, memo):
    _, _, images = dataset
    checksum_files(images, memo)
    absolute = {p: os.path.abspath(p) for p in images}
    assert all(f.from_memo for f in checksum_files(images, memo, absolute=absolute).values())
    images[0].write_bytes(b"new content")  # after the run read its header
    facts = checksum_files(images, memo, absolute=absolute)
    assert facts[images[0]].sha256 == sha256_file(images[0]) and not facts[images[0]].from_memo
    assert facts[images[0]].size == len(b"new content")
