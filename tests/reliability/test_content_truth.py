"""Issue 23 (1, 6): what a run records about its data is true of the bytes on disk.

Every case goes through the CLI. A file is replaced *in place* with another of the
same size and its mtime put back (``touch -r``: what re-extracting a tar with
normalised mtimes, ``cp -p`` or ``rsync -t`` does), or its pixel data zeroed the
same way; before the memos and cache entries were keyed by ctime, inode and device
too, every later run trusted the old facts. Damaged memo rows must be misses.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.reliability.common import (
    TINY,
    cli_args,
    copy_dataset,
    data_args,
    no_traceback,
    read_json,
    rel_env,
)

# An hour ago: outside the memo's racy window, so the first run remembers the files.
OLD_NS = (os.stat(__file__).st_mtime_ns // 10**9 - 3600) * 10**9


def run(*args: object, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cli_args(*args), capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.fixture
def data(small_dataset, tmp_path) -> Path:
    """A copy of the small dataset, every file an hour old."""
    root = copy_dataset(small_dataset, tmp_path / "data")
    for path in root.rglob("*.dcm"):
        os.utime(path, ns=(OLD_NS, OLD_NS))
    return root


def same_size_pair(root: Path) -> tuple[Path, Path]:
    """Two files of the same size in different exams of different patients."""
    import pydicom

    by_size: dict[int, list[Path]] = {}
    for path in sorted((root / "archive").rglob("*.dcm")):
        by_size.setdefault(path.stat().st_size, []).append(path)
    patient = {}
    for paths in by_size.values():
        for a in paths:
            for b in paths:
                if a.parent == b.parent:
                    continue
                for p in (a, b):
                    if p not in patient:
                        patient[p] = pydicom.dcmread(p, stop_before_pixels=True).PatientID
                if patient[a] != patient[b]:
                    return a, b
    raise AssertionError("the synthetic dataset has no two files of the same size")


def replace_keeping_mtime(target: Path, content: bytes) -> None:
    """``t=TARGET; touch -r $t r; cat OTHER > $t; touch -r r $t``: same inode, same
    size and mtime, new bytes (and, as the kernel insists, a new ctime)."""
    before = target.stat()
    assert len(content) == before.st_size
    with open(target, "r+b") as handle:
        handle.write(content)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))


def check(root: Path, env: dict, json_path: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = run("data", "check", *data_args(root), "--img-size", "64", "--json", json_path,
               *extra, env=env)
    assert proc.returncode == 0 and no_traceback(proc), proc.stdout + proc.stderr
    return proc


def test_a_file_replaced_with_the_same_size_and_mtime_is_read_again(data, tmp_path):
    env = rel_env(tmp_path / "cache")
    first = check(data, env, tmp_path / "first.json")
    assert "0 remembered" in first.stdout
    a, b = same_size_pair(data)
    replace_keeping_mtime(a, b.read_bytes())
    assert a.stat().st_mtime_ns == OLD_NS and a.stat().st_size == b.stat().st_size
    second = check(data, env, tmp_path / "second.json")
    assert "DICOM headers: " in second.stdout and " 1 read" in second.stdout, second.stdout
    grouping = read_json(tmp_path / "second.json")["grouping"]
    copies = grouping["identical_files_under_several_exams"]
    # The two files are now byte-identical: one split group (before: the old sha256
    # was remembered for the replaced file, and the copy went unnoticed).
    assert copies["count"] == 1 and copies["images"] == 2, copies


def test_pixel_data_zeroed_in_place_is_decoded_again(data, tmp_path):
    """`data cache` decoded every image; one file's pixel data is then zeroed with its
    header and mtime kept: `data check` must not take the old cache entry for it."""
    env = rel_env(tmp_path / "cache")
    built = run("data", "cache", *data_args(data), "--img-size", "64", env=env)
    assert built.returncode == 0, built.stderr
    target = sorted((data / "archive").rglob("*.dcm"))[5]
    size = target.stat().st_size
    pixels = 128 * 96 * 2
    content = bytearray(target.read_bytes())
    content[size - pixels:] = bytes(pixels)
    replace_keeping_mtime(target, bytes(content))
    proc = run("data", "check", *data_args(data), "--img-size", "64", "--json",
               tmp_path / "audit.json", env=env)
    assert proc.returncode == 0, proc.stderr
    audit = read_json(tmp_path / "audit.json")
    reasons = {Path(e["path"]).name + "@" + Path(e["path"]).parent.name: e["reason"]
               for e in audit["exclusions"] if e.get("path")}
    assert f"{target.name}@{target.parent.name}" in reasons, (reasons, proc.stdout)
    assert "constant image" in reasons[f"{target.name}@{target.parent.name}"]


def _memo_tables(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]


def test_damaged_memo_rows_are_misses_not_tracebacks_or_merged_groups(data, tmp_path):
    """A checksum row of `not-a-sha` (once every image's: all in one split group) and
    header rows of valid JSON with the wrong types (a traceback) are read again."""
    env = rel_env(tmp_path / "cache")
    first = check(data, env, tmp_path / "first.json")
    components = read_json(tmp_path / "first.json")["grouping"]["components"]
    assert components > 3
    db = tmp_path / "cache" / "checksums.sqlite"
    with sqlite3.connect(db) as conn:
        for table in _memo_tables(db):
            if table.startswith("checksums"):
                conn.execute(f"UPDATE {table} SET sha256 = 'not-a-sha'")
            elif table.startswith("headers"):
                rows = conn.execute(f"SELECT path, header FROM {table}").fetchall()
                for number, (path, text) in enumerate(rows):
                    own, sep, acquisition = text.partition("\x1e")
                    if number % 2:  # the file's own fields as numbers
                        own = json.dumps(list(range(len(json.loads(own)))))
                    else:  # Rows as a string: "320" <= 0 was a TypeError traceback
                        values = json.loads(acquisition)
                        values[1] = str(values[1])
                        acquisition = json.dumps(values)
                    conn.execute(f"UPDATE {table} SET header = ? WHERE path = ?",
                                 (own + sep + acquisition, path))
    second = check(data, env, tmp_path / "second.json")
    assert read_json(tmp_path / "second.json")["grouping"]["components"] == components
    assert "0 remembered" in second.stdout, second.stdout  # every bad header row: a miss
    assert first.stdout.count("WARNING") == second.stdout.count("WARNING")


@pytest.mark.slow
def test_reproduce_resume_and_folds_see_the_replaced_file(data, tmp_path):
    """A 2-fold cross-validation, then one file replaced by another's bytes (same size,
    mtime kept): `runs reproduce --dry-run --strict` fails naming the file, `--resume` of
    a fold refuses naming it, and a new cross-validation keeps the two identical files in one
    fold (grouped by content, not by patient)."""
    env = rel_env(tmp_path / "cache")
    out = tmp_path / "out"
    cv = [*data_args(data), *TINY, "--epochs", "1", "--cv-folds", "2", "--outdir", out]
    first = run("train-density", *cv, env=env, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    parent = out / "results_1"
    a, b = same_size_pair(data)
    replace_keeping_mtime(a, b.read_bytes())
    shown = f"{a.parent.name}/{a.name}"

    dry = run("runs", "reproduce", parent, "--dry-run", "--strict", env=env)
    assert dry.returncode == 1, dry.stdout + dry.stderr
    assert "data differs" in dry.stdout and f"{shown}: content changed" in dry.stdout

    trusted = run("runs", "reproduce", parent, "--dry-run", "--trust-memo", env=env)
    assert f"{shown}: content changed" in trusted.stdout  # ctime: the memo does not vouch

    # A completed cross-validation has nothing to continue; one of its folds trained longer
    # reads the same data.
    resumed = run("train-density", "--resume", parent / "fold_1" / "results", "--epochs", "2",
                  "--outdir", tmp_path / "resumed", env=env, timeout=600)
    assert resumed.returncode == 2 and no_traceback(resumed), resumed.stderr[-3000:]
    assert "the data changed" in resumed.stderr and shown in resumed.stderr
    summary = read_json(tmp_path / "resumed" / "results_1" / "summary.json")
    assert summary["config"]["trust_memo"] is False
    manifest = read_json(tmp_path / "resumed" / "results_1" / "data_manifest.json")
    assert manifest["hashing"]["memo_trusted"] is False
    assert manifest["hashing"]["files_from_memo"] == 0  # every file hashed again

    again = run("train-density", *cv, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    folds = {}
    for line in (out / "results_2" / "splits.csv").read_text().splitlines()[1:]:
        folds[line.split(",")[0]] = line.split(",")[-1]
    assert folds[shown] == folds[f"{b.parent.name}/{b.name}"], folds
