"""Training step on CPU: our ``train_one_epoch`` against a bare torch loop, and loader vs model.

Model: ``create_model("efficientnet_b0")`` (the default --arch), random
weights, float32, Adam (the default optimizer), batch 16 at img_size 128
(small, so the run stays short on CPU; the ratio is about the loop, not the
model). The batches are real cache entries (synthetic mammograms preprocessed
to 128 x 128 uint16) loaded once through ``CachedImageDataset`` and kept as
tensors, so every variant steps over the very same batches with the very
same model and optimizer, in this process:

* bare   - ``x = images.float() / 65535``, normalise, ``F.cross_entropy``,
           ``zero_grad``, ``backward``, ``step``: the least a loop does;
* ours   - ``train_one_epoch(..., generator=None, grad_clip=1.0)`` (no
           augmentation; gradient clipping at the default 1.0; it also keeps
           the loss, softmax probabilities, labels and rows of every batch);
* ours, grad_clip=0 - the same without clipping (what clipping costs);
* ours + augment    - with an augmentation generator (flip, rotation+scale,
           brightness/contrast), as train-density runs by default;
* bare, zero_grad first - the bare loop with ``zero_grad`` moved before the
           forward pass, where our loop has it (set_to_none frees the
           gradients before the forward pass allocates its activations).

Minor page faults per step are printed next to the times: on the dev VMs a
fault costs microseconds, and allocation patterns that return memory to the
kernel and fault it back in every step show up there first.

Rounds interleave the variants (order rotated every round) and each step is
timed on its own (``on_step`` gives our loop's step boundaries); figures are
medians over all timed steps, after a warm-up pass each.
Goal: ours / bare <= 1.05x (like for like: no augmentation).

Loader: ``DataLoader(CachedImageDataset, batch_size=16, num_workers=2,
persistent_workers=True, shuffle=True)`` over 512 cache entries at 128 x 128
(the model's input size), on its own: images/s, median of ``--epochs`` epochs
after a warm-up epoch. Goal: >= 3x the bare loop's training images/s (the
fastest the model steps, so the strictest comparison).

Usage: python benchmarks/bench_train_step.py [--threads 2] [--rounds 4] [--steps 4]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from mammography.data.augment import GRAY_MEAN, GRAY_STD
from mammography.data.dataset import CachedImageDataset
from mammography.engine.device import select_precision
from mammography.engine.train.loop import train_one_epoch
from mammography.models.factory import create_model

from _fixtures import make_cache

ARCH = "efficientnet_b0"
IMG_SIZE = 128
BATCH = 16
PRELOADED_BATCHES = 8
LOADER_ENTRIES = 512

Batch = tuple[torch.Tensor, ...]  # a collated dataset item: images, labels, rows, ...


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


class StepClock:
    """Per-step durations from consecutive step boundaries, and page faults per step."""

    def __init__(self) -> None:
        self.steps: list[float] = []
        self.faults: list[int] = []
        self.last = 0.0
        self.last_faults = 0

    def start(self) -> None:
        self.last, self.last_faults = time.perf_counter(), minor_faults()

    def tick(self) -> None:
        now, faults = time.perf_counter(), minor_faults()
        self.steps.append(now - self.last)
        self.faults.append(faults - self.last_faults)
        self.last, self.last_faults = now, faults


def bare_pass(model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable[Batch],
              clock: StepClock, *, zero_grad_first: bool = False) -> None:
    model.train()
    clock.start()
    for images, y, *_rest in batches:
        if zero_grad_first:
            optimizer.zero_grad()
        x = images.float() / 65535
        x = (x - GRAY_MEAN) / GRAY_STD
        loss = F.cross_entropy(model(x), y)
        if not zero_grad_first:
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        clock.tick()


def ours_pass(model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable[Batch],
              clock: StepClock, *, grad_clip: float, augment: bool) -> None:
    device = torch.device("cpu")
    generator = torch.Generator().manual_seed(len(clock.steps)) if augment else None
    clock.start()
    train_one_epoch(model, batches, optimizer, nn.CrossEntropyLoss(), device=device,
                    precision=select_precision(device, amp=True), scaler=None,
                    generator=generator, grad_clip=grad_clip, channels_last=False,
                    on_step=clock.tick)


def bench_steps(args: argparse.Namespace, batches: list[Batch]) -> float:
    """Print ms/step per variant; returns the bare loop's images/s."""
    torch.manual_seed(0)
    model = create_model(ARCH, pretrained=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-4)
    variants: dict[str, Callable[[list[Batch], StepClock], None]] = {
        "bare loop": lambda b, c: bare_pass(model, optimizer, b, c),
        "bare, zero_grad first": lambda b, c: bare_pass(model, optimizer, b, c,
                                                        zero_grad_first=True),
        "ours (train_one_epoch)": lambda b, c: ours_pass(model, optimizer, b, c,
                                                         grad_clip=1.0, augment=False),
        "ours, grad_clip=0": lambda b, c: ours_pass(model, optimizer, b, c,
                                                    grad_clip=0.0, augment=False),
        "ours + augmentation": lambda b, c: ours_pass(model, optimizer, b, c,
                                                      grad_clip=1.0, augment=True),
    }
    for run in variants.values():  # warm-up: allocator, autograd graph, optimizer state
        run(batches[:2], StepClock())
    clocks = {name: StepClock() for name in variants}
    names = list(variants)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for k, name in enumerate(order):
            start = (r * len(names) + k) * args.steps
            chunk = [batches[(start + j) % len(batches)] for j in range(args.steps)]
            variants[name](chunk, clocks[name])

    print(f"\nStep: {ARCH}, batch {BATCH} x 1 x {IMG_SIZE} x {IMG_SIZE}, float32, Adam; "
          f"{args.rounds} interleaved rounds x {args.steps} steps per variant, median step")
    medians = {name: statistics.median(c.steps) for name, c in clocks.items()}
    bare = medians["bare loop"]
    for name, seconds in medians.items():
        steps = clocks[name].steps
        q1, q3 = np.percentile(steps, [25, 75])
        faults = statistics.median(clocks[name].faults)
        print(f"  {name:<23s}: {seconds * 1e3:6.1f} ms/step (IQR {q1 * 1e3:.0f}-"
              f"{q3 * 1e3:.0f}, n={len(steps)}) {seconds / bare:5.3f}x bare "
              f"{BATCH / seconds:5.1f} images/s {faults:6.0f} page faults/step")
    ratio = medians["ours (train_one_epoch)"] / bare
    print(f"  ours / bare = {ratio:5.3f}x  goal <= 1.05x: {'OK' if ratio <= 1.05 else 'MISSED'}")
    return BATCH / bare


def bench_loader(args: argparse.Namespace, root: Path, model_rate: float) -> None:
    cache, sources, labels = make_cache(root / "loader", IMG_SIZE, LOADER_ENTRIES, distinct=32)
    loader = DataLoader(CachedImageDataset(sources, labels, cache), batch_size=BATCH,
                        shuffle=True, generator=torch.Generator().manual_seed(0),
                        num_workers=2, persistent_workers=True)

    def epoch() -> float:
        start = time.perf_counter()
        seen = sum(batch[0].shape[0] for batch in loader)
        return seen / (time.perf_counter() - start)

    first = epoch()  # starts the workers
    rates = [epoch() for _ in range(args.epochs)]
    rate = statistics.median(rates)
    print(f"\nLoader: {LOADER_ENTRIES} cache entries of {IMG_SIZE} x {IMG_SIZE} uint16, "
          f"batch {BATCH}, num_workers=2 (persistent), median of {args.epochs} epochs")
    print(f"  loader        : {rate:8.0f} images/s   (first epoch, starting workers: "
          f"{first:.0f} images/s)")
    print(f"  model (bare)  : {model_rate:8.1f} images/s")
    ratio = rate / model_rate
    print(f"  loader / model = {ratio:6.1f}x  goal >= 3x: {'OK' if ratio >= 3 else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch intra-op threads (default: the cores)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4, help="steps per variant per round")
    parser.add_argument("--epochs", type=int, default=3, help="timed loader epochs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{os.cpu_count()} cores (load average {os.getloadavg()[0]:.2f} at start), "
          f"torch.set_num_threads({args.threads}) -> "
          f"{torch.get_num_threads()} threads; torch {torch.__version__}, timm "
          f"{timm.__version__}, python {platform.python_version()}, {platform.machine()}")
    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        n = BATCH * PRELOADED_BATCHES
        cache, sources, labels = make_cache(root / "steps", IMG_SIZE, n, distinct=n)
        loader = DataLoader(CachedImageDataset(sources, labels, cache), batch_size=BATCH)
        batches: list[Batch] = [tuple(b) for b in loader]  # type: ignore[misc]
        assert len(batches) == PRELOADED_BATCHES and batches[0][0].dtype == torch.uint16
        model_rate = bench_steps(args, batches)
        bench_loader(args, root, model_rate)


if __name__ == "__main__":
    main()
