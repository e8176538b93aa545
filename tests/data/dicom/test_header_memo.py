"""The header memo: a second run reads no DICOM it has seen, and never a stale header."""

import multiprocessing
import os
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from mammography.data.dicom import header_memo
from mammography.data.dicom.decode import DicomReadError, read_header
from mammography.data.dicom.header import HeaderDecoder, header_from_text, header_to_text
from mammography.data.dicom.header_memo import read_headers
from mammography.data.file_identity import file_identity
from mammography.data.memo import ChecksumMemo
from mammography.data.synthetic import synthesize_mammogram, write_mammogram_dicom

PYDICOM_FILES = Path(__import__("pydicom").__file__).parent / "data" / "test_files"
# Old enough to be outside the racy window, so the memo remembers these files.
OLD_NS = (time.time_ns() - 3600 * 10**9) // 10**9 * 10**9


def age(path: Path, mtime_ns: int = OLD_NS) -> None:
    os.utime(path, ns=(mtime_ns, mtime_ns))


def write(path: Path, patient: str, view: str = "CC", seed: int = 0) -> Path:
    image = synthesize_mammogram(np.random.default_rng(seed), 2, (96, 80), view, "L")
    write_mammogram_dicom(path, image, patient_id=patient, accession=f"A{seed}", view=view,
                          laterality="L", seed_uid_suffix=str(seed))
    age(path)
    return path


@pytest.fixture
def files(tmp_path):
    folder = tmp_path / "dicom"
    folder.mkdir()
    return [write(folder / f"img{i}.dcm", f"P{i:03d}", seed=i) for i in range(4)]


@pytest.fixture
def memo(tmp_path):
    with ChecksumMemo(tmp_path / "cache" / "checksums.sqlite") as memo:
        yield memo


class Counting:
    """read_header that counts the files it really opens."""

    def __init__(self) -> None:
        self.paths: list[Path] = []

    def __call__(self, path: Path):
        self.paths.append(Path(path))
        return read_header(path)


def test_second_run_reads_no_header(files, memo):
    first_reader, second_reader = Counting(), Counting()
    first, identities, stats = read_headers(files, first_reader, memo)
    assert (stats.read, stats.from_memo) == (4, 0) and first_reader.paths == files
    second, _, stats = read_headers(files, second_reader, memo)
    assert (stats.read, stats.from_memo) == (0, 4) and second_reader.paths == []
    assert second == first  # equal DicomHeaders, same (no) reasons
    assert all(h.path == p for (h, _), p in zip(second, files, strict=True))
    assert identities[0] == file_identity(files[0])
    assert identities[0][:3] == (os.path.abspath(files[0]), files[0].stat().st_size, OLD_NS)


def test_a_file_rewritten_with_the_same_size_is_read_again(files, memo):
    read_headers(files, read_header, memo)
    size = files[1].stat().st_size
    write(files[1], "P999", seed=1)  # same length PatientID: same size
    age(files[1], OLD_NS + 10**9)    # ... and a new mtime
    assert files[1].stat().st_size == size
    reader = Counting()
    outcomes, _, stats = read_headers(files, reader, memo)
    assert reader.paths == [files[1]] and stats.read == 1
    assert outcomes[1][0].patient_id == "P999"


def test_a_file_with_other_content_is_read_again(files, memo):
    read_headers(files, read_header, memo)
    write(files[2], "P002", view="MLO", seed=2)  # new bytes, mtime set to the old one
    assert read_headers(files, read_header, memo)[0][2][0].view == "MLO"


def test_fresh_files_are_read_but_not_remembered(files, memo):
    age(files[0], time.time_ns())  # just written: inside the racy window
    read_headers(files, read_header, memo)
    reader = Counting()
    read_headers(files, reader, memo)
    assert reader.paths == [files[0]]


def test_what_the_bytes_rule_out_is_remembered_not_what_the_file_system_said(tmp_path, memo):
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not a dicom file at all" * 20)
    age(junk)
    first = read_headers([junk], read_header, memo)[0][0]
    assert first[0] is None and "DICOM" in first[1]
    reader = Counting()
    assert read_headers([junk], reader, memo)[0][0] == first and reader.paths == []

    def refused(path):
        raise DicomReadError(path, "cannot read the file: Permission denied", io_error=True)

    other = write(tmp_path / "other.dcm", "P1")
    assert read_headers([other], refused, memo)[2].read == 1
    assert read_headers([other], Counting(), memo)[2].read == 1  # not remembered: asked again


def test_missing_file_is_reported_by_the_reader(tmp_path, memo):
    outcome = read_headers([tmp_path / "gone.dcm"], read_header, memo)
    assert outcome[0] == [(None, "file not found")] and outcome[1] == [None]


def test_other_header_code_is_a_miss(files, memo, monkeypatch):
    read_headers(files, read_header, memo)
    monkeypatch.setattr(header_memo, "header_format", lambda: "another-format")
    assert read_headers(files, read_header, memo)[2].read == 4


def test_format_follows_the_reader_code():
    fmt = header_memo.header_format()
    assert len(fmt) == 16 and fmt == header_memo.header_format()
    header_memo.header_format.cache_clear()
    header_memo._FORMAT_VERSION += 1
    try:
        assert header_memo.header_format() != fmt
    finally:
        header_memo._FORMAT_VERSION -= 1
        header_memo.header_format.cache_clear()


def test_damaged_rows_are_misses(files, memo):
    read_headers(files, read_header, memo)
    memo._conn.execute("UPDATE headers_v2 SET header = 'not json' WHERE path = ?",
                       (os.path.abspath(files[0]),))
    memo._conn.execute("UPDATE headers_v2 SET header = '[1, 2]' || char(30) || '[3]' "
                       "WHERE path = ?", (os.path.abspath(files[3]),))
    reader = Counting()
    outcomes, _, stats = read_headers(files, reader, memo)
    assert sorted(reader.paths) == sorted([files[0], files[3]]) and stats.from_memo == 2
    assert outcomes[0][0] == read_header(files[0]) and outcomes[3][0] == read_header(files[3])


def test_an_unusable_memo_costs_only_speed(files, tmp_path):
    db = tmp_path / "broken.sqlite"
    db.write_bytes(b"this is not an sqlite database " * 200)
    with ChecksumMemo(db) as memo:
        outcomes, _, stats = read_headers(files, read_header, memo)
        assert stats.memo_warning and str(db) in stats.memo_warning and "headers" in \
            stats.memo_warning
        assert [o[0] for o in outcomes] == [read_header(f) for f in files]
        assert read_headers(files, Counting(), memo)[2].from_memo == 4  # in memory


def test_a_memo_file_of_the_old_format_is_replaced(files, tmp_path):
    """Rows keyed by (path, size, mtime) alone cannot prove a file unchanged: the old
    tables are dropped and the new ones created in the same file."""
    db = tmp_path / "old.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE checksums (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
                 "mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL)")
    conn.execute("INSERT INTO checksums VALUES ('/x', 1, 2, 'abc')")
    conn.commit()
    conn.close()
    with ChecksumMemo(db) as memo:
        assert memo.warning is None
        read_headers(files, read_header, memo)
    with ChecksumMemo(db) as memo:
        assert read_headers(files, Counting(), memo)[2].from_memo == 4
    tables = {row[0] for row in sqlite3.connect(db).execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"checksums_v2", "headers_v2"}


def test_header_text_round_trip_over_real_files():
    """pydicom's test files: every header the reader yields survives the memo as it was."""
    headers = []
    for path in sorted(PYDICOM_FILES.glob("*.dcm")):
        try:
            headers.append(read_header(path))
        except DicomReadError:
            continue
    assert len(headers) > 50
    decoder = HeaderDecoder()
    for header in headers:
        text = header_to_text(header)
        assert header_from_text(header.path, text) == header
        own, _, acquisition = text.partition("\x1e")
        import json

        again = decoder.decode(header.path, json.loads(own), acquisition)
        assert again == header and hash(again) == hash(header)
    assert {h.pixel.kind for h in headers} >= {"native", "encapsulated"}


def _share(paths: list[str], db: str, queue) -> None:
    files = [Path(p) for p in paths]
    with ChecksumMemo(Path(db)) as memo:
        totals = [0, 0]
        for _ in range(3):  # several write transactions racing the other process
            memo._conn.execute("DELETE FROM headers_v2")  # each round writes every row again
            outcomes, _, stats = read_headers(files, read_header, memo)
            totals[0] += stats.read
        queue.put(([o[0].patient_id for o in outcomes], memo.warning, totals[0]))


def test_two_processes_share_the_memo(tmp_path):
    folder = tmp_path / "dicom"
    folder.mkdir()
    files = [write(folder / f"img{i}.dcm", f"P{i:03d}", seed=i) for i in range(40)]
    db = tmp_path / "cache" / "checksums.sqlite"
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_share, args=([str(f) for f in files], str(db), queue))
             for _ in range(2)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    expected = [f"P{i:03d}" for i in range(40)]
    assert all(ids == expected and warning is None for ids, warning, _ in results)
    with ChecksumMemo(db) as memo:
        reader = Counting()
        assert read_headers(files, reader, memo)[2].from_memo == 40 and reader.paths == []


@pytest.fixture(scope="module")
def aged_dataset(tmp_path_factory):
    from mammography.config.synth import SynthConfig
    from mammography.data.synthetic import generate_dataset

    out = tmp_path_factory.mktemp("aged") / "data"
    generate_dataset(SynthConfig(out=out, exams=8, seed=3, size="96x80"), log=lambda m: None)
    for path in (out / "archive").rglob("*.dcm"):
        age(path)
    return out


def test_a_warm_start_records_what_came_from_the_memos(aged_dataset, cache_dir, tmp_path):
    import gc
    import json

    from mammography.config.data import ImageConfig
    from mammography.data.pipeline import prepare_data
    from mammography.record.reporter import CollectingReporter

    cfg = ImageConfig(csv=aged_dataset / "classificacao.csv",
                      dicom_root=aged_dataset / "archive", img_size=64, workers=1)
    first_out, second_out = CollectingReporter(), CollectingReporter()
    (tmp_path / "run1").mkdir()
    (tmp_path / "run2").mkdir()
    first = prepare_data(cfg, tmp_path / "run1", first_out, progress=False)
    n = len(first.table.images)
    assert first.manifest["headers"]["files_read"] == n
    assert gc.isenabled()  # the collector pause is over
    second = prepare_data(cfg, tmp_path / "run2", second_out, progress=False)
    headers = json.loads((tmp_path / "run2" / "data_manifest.json").read_text())["headers"]
    assert (headers["files_read"], headers["files_from_memo"]) == (0, n)
    assert f"DICOM headers: {n} remembered, 0 read" in "\n".join(second_out.lines)
    assert second.cache_report["reused"] == n and second.manifest["hashing"][
        "files_from_memo"] == n
    assert second.manifest["digest"] == first.manifest["digest"]
    assert [r.header for r in second.table.images] == [r.header for r in first.table.images]
    assert [(r.view, r.laterality, r.group) for r in second.table.images] == \
        [(r.view, r.laterality, r.group) for r in first.table.images]
    assert second.manifest["fingerprint"] == first.manifest["fingerprint"]
    assert not second_out.warnings


def test_rows_of_the_wrong_types_are_misses(files, memo):
    """Issue 23 (6): valid JSON of the wrong types (a number for a PatientID, a string
    for Rows, a bad pixel location) is read again, never trusted or a traceback."""
    import json

    read_headers(files, read_header, memo)
    rows = dict(memo._conn.execute("SELECT path, header FROM headers_v2").fetchall())
    edits = {0: lambda own, acq: (own[:1] + [7] + own[2:], acq),
             1: lambda own, acq: (own, [acq[0], "96", *acq[2:]]),
             2: lambda own, acq: (own, [*acq[:-2], ["native", "x", 1], acq[-1]])}
    for index, edit in edits.items():
        path = os.path.abspath(files[index])
        own, _, acquisition = rows[path].partition("\x1e")
        new_own, new_acq = edit(json.loads(own), json.loads(acquisition))
        memo._conn.execute("UPDATE headers_v2 SET header = ? WHERE path = ?",
                           (json.dumps(new_own) + "\x1e" + json.dumps(new_acq), path))
    reader = Counting()
    outcomes, _, stats = read_headers(files, reader, memo)
    assert sorted(reader.paths) == sorted(files[:3]) and stats.from_memo == 1
    assert [o[0] for o in outcomes] == [read_header(f) for f in files]


def test_a_checksum_that_is_not_a_sha256_is_a_miss(files, memo):
    key = file_identity(files[0])
    memo.put_many([(key, "not-a-sha")])
    assert memo.get(key) is None
    memo.put_many([(key, "a" * 64)])
    assert memo.get(key) == "a" * 64
