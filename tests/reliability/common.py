"""Helpers of the reliability suite (bad inputs, faults, fuzzing).

Budgets: the default figures keep the whole suite within a few minutes on a
2-core CI machine. ``MAMMOGRAPHY_RELIABILITY_LONG=1`` raises every budget
(kills, fuzz examples) to the figures recorded in docs/reliability.md, and
``MAMMOGRAPHY_RELIABILITY_SEED=N`` replays the random kill moments of a run
(each fault test names the seed it used in its failure message).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import child_env

LONG = os.environ.get("MAMMOGRAPHY_RELIABILITY_LONG") == "1"
SEED = int(os.environ.get("MAMMOGRAPHY_RELIABILITY_SEED", time.time_ns() % 2**31))
SCRIPTS = Path(__file__).resolve().parent / "scripts"

# Tiny training: the smallest timm model, 64 px, CPU.
TINY = ["--arch", "test_efficientnet", "--no-pretrained", "--img-size", "64",
        "--batch-size", "16", "--num-workers", "0"]
STAMP = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] ?")


def budget(default: int, long: int) -> int:
    return long if LONG else default


def rel_env(cache_dir: Path | None = None, **extra: str) -> dict[str, str]:
    """The CLI's environment: one BLAS/OpenMP thread per process (several runs share
    2 cores here; oversubscribed spinning threads make a 0.2 s epoch take 10 s),
    no Rust backtraces from decoders that panic on purpose-made bad files."""
    env = child_env(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", RUST_BACKTRACE="0", **extra)
    if cache_dir is not None:
        env["MAMMOGRAPHY_CACHE_DIR"] = str(cache_dir)
    return env


def cli_args(*args: object) -> list[str]:
    return [sys.executable, "-m", "mammography", *map(str, args)]


def no_traceback(proc: subprocess.CompletedProcess) -> bool:
    return "Traceback" not in (proc.stdout or "") + (proc.stderr or "")


def log_lines(run_dir: Path) -> list[str]:
    """run.log without the timestamps."""
    text = (Path(run_dir) / "run.log").read_text(encoding="utf-8", errors="replace")
    return [STAMP.sub("", line) for line in text.splitlines()]


def read_json(path: Path) -> object:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def runs_list(root: Path) -> dict[str, dict]:
    """`mammography runs list ROOT --json`, by run directory name."""
    proc = subprocess.run(cli_args("runs", "list", root, "--json"), capture_output=True,
                          text=True, env=rel_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return {Path(r["path"]).name: r for r in json.loads(proc.stdout)}


def data_args(dataset: Path) -> list[str]:
    return ["--csv", str(dataset / "classificacao.csv"),
            "--dicom-root", str(dataset / "archive")]


def copy_dataset(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


# ------------------------------------------------------------------ bad DICOM files
# Each takes a valid synthetic mammogram (or a folder) and leaves one kind of
# damage behind; the reason data check / the manifest must give is next to it.

def small_mammogram(path: Path, *, compression: str = "none", shape=(64, 48)) -> Path:
    import numpy as np

    from mammography.data.synthetic import synthesize_mammogram, write_mammogram_dicom

    image = synthesize_mammogram(np.random.default_rng(1), 3, shape, "CC", "L")
    return write_mammogram_dicom(path, image, patient_id="PX", accession="AX", view="CC",
                                 laterality="R", compression=compression)


def edit_dicom(path: Path, change) -> Path:
    import pydicom

    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path)
    return path


def truncate_pixels(path: Path, cut: int = 3000) -> Path:
    path.write_bytes(path.read_bytes()[:-cut])
    return path


def drop_pixels(path: Path) -> Path:
    return edit_dicom(path, lambda ds: delattr(ds, "PixelData"))


def to_mpeg2(path: Path) -> Path:
    """Pixel data under a transfer syntax no installed plugin decodes."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import MPEG2MPML

    def change(ds):
        ds.PixelData = encapsulate([ds.PixelData])
        ds.file_meta.TransferSyntaxUID = MPEG2MPML

    return edit_dicom(path, change)


def for_processing(path: Path) -> Path:
    return edit_dicom(path, lambda ds: setattr(ds, "PresentationIntentType",
                                               "FOR PROCESSING"))


def claim_size(path: Path, rows: int, columns: int) -> Path:
    def change(ds):
        ds.Rows, ds.Columns = rows, columns

    return edit_dicom(path, change)


def jpegls_size_mismatch(path: Path) -> Path | None:
    """JPEG-LS whose Rows disagree with the codestream: python-gdcm used to abort
    the whole process on it (found by fuzzing). None when pydicom's test file is
    not installed."""
    from pydicom.data import get_testdata_file

    source = get_testdata_file("MR_small_jpeg_ls_lossless.dcm", download=False)
    if source is None:
        return None
    shutil.copyfile(source, path)
    return edit_dicom(path, lambda ds: setattr(ds, "Rows", 170))


def rle_panic(path: Path) -> Path | None:
    """RLE data on which pylibjpeg-rle's Rust decoder panics (PanicException, a
    BaseException) - found by fuzzing. None if the installed decoder no longer does."""
    import io
    import random

    from pydicom.pixels import pixel_array

    data = small_mammogram(path, compression="rle").read_bytes()
    start = data.find(b"\xe0\x7f\x10\x00") + 12
    rng = random.Random(0)
    for _ in range(3000):
        mutated = bytearray(data)
        mutated[rng.randrange(start, len(data))] = rng.randrange(256)
        try:
            pixel_array(io.BytesIO(bytes(mutated)), index=0, decoding_plugin="pylibjpeg")
        except Exception:
            continue
        except BaseException as exc:
            if type(exc).__name__ != "PanicException":
                raise
            path.write_bytes(bytes(mutated))
            return path
    return None


def full_field(path: Path) -> Path:
    """A genuine 4096 x 3328 mammogram (27 MB), cheap to make: a smooth breast shape."""
    import numpy as np

    from mammography.data.synthetic import write_mammogram_dicom

    rows, cols = 4096, 3328
    y, x = np.ogrid[:rows, :cols]
    inside = ((y - rows / 2) / (rows * 0.45)) ** 2 + (x / (cols * 0.8)) ** 2 < 1
    image = np.where(inside, 0.35 + 0.3 * np.sin(y / 97.0) * np.cos(x / 61.0), 0.0)
    return write_mammogram_dicom(path, image.astype(np.float32), patient_id="PX",
                                 accession="AX", view="MLO", laterality="L")
