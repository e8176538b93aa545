"""JPEG 2000 decoded at training resolution: CPU and fidelity of a 512 px cache build.

Files: ``--images`` synthetic full-field mammograms (3328 x 2560, 14 bits
stored, ~11 MB as JPEG 2000 lossless), each written with the same pixels as
JPEG 2000 lossless, uncompressed, RLE lossless and JPEG-LS lossless.

Measured side by side in this run, CPU time (``time.process_time``, one
process, ``workers=1``) per image:

* baseline - pydicom's full-resolution decode of the J2K files,
  ``dcmread(path).pixel_array`` (what any reader pays without reduction);
* the 512 px cache build (``ImageCache.build``) of the J2K files with
  ``j2k_reduce`` (the default: decode the coarsest wavelet level that covers
  512 px, here 832 x 640) and without it (full decode, as before);
* the same cache build of the other syntaxes, for comparison.

Goal: J2K build with reduction <= 0.35 x the baseline, and its arrays within
PSNR >= 40 dB (on the uint16 scale) of the arrays built from the same pixels
stored uncompressed.

Usage: python benchmarks/bench_j2k.py [--images 3]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import JPEGLSLossless

from mammography.data.cache import ImageCache
from mammography.data.preprocess import PreprocessSettings
from mammography.data.synthetic import synthesize_mammogram, write_mammogram_dicom

SHAPE = (3328, 2560)
VIEWS = (("L", "CC"), ("R", "MLO"), ("R", "CC"), ("L", "MLO"))
SYNTAXES = ("none", "rle", "jpegls", "j2k")


def write_files(folder: Path, n: int) -> dict[str, list[Path]]:
    rng = np.random.default_rng(0)
    files: dict[str, list[Path]] = {name: [] for name in SYNTAXES}
    for i in range(n):
        laterality, view = VIEWS[i % 4]
        image = synthesize_mammogram(rng, 1 + i % 4, SHAPE, view, laterality)
        for name in SYNTAXES:
            path = folder / name / f"mg{i:02d}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_mammogram_dicom(path, image, patient_id=f"P{i}", accession=str(i), view=view,
                                  laterality=laterality, bits_stored=14,
                                  compression="none" if name == "jpegls" else name)
            if name == "jpegls":
                ds = pydicom.dcmread(path)
                ds.compress(JPEGLSLossless, generate_instance_uid=False)
                ds.save_as(path)
            files[name].append(path)
    return files


def cpu(func) -> float:
    start = time.process_time()
    func()
    return time.process_time() - start


def build(paths: list[Path], root: Path, reduce: bool) -> tuple[float, ImageCache]:
    cache = ImageCache(PreprocessSettings(img_size=512, j2k_reduce=reduce), root)
    seconds = cpu(lambda: cache.build(paths, workers=1, progress=False))
    return seconds / len(paths), cache


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(65535.0 ** 2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = write_files(folder / "src", args.images)
        j2k = files["j2k"]
        baseline = cpu(lambda: [pydicom.dcmread(p).pixel_array for p in j2k]) / len(j2k)
        rows = [("pydicom full decode (J2K, baseline)", baseline)]
        reduced, cache_reduced = build(j2k, folder / "c1", reduce=True)
        full, _ = build(j2k, folder / "c2", reduce=False)
        rows += [("cache build 512 px, J2K, j2k_reduce", reduced),
                 ("cache build 512 px, J2K, full decode", full)]
        reference = None
        for name in ("none", "rle", "jpegls"):
            seconds, cache = build(files[name], folder / f"c-{name}", reduce=True)
            rows.append((f"cache build 512 px, {name}", seconds))
            if name == "none":
                reference = cache
        assert reference is not None
        quality = [psnr(cache_reduced.load(p), reference.load(q))
                   for p, q in zip(j2k, files["none"], strict=True)]
        print(f"{args.images} images {SHAPE[0]}x{SHAPE[1]}, 14 bits; CPU seconds per image")
        for label, seconds in rows:
            print(f"  {label:42s} {seconds:7.3f} s  {seconds / baseline:5.2f}x baseline")
        ratio = reduced / baseline
        print(f"J2K 512 px build with reduction: {ratio:.2f}x the full pydicom decode "
              f"(goal <= 0.35x): {'OK' if ratio <= 0.35 else 'MISSED'}")
        print(f"PSNR vs the same pixels uncompressed: min {min(quality):.1f} dB, mean "
              f"{np.mean(quality):.1f} dB (goal >= 40 dB): "
              f"{'OK' if min(quality) >= 40 else 'MISSED'}")


if __name__ == "__main__":
    main()
