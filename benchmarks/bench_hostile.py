"""Hostile files: time and peak memory to refuse (or read) each one, against a baseline.

Files (one synthetic 320 x 256 mammogram as the template):

* ``zeros.dcm`` - 2 GB of zeros (sparse, ``truncate -s 2G``);
* ``padded.dcm`` - a valid image followed by 256 MB of zeros;
* ``bomb16k.dcm`` - a 7.8 KB JPEG 2000 codestream declaring 16384 x 16384 (one
  encoded 1024 x 1024 tile of zeros repeated 256 times) in the 320 x 256 header;
* ``bomb8k.dcm`` - the same at 8192 x 8192 (under the 100-megapixel cap).

Each file is read by a fresh process - ``read_header``, then the decode check of
``data check`` at 512 px - for the working tree and for ``--baseline REV``
(extracted with ``git archive``; ``--no-baseline`` skips it), with ``--timeout``
seconds each. Goal (issue 23): each hostile file refused with a reason in under
5 s, peak memory under 300 MB above the level after the imports.

    python benchmarks/bench_hostile.py [--baseline f7e70f7] [--timeout 60]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE_REV = "f7e70f7"  # before issue 23
GOAL_SECONDS, GOAL_MB = 5.0, 300.0


def child(path: Path) -> None:
    from mammography.data.dicom.decode import DicomReadError, read_header
    from mammography.data.preprocess import PreprocessSettings, check_preprocessed

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    reason = None
    try:
        read_header(path)
        check_preprocessed(path, PreprocessSettings.for_size(512))
    except DicomReadError as exc:
        reason = exc.reason
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": time.perf_counter() - start,
                      "peak_mb": (peak - base) / 1024, "reason": reason}))


def tiled_bomb(tiles: int, tile: int = 1024) -> bytes:
    """A valid JPEG 2000 codestream of a black (tiles x tile)^2 image: one encoded tile
    of zeros, repeated as every tile."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (tile, tile)).save(buffer, "JPEG2000", no_jp2=True,
                                      tile_size=(tile, tile), num_resolutions=6)
    stream = buffer.getvalue()
    first_tile, end = stream.find(b"\xff\x90"), stream.rfind(b"\xff\xd9")
    head, part = bytearray(stream[:first_tile]), stream[first_tile:end]
    siz = head.find(b"\xff\x4f\xff\x51")
    struct.pack_into(">II", head, siz + 8, tiles * tile, tiles * tile)
    parts = []
    for index in range(tiles * tiles):
        copy = bytearray(part)
        struct.pack_into(">H", copy, 4, index)
        parts.append(bytes(copy))
    return bytes(head) + b"".join(parts) + b"\xff\xd9"


def make_files(folder: Path) -> dict[str, Path]:
    import numpy as np
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    from mammography.data.synthetic import synthesize_mammogram, write_mammogram_dicom

    template = folder / "template.dcm"
    image = synthesize_mammogram(np.random.default_rng(1), 2, (320, 256), "CC", "L")
    write_mammogram_dicom(template, image, patient_id="P1", accession="A1", view="CC",
                          laterality="L", seed_uid_suffix="1")
    files = {"zeros.dcm": folder / "zeros.dcm", "padded.dcm": folder / "padded.dcm"}
    with open(files["zeros.dcm"], "wb") as handle:
        handle.truncate(2 * 1024**3)
    files["padded.dcm"].write_bytes(template.read_bytes())
    with open(files["padded.dcm"], "ab") as handle:
        handle.truncate(files["padded.dcm"].stat().st_size + 256 * 1024**2)
    for name, tiles in (("bomb16k.dcm", 16), ("bomb8k.dcm", 8)):
        ds = pydicom.dcmread(template)
        ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
        ds.PixelData = encapsulate([tiled_bomb(tiles)])
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.save_as(folder / name, enforce_file_format=True)
        files[name] = folder / name
    return files


def measure(source: Path, path: Path, timeout: float) -> str:
    env = dict(os.environ, PYTHONPATH=str(source), OMP_NUM_THREADS="1")
    try:
        done = subprocess.run([sys.executable, __file__, "--child", str(path)], env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"still busy after {timeout:.0f} s"
    if done.returncode != 0:
        return f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1][:80]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    met = result["seconds"] < GOAL_SECONDS and result["peak_mb"] < GOAL_MB
    reason = (result["reason"] or "read: a usable image")[:70]
    return (f"{result['seconds']:6.2f} s, +{result['peak_mb']:5.0f} MB "
            f"[{'ok' if met else 'over the goal'}]: {reason}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE_REV)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="bench_hostile_") as work:
        files = make_files(Path(work))
        variants = {"current": REPO}
        if not args.no_baseline:
            old = Path(work) / "baseline"
            old.mkdir()
            archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline,
                                      "mammography"], capture_output=True)
            if archive.returncode == 0:
                subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
                variants = {f"baseline {args.baseline}": old, **variants}
        for name, path in files.items():
            for variant, source in variants.items():
                print(f"{name:>12} {variant:>17}: {measure(source, path, args.timeout)}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
