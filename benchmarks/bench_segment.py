"""Breast crop on digitised film: how much of the network input is breast, and no marker.

Fixtures (``mammography.data.synthetic.film``): ``--films`` films in the CBIS-DDSM layout -
a phantom breast against the chest-wall edge, white film-edge strips (always 4-5 rows
deep at the top of MLO films, other sides by chance, some partial), white "LCC"/"RMLO"
lead letters in an upper corner, a bright film label with dark lettering in a lower
corner, a grey grainy film base - written as 16-bit MONOCHROME2 DICOM without a VOI
window (as CBIS-DDSM's files are) and preprocessed by ``load_preprocessed_with_info``.

Measured against each film's truth (the phantom's breast, the marker and label pixels):

* breast share of the input - the share of the ``H x W`` network input covered by the
  breast (truth pixels inside the crop, scaled to the input; the breast a film edge
  covers is not counted: it is not seen), median over the films, for a
  square input and a 2:1 (height x width) one; next to it, in the same run, the share the
  whole film gives (no crop, the baseline) and the share of the truth's own bounding box
  (the best an aspect-preserving crop can do);
* marker pixels left - marker or label pixels inside the crop that are not blanked out
  (their input pixel is not 0); films with any;
* CPU per film of ``load_preprocessed_with_info`` (``time.process_time``).

Goals: median share >= 0.45 square and >= 0.65 at 2:1; no marker pixel left.

Usage: python benchmarks/bench_segment.py [--films 16] [--rows 2400] [--ratio 1.4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from mammography.data.preprocess import PreprocessSettings, load_preprocessed_with_info
from mammography.data.synthetic import write_mammogram_dicom
from mammography.data.synthetic.film import Film, film_mammogram

VIEWS = (("L", "CC"), ("R", "MLO"), ("R", "CC"), ("L", "MLO"))


def input_share(truth: np.ndarray, box: tuple[int, int, int, int], scale: float,
                shape: tuple[int, int]) -> float:
    """Share of the ``shape`` input covered by ``truth`` pixels inside ``box`` at ``scale``."""
    r0, r1, c0, c1 = box
    return float(truth[r0:r1, c0:c1].sum()) * scale * scale / (shape[0] * shape[1])


def fitted_share(truth: np.ndarray, shape: tuple[int, int]) -> float:
    """The share when the crop is exactly the truth's bounding box (the best possible)."""
    rows, cols = np.flatnonzero(truth.any(1)), np.flatnonzero(truth.any(0))
    box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
    scale = min(shape[0] / (box[1] - box[0]), shape[1] / (box[3] - box[2]))
    return input_share(truth, box, scale, shape)


def markers_left(film: Film, output: np.ndarray, info: dict) -> int:
    """Marker/label pixels inside the crop whose input pixel is not blanked (not 0)."""
    r0, r1, c0, c1 = info["crop_box"]
    scale = info["scale"]
    rows, cols = np.nonzero(film.markers[r0:r1, c0:c1])
    if rows.size == 0:
        return 0
    x = (c1 - c0 - 1 - cols) if info["flipped"] else cols
    y_out = np.minimum((rows * scale).astype(np.intp), info["resized_shape"][0] - 1)
    x_out = np.minimum((x * scale).astype(np.intp), info["resized_shape"][1] - 1)
    return int(np.count_nonzero(output[y_out, x_out] > 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--films", type=int, default=32)
    parser.add_argument("--rows", type=int, default=2400)
    parser.add_argument("--ratio", type=float, default=1.33,
                        help="film rows / columns (an 18 x 24 cm film is 1.33)")
    parser.add_argument("--size", type=int, default=256, help="input height")
    args = parser.parse_args()
    shape = (args.rows, round(args.rows / args.ratio))
    inputs = {"square": (args.size, args.size), "2:1": (args.size, args.size // 2)}
    rng = np.random.default_rng(2024)
    shares: dict[str, list[float]] = {name: [] for name in inputs}
    whole: dict[str, list[float]] = {name: [] for name in inputs}
    fitted: dict[str, list[float]] = {name: [] for name in inputs}
    left, cpu = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.films):
            laterality, view = VIEWS[i % 4]
            film = film_mammogram(rng, 1 + i % 4, shape, view, laterality)
            path = write_mammogram_dicom(Path(tmp) / f"film{i}.dcm", film.image,
                                         patient_id=f"P{i}", accession=str(i), view=view,
                                         laterality=laterality, bits_stored=16, window=False)
            seen = film.breast & ~film.edges  # what a film edge covers is not seen
            for name, size in inputs.items():
                settings = PreprocessSettings.for_size(f"{size[0]}x{size[1]}")
                start = time.process_time()
                output, _, info = load_preprocessed_with_info(path, settings)
                cpu.append(time.process_time() - start)
                shares[name].append(input_share(seen, tuple(info["crop_box"]),
                                                info["scale"], size))
                whole[name].append(input_share(seen, (0, shape[0], 0, shape[1]),
                                               min(size[0] / shape[0], size[1] / shape[1]),
                                               size))
                fitted[name].append(fitted_share(seen, size))
                if name == "square":
                    left.append(markers_left(film, output, info))
    print(f"{args.films} digitised films {shape[0]}x{shape[1]} (16-bit, no VOI window); "
          f"input {args.size} px high")
    print(f"  {'input':8s} {'whole film':>11s} {'ours':>8s} {'truth bbox':>11s}  goal")
    goals = {"square": 0.45, "2:1": 0.65}
    for name in inputs:
        ours = float(np.median(shares[name]))
        print(f"  {name:8s} {np.median(whole[name]):11.3f} {ours:8.3f} "
              f"{np.median(fitted[name]):11.3f}  >= {goals[name]:.2f}: "
              f"{'OK' if ours >= goals[name] else 'MISSED'}  "
              f"(ours / whole film {ours / float(np.median(whole[name])):.2f}x)")
    films_with = sum(n > 0 for n in left)
    print(f"  marker pixels left in the crop: {sum(left)} (films with any: {films_with}/"
          f"{len(left)}): {'OK' if sum(left) == 0 else 'MISSED'}")
    print(f"  CPU per film (load_preprocessed_with_info): {np.median(cpu) * 1e3:.1f} ms median")


if __name__ == "__main__":
    main()
