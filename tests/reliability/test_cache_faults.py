"""Issue 23 (4): a broken image cache is the cache's fault, never the images'.

A shard folder that is a file, a read-only cache folder and a full cache disk
each end in one WARNING naming the cache path and the fix; the run decodes the
images in memory instead, exits 0 and excludes nothing. Before: six images
"undecodable: Not a directory" and manifested as data exclusions, a traceback
(exit 1), a bare ``[Errno 28]``. The read-only and full cases mount a small
tmpfs (root with CAP_SYS_ADMIN; skipped elsewhere: as root a chmod'ed folder
is still writable).
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mammography.data.cache import ImageCache
from mammography.data.preprocess import PreprocessSettings
from tests.reliability.common import (
    TINY,
    cli_args,
    data_args,
    no_traceback,
    read_json,
    rel_env,
)

SETTINGS = PreprocessSettings.for_size(64)


def run(*args: object, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cli_args(*args), capture_output=True, text=True, env=env,
                          timeout=timeout)


def block_every_shard(cache_root: Path) -> Path:
    """A file in the place of each of the 256 shard folders of the 64 px cache."""
    folder = ImageCache(SETTINGS, cache_root).dir
    folder.mkdir(parents=True)
    for shard in range(256):
        (folder / f"{shard:02x}").write_text("not a folder")
    return folder


@contextlib.contextmanager
def tmpfs(where: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                                 capture_output=True, timeout=30)
    except OSError:
        pytest.skip("no mount command")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True, timeout=30)


def assert_cache_warning(proc: subprocess.CompletedProcess, where: Path, errno_text: str) -> None:
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0 and no_traceback(proc), text[-3000:]
    assert "WARNING: the image cache cannot be used: " in text and str(where) in text, text
    assert errno_text in text and "--cache-dir" in text, text
    assert "undecodable" not in text, text


def test_data_cache_with_files_for_shard_folders(small_dataset, tmp_path):
    cache = tmp_path / "cache"
    block_every_shard(cache)
    proc = run("data", "cache", *data_args(small_dataset), "--img-size", "64",
               env=rel_env(cache))
    assert_cache_warning(proc, cache, "Not a directory")
    assert "Cache ready: 63 images" in proc.stdout


@pytest.mark.slow
def test_training_with_files_for_shard_folders_excludes_nothing(small_dataset, tmp_path):
    cache = tmp_path / "cache"
    block_every_shard(cache)
    out = tmp_path / "out"
    proc = run("train-density", *data_args(small_dataset), *TINY, "--epochs", "1",
               "--outdir", out, env=rel_env(cache))
    assert_cache_warning(proc, cache, "Not a directory")
    manifest = read_json(out / "results_1" / "data_manifest.json")
    assert manifest["num_images"] == 63 and manifest["exclusions"] == []
    summary = read_json(out / "results_1" / "summary.json")
    assert summary["data_config"]["cache"]["fault"]
    assert summary["num_train"] + summary["num_val"] == 63


def test_a_read_only_cache_folder(small_dataset, tmp_path):
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as cache:
        proc = run("data", "cache", *data_args(small_dataset), "--img-size", "64",
                   env=rel_env(cache))
    assert_cache_warning(proc, cache, "Read-only file system")


def test_a_full_cache_disk(small_dataset, tmp_path):
    with tmpfs(tmp_path / "full", "300k") as cache:
        proc = run("data", "cache", *data_args(small_dataset), "--img-size", "64",
                   env=rel_env(cache))
    assert_cache_warning(proc, cache, "No space left on device")
    assert "the disk is full" in proc.stdout + proc.stderr
