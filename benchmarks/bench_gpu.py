"""Training, validation and embedding throughput on a CUDA GPU (skipped without one).

What train-density does on CUDA: EfficientNet-B0 (the default --arch) at
512 px, AMP (bfloat16 where supported) and channels_last, Adam, batch 64,
gradient clipping, augmentation on the GPU. In this one process, over
``--entries`` real cache entries:

* loader alone    - images/s the DataLoader hands over (pinned) with 4, 8 and
                    16 worker processes;
* ceiling         - a bare AMP train step over one batch already on the GPU
                    (no loader, no augmentation, no bookkeeping): what the model
                    itself allows on this card;
* ceiling + sync  - the same, reading the loss and probabilities back to the
                    host after every step (what our loop did before it kept
                    them on the device until the end of the pass);
* host batches    - ``train_one_epoch`` / ``evaluate`` / ``embed.extract`` over
                    pinned batches already in memory: our loops alone;
* auto            - the same through the DataLoader ``--num-workers`` auto
                    gives on CUDA; GPU utilisation sampled through NVML every
                    50 ms;
* bare, host batches - a bare timm forward over the same host batches (the
                    embedding baseline);
* busy            - training through a loader of ``--busy-workers`` (16) worker
                    processes, GPU utilisation sampled: the loader must keep the
                    GPU >= 90 % busy.

``--img-size 1024x512`` measures the recommended density input (the breast fills a
2:1 input). Goals: >= 700 training images/s on an H100 at 512 px; the loader never the bottleneck
in training (through the loader >= 0.95x over host batches); embedding
extraction time <= 1.1x the bare forward.

Usage: python benchmarks/bench_gpu.py [--entries 2048] [--epochs 3]
       (``--device cpu --img-size 64 --entries 64`` runs the code paths on CPU.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F

from mammography.data.augment import normalize, to_float
from mammography.data.dataset import CachedImageDataset
from mammography.data.loading import describe_loader, make_loader
from mammography.engine.batches import autocast
from mammography.engine.device import select_device, select_precision
from mammography.engine.embed import extract
from mammography.engine.train.loop import evaluate, train_one_epoch
from mammography.models.factory import create_backbone, create_model

from _fixtures import make_cache

Batch = tuple[torch.Tensor, ...]  # images, labels, rows, embeddings


class Utilisation:
    """GPU utilisation (%) sampled through NVML on a background thread; None without NVML."""

    def __init__(self, device: torch.device) -> None:
        self.samples: list[int] = []
        self.handle = None
        if device.type != "cuda":
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
            self.read = lambda: pynvml.nvmlDeviceGetUtilizationRates(self.handle).gpu
        except Exception:  # no NVML binding or driver library: report n/a
            self.handle = None

    def __enter__(self) -> Utilisation:
        self.samples, self.stop = [], threading.Event()
        if self.handle is not None:
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.stop.wait(0.05):
            self.samples.append(self.read())

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.handle is not None:
            self.thread.join()

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None

    def describe(self) -> str:
        if not self.samples:
            return "GPU utilisation n/a"
        return (f"GPU utilisation mean {statistics.mean(self.samples):.0f} % "
                f"(min {min(self.samples)} %, {len(self.samples)} samples)")


def layout(device: torch.device) -> torch.memory_format:
    """channels_last on CUDA, as train-density and embed use there."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[[], int], repeats: int) -> float:
    """Median images/s of ``repeats`` calls of ``fn`` (which returns the images it did)."""
    rates = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        n = fn()
        sync(device)
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


class Results:
    """images/s per variant, with GPU utilisation where it was sampled."""

    def __init__(self, device: torch.device, repeats: int) -> None:
        self.device, self.repeats = device, repeats
        self.rates: dict[str, float] = {}
        self.notes: dict[str, str] = {}
        self.busy: dict[str, float | None] = {}  # mean GPU utilisation where sampled

    def measure(self, name: str, fn: Callable[[], int], utilisation: bool = False) -> None:
        fn()  # warm-up: cuDNN autotuning, allocator, loader workers
        with Utilisation(self.device) as util:
            self.rates[name] = timed(self.device, fn, self.repeats)
        if utilisation:
            self.notes[name] = util.describe()
            self.busy[name] = util.mean

    def show(self) -> None:
        for name, rate in self.rates.items():
            note = f"   ({self.notes[name]})" if name in self.notes else ""
            print(f"  {name:<48}: {rate:8.0f} images/s{note}")


def bench_training(res: Results, args: argparse.Namespace, loader: Iterable[Batch],
                   host: list[Batch], x: torch.Tensor, y: torch.Tensor) -> None:
    device = res.device
    precision = select_precision(device, amp=True)
    torch.manual_seed(0)
    model = create_model(args.arch, pretrained=False).to(device, memory_format=layout(device))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cuda") if precision.use_scaler else None
    criterion = torch.nn.CrossEntropyLoss()
    steps = len(host)

    def bare(read_back: bool) -> Callable[[], int]:
        def run() -> int:
            model.train()
            for _ in range(steps):
                with autocast(device, precision):
                    logits = model(x)
                    loss = F.cross_entropy(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if read_back:
                    float(loss.detach())
                    torch.softmax(logits.detach().float(), 1).cpu()
            return steps * x.shape[0]
        return run

    def ours(batches: Iterable[Batch]) -> Callable[[], int]:
        def run() -> int:
            out = train_one_epoch(model, batches, optimizer, criterion, device=device,
                                  precision=precision, scaler=scaler,
                                  generator=torch.Generator().manual_seed(0), grad_clip=1.0,
                                  channels_last=device.type == "cuda")
            return len(out.labels)
        return run

    def ours_eval(batches: Iterable[Batch]) -> Callable[[], int]:
        def run() -> int:
            out = evaluate(model, batches, criterion, device=device, precision=precision,
                           channels_last=device.type == "cuda")
            return len(out.labels)
        return run

    @torch.no_grad()
    def bare_eval() -> int:
        model.eval()
        for _ in range(steps):
            with autocast(device, precision):
                model(x)
        return steps * x.shape[0]

    res.measure("train ceiling (batch on GPU)", bare(False))
    res.measure("train ceiling + host sync per step", bare(True))
    res.measure("train ours, host batches", ours(host), utilisation=True)
    res.measure("train ours, auto loader", ours(loader), utilisation=True)
    res.measure("val ceiling (batch on GPU)", bare_eval)
    res.measure("val ours, host batches", ours_eval(host), utilisation=True)
    res.measure("val ours, auto loader", ours_eval(loader), utilisation=True)


def bench_embedding(res: Results, args: argparse.Namespace, loader: Iterable[Batch],
                    host: list[Batch], x: torch.Tensor) -> None:
    device = res.device
    precision = select_precision(device, amp=True)
    channels_last = device.type == "cuda"
    backbone = create_backbone(args.embed_arch).to(device, memory_format=layout(device))
    backbone.eval()

    @torch.no_grad()
    def bare_resident() -> int:
        for _ in range(len(host)):
            with autocast(device, precision):
                backbone(x).float()
        return len(host) * x.shape[0]

    @torch.no_grad()
    def bare_host() -> int:  # the bare forward over the same cached batches (issue's baseline)
        parts = []
        for images, *_ in host:
            xb = normalize(to_float(images.to(device, non_blocking=True)))
            with autocast(device, precision):
                parts.append(backbone(xb.contiguous(memory_format=layout(device))).float())
        return len(torch.cat(parts).cpu())

    def ours(batches: Iterable[Batch]) -> Callable[[], int]:
        return lambda: len(extract(backbone, batches, device, precision, channels_last,
                                   progress=False))

    res.measure("embed ceiling (batch on GPU)", bare_resident)
    res.measure("embed bare, host batches", bare_host)
    res.measure("embed ours, host batches", ours(host), utilisation=True)
    res.measure("embed ours, auto loader", ours(loader), utilisation=True)


def bench_busy(res: Results, args: argparse.Namespace, loader: Iterable[Batch]) -> float | None:
    """Training through ``loader`` (AMP, channels_last) with the GPU's utilisation sampled:
    the mean utilisation (None without NVML)."""
    device = res.device
    precision = select_precision(device, amp=True)
    model = create_model(args.arch, pretrained=False).to(device, memory_format=layout(device))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda") if precision.use_scaler else None
    criterion = torch.nn.CrossEntropyLoss()

    def run() -> int:
        out = train_one_epoch(model, loader, optimizer, criterion, device=device,
                              precision=precision, scaler=scaler,
                              generator=torch.Generator().manual_seed(0), grad_clip=1.0,
                              channels_last=device.type == "cuda")
        return len(out.labels)
    name = f"train ours, {args.busy_workers} loader workers (busy goal)"
    res.measure(name, run, utilisation=True)
    return res.busy.get(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--arch", default="efficientnet_b0")
    parser.add_argument("--embed-arch", default="resnet50")
    parser.add_argument("--img-size", default="512", help="512 or HxW such as 1024x512")
    parser.add_argument("--busy-workers", type=int, default=16,
                        help="loader worker processes of the GPU-busy goal (0: skip it)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--entries", type=int, default=2048, help="cache entries per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="timed passes per variant")
    parser.add_argument("--sweep", default="4,8,16",
                        help="worker-process counts to time the loader alone with")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: skipped (run it where a GPU is lent)")
        return 0
    device = select_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    res = Results(device, args.epochs)
    cpu = Results(torch.device("cpu"), args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        cache, sources, labels = make_cache(Path(tmp), args.img_size, args.entries, distinct=16)
        dataset = CachedImageDataset(sources, labels, cache)
        for n in sorted(set(map(int, args.sweep.split(",")))):
            sweep = make_loader(dataset, batch_size=args.batch, device=device, num_workers=n,
                                drop_last=True)
            cpu.measure(f"loader alone, {n} worker processes",
                        lambda sweep=sweep: sum(len(b[1]) for b in sweep))
            del sweep
        loader = make_loader(dataset, batch_size=args.batch, device=device, num_workers=-1,
                             drop_last=True)  # what --num-workers auto uses on this device
        host: list[Batch] = [tuple(b) for b in loader]  # pinned, as the loader hands them over
        x = normalize(to_float(host[0][0].to(device))).contiguous(memory_format=layout(device))
        y = host[0][1].to(device)
        bench_training(res, args, loader, host, x, y)
        bench_embedding(res, args, loader, host, x)
        busy = None
        if args.busy_workers:
            busy_loader = make_loader(dataset, batch_size=args.batch, device=device,
                                      num_workers=args.busy_workers, drop_last=True)
            busy = bench_busy(res, args, busy_loader)

    print(f"{name}; torch {torch.__version__}; {args.arch} at {args.img_size} px, batch "
          f"{args.batch}, {select_precision(device, amp=True).describe()}, channels_last "
          f"{device.type == 'cuda'}; {args.entries} cache entries, {os.cpu_count()} cores, "
          f"auto loader: {describe_loader(-1, device)}; embedding {args.embed_arch}; "
          f"median of {args.epochs} passes")
    cpu.show()
    res.show()
    r = res.rates
    ours = r["train ours, auto loader"]
    ratios = {
        "train: loader / host batches": ours / r["train ours, host batches"],
        "train: ours / ceiling": ours / r["train ceiling (batch on GPU)"],
        "train: host sync per step / ceiling": r["train ceiling + host sync per step"]
        / r["train ceiling (batch on GPU)"],
        "val: loader / host batches": r["val ours, auto loader"] / r["val ours, host batches"],
        "val: host batches / ceiling": r["val ours, host batches"]
        / r["val ceiling (batch on GPU)"],
        "embed: ours / bare time, host batches": r["embed bare, host batches"]
        / r["embed ours, host batches"],
        "embed: loader / host batches": r["embed ours, auto loader"]
        / r["embed ours, host batches"],
    }
    for label, ratio in ratios.items():
        print(f"  {label:<38}: {ratio:.3f}x")
    goals = {
        "train >= 700 images/s": ours >= 700,
        "loader never the bottleneck in training (>= 0.95x host batches)":
            ratios["train: loader / host batches"] >= 0.95,
        "embed extract time <= 1.1x bare forward":
            ratios["embed: ours / bare time, host batches"] <= 1.1,
    }
    if busy is not None:
        goals[f"GPU >= 90 % busy training through {args.busy_workers} loader workers "
              f"(mean {busy:.0f} %)"] = busy >= 90
    for goal, ok in goals.items():
        print(f"  goal {goal}: {'OK' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
