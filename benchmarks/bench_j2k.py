"""One input whatever the encoding: JPEG 2000 and the other syntaxes against uncompressed.

CPU (``time.process_time``, one process, ``workers=1``) per image of a 512 px cache
build, ``--images`` synthetic full-field mammograms (3328 x 2560, 14 bits stored),
each written with the same pixels as JPEG 2000 lossless, uncompressed, RLE lossless
and JPEG-LS lossless, measured side by side in this run:

* baseline - pydicom's full-resolution decode of the J2K files,
  ``dcmread(path).pixel_array`` (what any reader pays without reduction);
* the cache build of the J2K files with ``j2k_reduce`` (the default: decode the
  wavelet level that covers twice 512 px, here level 1, 1664 x 1280) and without it
  (the whole pipeline at full resolution);
* the same cache build of the other syntaxes (decoded in full, then reduced to the
  same level by the same 5/3 low-pass).

Fidelity: the arrays built from each syntax against those built from the same pixels
uncompressed - PSNR over the whole input (uint16 scale) and the difference of the
breast-interior means (input pixels above a quarter of full scale, eroded by 3 px) -
for the images above and for a matrix of smaller phantoms (1664 x 1280): 12, 14 and
16 bits stored, MONOCHROME1 and MONOCHROME2, with and without a VOI window, J2K
lossless against uncompressed; plus 8-bit JPEG baseline (lossy) against the same
8-bit pixels uncompressed, for scale.

Goals: J2K build <= 0.35 x the baseline; lossless syntaxes: PSNR >= 40 dB and interior
mean within 0.5 % of uncompressed.

Usage: python benchmarks/bench_j2k.py [--images 3]
"""

from __future__ import annotations

import argparse
import io
import itertools
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, JPEGLSLossless
from scipy import ndimage

from mammography.data.cache import ImageCache
from mammography.data.preprocess import PreprocessSettings
from mammography.data.synthetic import synthesize_mammogram, write_mammogram_dicom

SHAPE = (3328, 2560)
MATRIX_SHAPE = (1664, 1280)
VIEWS = (("L", "CC"), ("R", "MLO"), ("R", "CC"), ("L", "MLO"))
SYNTAXES = ("none", "rle", "jpegls", "j2k")


def write(path: Path, image: np.ndarray, syntax: str, view: str, laterality: str,
          **options: object) -> Path:
    """``image`` as a DICOM file in ``syntax`` (JPEG-LS through pydicom's encoder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mammogram_dicom(path, image, patient_id="P", accession=path.stem, view=view,
                          laterality=laterality,
                          compression=syntax if syntax in ("rle", "j2k") else "none",
                          **options)
    if syntax == "jpegls":
        ds = pydicom.dcmread(path)
        ds.compress(JPEGLSLossless, generate_instance_uid=False)
        ds.save_as(path)
    return path


def write_eight_bit(path: Path, image: np.ndarray) -> Path:
    """``image`` as 8-bit uncompressed MONOCHROME2 without a window (what JPEG baseline
    holds): the writer's 9-bit file with its stored values halved into 8 bits."""
    write(path, image, "none", "CC", "L", bits_stored=9, window=False)
    ds = pydicom.dcmread(path)
    values = (ds.pixel_array >> 1).astype(np.uint8)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = values.tobytes()
    ds.save_as(path)
    return path


def write_jpeg_baseline(path: Path, plain: Path) -> Path:
    """``plain`` (8-bit, uncompressed) re-encoded as JPEG baseline by Pillow, quality 95."""
    ds = pydicom.dcmread(plain)
    buffer = io.BytesIO()
    Image.fromarray(ds.pixel_array.astype(np.uint8)).save(buffer, format="JPEG", quality=95)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def cpu(func) -> float:
    start = time.process_time()
    func()
    return time.process_time() - start


def build(paths: list[Path], root: Path, reduce: bool = True) -> tuple[float, ImageCache]:
    cache = ImageCache(PreprocessSettings(img_size=512, j2k_reduce=reduce), root)
    seconds = cpu(lambda: cache.build(paths, workers=1, progress=False))
    return seconds / len(paths), cache


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(65535.0 ** 2 / mse)


def interior_difference(a: np.ndarray, reference: np.ndarray) -> float:
    """|mean(a) - mean(reference)| / mean(reference) over the reference's breast interior."""
    interior = ndimage.binary_erosion(reference > 65535 // 4, iterations=3)
    ref = float(reference[interior].mean())
    return abs(float(a[interior].mean()) - ref) / ref


def compare(cache: ImageCache, paths: list[Path], reference: ImageCache,
            references: list[Path]) -> tuple[float, float]:
    """Worst PSNR and worst interior-mean difference of ``paths`` against ``references``."""
    pairs = [(cache.load(p), reference.load(q)) for p, q in zip(paths, references, strict=True)]
    return (min(psnr(a, b) for a, b in pairs),
            max(interior_difference(a, b) for a, b in pairs))


def verdict(worst_psnr: float, worst_mean: float) -> str:
    ok = worst_psnr >= 40 and worst_mean <= 0.005
    return (f"PSNR {worst_psnr:6.1f} dB, interior mean {worst_mean:.3%}: "
            f"{'OK' if ok else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rng = np.random.default_rng(0)
        files: dict[str, list[Path]] = {name: [] for name in SYNTAXES}
        for i in range(args.images):
            laterality, view = VIEWS[i % 4]
            image = synthesize_mammogram(rng, 1 + i % 4, SHAPE, view, laterality)
            for name in SYNTAXES:
                files[name].append(write(folder / name / f"mg{i:02d}.dcm", image, name, view,
                                         laterality, bits_stored=14))
        j2k = files["j2k"]
        baseline = cpu(lambda: [pydicom.dcmread(p).pixel_array for p in j2k]) / len(j2k)
        rows = [("pydicom full decode (J2K, baseline)", baseline)]
        reduced, cache_j2k = build(j2k, folder / "c-j2k")
        full, _ = build(j2k, folder / "c-j2k-full", reduce=False)
        rows += [("cache build 512 px, J2K", reduced),
                 ("cache build 512 px, J2K, --no-j2k-reduce", full)]
        caches = {"j2k": cache_j2k}
        for name in ("none", "rle", "jpegls"):
            seconds, caches[name] = build(files[name], folder / f"c-{name}")
            rows.append((f"cache build 512 px, {name}", seconds))
        print(f"{args.images} images {SHAPE[0]}x{SHAPE[1]}, 14 bits; CPU seconds per image")
        for label, seconds in rows:
            print(f"  {label:42s} {seconds:7.3f} s  {seconds / baseline:5.2f}x baseline")
        ratio = reduced / baseline
        print(f"J2K 512 px build: {ratio:.2f}x the full pydicom decode (goal <= 0.35x): "
              f"{'OK' if ratio <= 0.35 else 'MISSED'}")
        print("Against the same pixels uncompressed (worst image):")
        for name in ("j2k", "rle", "jpegls"):
            print(f"  {name:8s} " + verdict(*compare(caches[name], files[name], caches["none"],
                                                       files["none"])))

        print(f"Matrix {MATRIX_SHAPE[0]}x{MATRIX_SHAPE[1]}, J2K lossless against uncompressed:")
        for k, (bits, photometric, window) in enumerate(itertools.product(
                (12, 14, 16), ("MONOCHROME2", "MONOCHROME1"), (True, False))):
            laterality, view = VIEWS[k % 4]
            image = synthesize_mammogram(rng, 1 + k % 4, MATRIX_SHAPE, view, laterality)
            pair = [write(folder / "m" / f"{k}-{name}.dcm", image, name, view, laterality,
                          bits_stored=bits, photometric=photometric, window=window)
                    for name in ("j2k", "none")]
            _, got = build(pair[:1], folder / "m" / f"c{k}-j2k")
            _, ref = build(pair[1:], folder / "m" / f"c{k}-none")
            label = f"{bits} bits, {photometric}, {'VOI window' if window else 'no window'}"
            print(f"  {label:38s} " + verdict(*compare(got, pair[:1], ref, pair[1:])))

        image = synthesize_mammogram(rng, 3, MATRIX_SHAPE, "CC", "L")
        plain = write_eight_bit(folder / "b" / "plain.dcm", image)
        baseline_jpeg = write_jpeg_baseline(folder / "b" / "jpeg.dcm", plain)
        _, got = build([baseline_jpeg], folder / "b" / "c-jpeg")
        _, ref = build([plain], folder / "b" / "c-plain")
        worst_psnr, worst_mean = compare(got, [baseline_jpeg], ref, [plain])
        print(f"JPEG baseline (lossy, quality 95) against the same 8-bit pixels: PSNR "
              f"{worst_psnr:.1f} dB, interior mean {worst_mean:.3%} (for scale; no goal)")


if __name__ == "__main__":
    main()
