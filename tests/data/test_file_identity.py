"""file_identity.py: git's stat rule - a same-size rewrite with its mtime put back is
another file."""

from __future__ import annotations

import os
import time

from mammography.data.file_identity import (
    RACY_WINDOW_NS,
    file_identity,
    missing_file_reason,
    settled,
)


def test_a_rewrite_with_the_same_size_and_mtime_changes_the_identity(tmp_path):
    path = tmp_path / "a.dcm"
    path.write_bytes(b"old bytes")
    old = time.time_ns() - 3600 * 10**9
    os.utime(path, ns=(old, old))
    before = file_identity(path)
    time.sleep(0.01)  # past the file system's timestamp granularity
    with open(path, "r+b") as handle:
        handle.write(b"new bytes")
    os.utime(path, ns=(old, old))  # touch -r
    after = file_identity(path)
    assert (after.size, after.mtime_ns, after.inode) == (before.size, before.mtime_ns,
                                                         before.inode)
    assert after != before and after.ctime_ns > before.ctime_ns
    copy = tmp_path / "b.dcm"
    os.replace(path, copy)  # a rename: same inode, new path
    assert file_identity(copy).path != before.path


def test_racy_files_are_not_remembered(tmp_path):
    path = tmp_path / "fresh"
    path.write_bytes(b"x")
    assert not settled(file_identity(path))
    assert settled(file_identity(path), now_ns=time.time_ns() + RACY_WINDOW_NS + 1)


def test_missing_file_reasons(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert missing_file_reason(tmp_path / "nope") == "file not found"
    assert missing_file_reason(fifo).startswith("a named pipe (FIFO)")
    assert missing_file_reason("/dev/zero").startswith("a character device")
    assert missing_file_reason(tmp_path).startswith("a folder")
