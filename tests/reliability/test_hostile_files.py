"""Issue 23 (5, 6): hostile files cost bounded time and memory, and are excluded with a
reason, through the CLI.

* a 2 GB file of zeros named ``.dcm`` (``truncate -s 2G``): pydicom walked the zeros
  as elements (~8.7 s per 20 MB: `data check` past 5 minutes);
* a valid DICOM followed by 256 MB of zeros: the same walk, after the pixel data;
* a JPEG 2000 bomb: 2 KB whose codestream declares 8192 x 8192 (64 tiles of zeros,
  one encoded tile repeated) inside a 320 x 256 header: fully decoded (+325 MB per
  worker, 2.6 s) before the size mismatch refused it; the 16384 x 16384 variant took
  9.4 s and 1.3 GB (docs/reliability.md);
* a FIFO and /dev/zero named by a generic CSV: "file not found".

Goal: each excluded with a reason in under 5 s, peak memory under 300 MB above the
level after the imports.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability.common import (
    SCRIPTS,
    cli_args,
    copy_dataset,
    data_args,
    no_traceback,
    read_json,
    rel_env,
)

SECONDS = 5.0
PEAK_MB = 300.0


def tiled_bomb(tiles: int, tile: int = 1024) -> bytes:
    """A valid JPEG 2000 codestream of a black (tiles x tile)^2 image: one encoded tile
    of zeros, repeated as every tile - a few KB that decode to hundreds of MB."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (tile, tile)).save(buffer, "JPEG2000", no_jp2=True,
                                      tile_size=(tile, tile), num_resolutions=6)
    stream = buffer.getvalue()
    first_tile, end = stream.find(b"\xff\x90"), stream.rfind(b"\xff\xd9")
    head, part = bytearray(stream[:first_tile]), stream[first_tile:end]
    siz = head.find(b"\xff\x4f\xff\x51")
    struct.pack_into(">II", head, siz + 8, tiles * tile, tiles * tile)  # Xsiz, Ysiz
    parts = []
    for index in range(tiles * tiles):
        copy = bytearray(part)
        struct.pack_into(">H", copy, 4, index)  # Isot: which tile this part is
        parts.append(bytes(copy))
    return bytes(head) + b"".join(parts) + b"\xff\xd9"


def write_bomb(source: Path, target: Path, tiles: int) -> None:
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    ds = pydicom.dcmread(source)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([tiled_bomb(tiles)])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.save_as(target, enforce_file_format=True)


@pytest.fixture(scope="module")
def hostile(small_dataset, tmp_path_factory) -> dict[str, Path]:
    """The small dataset with three of its files replaced by hostile ones."""
    root = copy_dataset(small_dataset, tmp_path_factory.mktemp("hostile") / "data")
    files = sorted((root / "archive").rglob("*.dcm"))
    zeros, padded, bomb = files[0], files[10], files[20]
    with open(zeros, "wb") as handle:
        handle.truncate(2 * 1024**3)  # sparse: no disk used
    with open(padded, "ab") as handle:
        handle.truncate(padded.stat().st_size + 256 * 1024**2)
    write_bomb(files[30], bomb, tiles=8)
    return {"root": root, "zeros": zeros, "padded": padded, "bomb": bomb}


def probe(path: Path) -> dict:
    proc = subprocess.run([sys.executable, str(SCRIPTS / "probe_file.py"), str(path)],
                          capture_output=True, text=True, env=rel_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("name", "reason"), [
    ("zeros", "not a DICOM file"),
    ("bomb", "declares 8192 x 8192 pixels but the header's Rows x Columns is 128 x 96"),
    ("padded", None),  # a valid image: used, but nothing after its pixel data is parsed
])
def test_each_hostile_file_costs_bounded_time_and_memory(hostile, name, reason):
    result = probe(hostile[name])
    assert result["seconds"] < SECONDS and result["peak_mb"] < PEAK_MB, result
    if reason is None:
        assert result["reason"] is None, result
    else:
        assert reason in (result["reason"] or ""), result


def test_data_check_excludes_them_with_a_reason(hostile, tmp_path):
    root = hostile["root"]
    proc = subprocess.run(cli_args("data", "check", *data_args(root), "--img-size", "64",
                                   "--json", tmp_path / "audit.json"),
                          capture_output=True, text=True, timeout=120,
                          env=rel_env(tmp_path / "cache"))
    assert proc.returncode == 0 and no_traceback(proc), proc.stdout + proc.stderr
    audit = read_json(tmp_path / "audit.json")
    reasons = {Path(e["path"]).parent.name + "/" + Path(e["path"]).name: e["reason"]
               for e in audit["exclusions"] if e.get("path")}
    shown = {name: f"{hostile[name].parent.name}/{hostile[name].name}"
             for name in ("zeros", "bomb", "padded")}
    assert reasons[shown["zeros"]].startswith("not a DICOM file"), reasons
    assert "refused before decoding" in reasons[shown["bomb"]], reasons
    assert shown["padded"] not in reasons and audit["images"] == 61


def test_a_fifo_and_a_device_are_named_for_what_they_are(small_dataset, tmp_path):
    fifo = tmp_path / "pipe.dcm"
    os.mkfifo(fifo)
    image = sorted((small_dataset / "archive").rglob("*.dcm"))[0]
    csv = tmp_path / "labels.csv"
    csv.write_text(f"path,label\n{image},2\n{fifo},3\n/dev/zero,1\n")
    proc = subprocess.run(cli_args("data", "check", "--csv", csv, "--json",
                                   tmp_path / "audit.json", "--img-size", "64"),
                          capture_output=True, text=True, timeout=60,
                          env=rel_env(tmp_path / "cache"))
    assert proc.returncode == 0 and no_traceback(proc), proc.stdout + proc.stderr
    reasons = {e["path"]: e["reason"] for e in read_json(tmp_path / "audit.json")["exclusions"]}
    assert reasons[str(fifo)].startswith("a named pipe (FIFO), not a regular file"), reasons
    assert reasons["/dev/zero"].startswith("a character device, not a regular file"), reasons
