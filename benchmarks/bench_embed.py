"""Embedding throughput of `mammography embed`'s extraction loop vs a bare timm forward.

Both run in this process over the same cached uint16 batches (held in memory,
so the comparison is the loop, not disk): (a) bare: float conversion,
normalisation and ``backbone(x)`` under ``no_grad``; (b) ours:
``mammography.engine.embed.extract`` over a DataLoader-like list (it also
moves to the device, collects features and drives a progress bar). Repeats
are interleaved and medians taken, because this machine is noisy.
Goal: ours / bare <= 1.1.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from mammography.data.augment import normalize, to_float
from mammography.engine.device import Precision
from mammography.engine.embed import extract
from mammography.models.factory import create_backbone

ARCH, IMG, BATCH, BATCHES, REPEATS = "resnet18", 128, 32, 6, 5


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    backbone = create_backbone(ARCH).eval()
    rng = np.random.default_rng(0)
    batches = []
    for b in range(BATCHES):
        images = torch.from_numpy(rng.integers(0, 65535, (BATCH, 1, IMG, IMG), dtype=np.uint16))
        batches.append((images, torch.zeros(BATCH, dtype=torch.long),
                        torch.arange(BATCH) + b * BATCH, torch.zeros(BATCH, 0)))
    device, precision = torch.device("cpu"), Precision(False, None, False)

    @torch.no_grad()
    def bare() -> None:
        for images, *_ in batches:
            backbone(normalize(to_float(images))).numpy()

    def ours() -> None:
        extract(backbone, batches, device, precision, channels_last=False, progress=False)

    bare()
    ours()  # warm-up
    times: dict[str, list[float]] = {"bare": [], "ours": []}
    for _ in range(REPEATS):
        for name, fn in (("bare", bare), ("ours", ours)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    images = BATCH * BATCHES
    bare_s, ours_s = statistics.median(times["bare"]), statistics.median(times["ours"])
    print(f"{ARCH} at {IMG}x{IMG}, batch {BATCH}, {images} images, CPU, "
          f"{torch.get_num_threads()} threads, median of {REPEATS}")
    print(f"bare timm forward : {images / bare_s:7.1f} images/s")
    print(f"embed extract()   : {images / ours_s:7.1f} images/s")
    print(f"ratio ours/bare   : {ours_s / bare_s:.3f}x  goal <= 1.1: "
          f"{'OK' if ours_s / bare_s <= 1.1 else 'MISSED'}")


if __name__ == "__main__":
    main()
