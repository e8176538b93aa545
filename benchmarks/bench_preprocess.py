"""Cost of DICOM -> network input for one full-field mammogram (4096 x 3328, 12 bits).

Three pipelines on the same uncompressed file (warm page cache, so this
measures CPU work, not the disk):

* floor  - pydicom's raw decode, ``dcmread(path).pixel_array``: the least any
           reader does;
* ours   - ``load_preprocessed(path, PreprocessSettings(img_size=512))``: decode,
           the 5/3 low-pass to the working grid (level 1 here; every pixel is read,
           ~11 ms of 12-bit data: the price of the input JPEG 2000 gives), modality/VOI
           LUT, segmentation, orientation, breast crop, area resize, blank, pad, uint16;
* naive  - what a first attempt does: float64 at full resolution, rescale,
           percentile window, Pillow bicubic resize to 512, pad.

Goals: ours <= 2x floor (met before the working grid: 1.45x; now ~2.7x), naive >= 5x
ours. Also reported: our full-resolution
``decode`` and, unless ``--no-j2k``, decoding the same image as JPEG 2000
lossless (where the codec dominates everything else).
Each figure is the median of ``--runs`` runs after two warm-ups; CPU time is
``time.process_time`` (all threads), wall time ``time.perf_counter``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from mammography.data.dicom.decode import decode
from mammography.data.preprocess import PreprocessSettings, load_preprocessed
from mammography.data.synthetic import synthesize_mammogram, write_mammogram_dicom

SHAPE = (4096, 3328)
IMG_SIZE = 512


def measure(func: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median (cpu, wall) seconds over ``runs`` calls, after two warm-up calls.

    Each result stays alive until the next call returns, as a caller holds the
    array while using it. That also keeps glibc's allocator in its steady
    state: with results dropped at once, every 27 MB allocation of the floor
    comes fresh from the kernel and page-faults (~2.5x its time here), which
    would flatter our memory-mapped path.
    """
    result = func()
    result = func()
    cpu, wall = [], []
    for _ in range(runs):
        c0, w0 = time.process_time(), time.perf_counter()
        result = func()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    del result
    return statistics.median(cpu), statistics.median(wall)


def floor(path: Path) -> np.ndarray:
    return pydicom.dcmread(path).pixel_array


def ours(path: Path) -> np.ndarray:
    return load_preprocessed(path, PreprocessSettings(img_size=IMG_SIZE))[0]


def naive(path: Path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    image = ds.pixel_array.astype(np.float64)
    image = image * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    low, high = np.percentile(image, [0.5, 99.5])
    image = np.clip((image - low) / (high - low), 0.0, 1.0)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        image = 1.0 - image
    rows, cols = image.shape
    scale = IMG_SIZE / max(rows, cols)
    size = (round(cols * scale), round(rows * scale))
    small = np.asarray(Image.fromarray(image.astype(np.float32)).resize(
        size, Image.Resampling.BICUBIC))
    canvas = np.zeros((IMG_SIZE, IMG_SIZE), np.float32)
    canvas[: small.shape[0], : small.shape[1]] = np.clip(small, 0, 1)
    return np.rint(canvas * 65535).astype(np.uint16)


def report(name: str, figures: tuple[float, float]) -> None:
    cpu, wall = figures
    print(f"  {name:<34s} cpu {cpu * 1e3:8.1f} ms   wall {wall * 1e3:8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-j2k", action="store_true", help="skip the JPEG 2000 figure")
    args = parser.parse_args()

    print(f"{SHAPE[0]} x {SHAPE[1]} MLO, 12 bits stored, uncompressed; output "
          f"{IMG_SIZE} x {IMG_SIZE} uint16; median of {args.runs} runs")
    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"pydicom {pydicom.__version__}, {platform.machine()}")
    image = synthesize_mammogram(np.random.default_rng(0), 3, SHAPE, "MLO", "R")
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for n, (label, options) in enumerate((
                ("MONOCHROME2 + window", {}),
                ("MONOCHROME1, no VOI tags (percentile)",
                 {"photometric": "MONOCHROME1", "window": False}))):
            path = write_mammogram_dicom(Path(tmp) / f"mg{n}.dcm", image, patient_id="P1",
                                         accession="1", view="MLO", laterality="R", **options)
            os.sync()  # no writeback of the fresh file while we measure
            print(f"\n{label}:")
            figures = {name: measure(lambda f=func, p=path: f(p), args.runs)
                       for name, func in (("floor", floor), ("ours", ours), ("naive", naive))}
            report("floor: dcmread().pixel_array", figures["floor"])
            report("ours: load_preprocessed", figures["ours"])
            report("naive: float64 + PIL bicubic", figures["naive"])
            report("(ours: full-resolution decode)",
                   measure(lambda p=path: decode(p), args.runs))
            ratio_floor = figures["ours"][0] / figures["floor"][0]
            ratio_naive = figures["naive"][0] / figures["ours"][0]
            print(f"  ours / floor  = {ratio_floor:5.2f}x (cpu)  goal <= 2x: "
                  f"{'OK' if ratio_floor <= 2 else 'MISSED'}")
            print(f"  naive / ours  = {ratio_naive:5.2f}x (cpu)  goal >= 5x: "
                  f"{'OK' if ratio_naive >= 5 else 'MISSED'}")
            results[label] = figures

        if not args.no_j2k:
            path = write_mammogram_dicom(Path(tmp) / "j2k.dcm", image, patient_id="P1",
                                         accession="1", view="MLO", laterality="R",
                                         compression="j2k")
            runs = max(1, min(args.runs, 3))
            print(f"\nJPEG 2000 lossless ({path.stat().st_size / 2**20:.1f} MiB), "
                  f"median of {runs}:")
            report("floor: dcmread().pixel_array", measure(lambda: floor(path), runs))
            report("ours: load_preprocessed", measure(lambda: ours(path), runs))


if __name__ == "__main__":
    main()
