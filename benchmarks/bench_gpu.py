"""Training, validation and embedding throughput on a CUDA GPU (skipped without one).

What train-density does on CUDA: EfficientNet-B0 (the default --arch) at
512 px, AMP (bfloat16 where supported) and channels_last, Adam, batch 64,
gradient clipping, augmentation on the GPU. In this one process:

* ceiling        - a bare AMP train step over one batch already on the GPU
                   (no loader, no augmentation, no bookkeeping): what the model
                   itself allows on this card;
* ceiling + sync - the same, reading the loss and probabilities back to the
                   host after every step (what our loop did before it kept them
                   on the device until the end of the pass);
* loader         - the DataLoader alone: CachedImageDataset over ``--entries``
                   cache entries, ``num_workers`` auto as on CUDA, pinned memory;
* ours           - ``train_one_epoch`` over that loader, with augmentation, as
                   train-density runs it; GPU utilisation sampled through NVML
                   every 50 ms while it runs;
* validation     - ``evaluate`` over the loader vs a bare AMP forward;
* embedding      - ``embed.extract`` (ResNet50, the embed default) over the
                   loader vs a bare AMP forward on a batch already on the GPU.

Goals: ours >= 700 training images/s on an H100, and the loader never the
bottleneck (ours >= 0.9x the ceiling, loader >= 1.5x ours).

Usage: python benchmarks/bench_gpu.py [--entries 2048] [--epochs 3]
       (``--device cpu --img-size 64 --entries 64`` runs the code paths on CPU.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from mammography.data.augment import normalize, to_float
from mammography.data.dataset import CachedImageDataset
from mammography.engine.device import loader_workers, select_device, select_precision
from mammography.engine.embed import extract
from mammography.engine.loop import _autocast, evaluate, train_one_epoch
from mammography.models.factory import create_backbone, create_model

from _fixtures import make_cache


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


def bench_training(args: argparse.Namespace, device: torch.device, loader: DataLoader,
                   x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    precision = select_precision(device, amp=True)
    torch.manual_seed(0)
    model = create_model(args.arch, pretrained=False).to(device, memory_format=layout(device))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cuda") if precision.use_scaler else None
    steps = len(loader)

    def bare(read_back: bool) -> Callable[[], int]:
        def run() -> int:
            model.train()
            for _ in range(steps):
                with _autocast(device, precision):
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

    def ours() -> int:
        generator = torch.Generator().manual_seed(0)
        out = train_one_epoch(model, loader, optimizer, torch.nn.CrossEntropyLoss(),
                              device=device, precision=precision, scaler=scaler,
                              generator=generator, grad_clip=1.0,
                              channels_last=device.type == "cuda")
        return len(out.labels)

    def ours_eval() -> int:
        out = evaluate(model, loader, torch.nn.CrossEntropyLoss(), device=device,
                       precision=precision, channels_last=device.type == "cuda")
        return len(out.labels)

    @torch.no_grad()
    def bare_eval() -> int:
        model.eval()
        for _ in range(steps):
            with _autocast(device, precision):
                model(x)
        return steps * x.shape[0]

    for fn in (bare(False), ours, ours_eval, bare_eval):  # warm-up: cuDNN autotuning, workers
        fn()
    rates = {"ceiling": timed(device, bare(False), args.epochs),
             "ceiling + sync": timed(device, bare(True), args.epochs)}
    with Utilisation(device) as util:
        rates["ours"] = timed(device, ours, args.epochs)
    rates["ours_util"] = util.describe()  # type: ignore[assignment]
    rates["val ceiling"] = timed(device, bare_eval, args.epochs)
    with Utilisation(device) as util:
        rates["ours val"] = timed(device, ours_eval, args.epochs)
    rates["ours_val_util"] = util.describe()  # type: ignore[assignment]
    return rates


def bench_embedding(args: argparse.Namespace, device: torch.device, loader: DataLoader,
                    x: torch.Tensor) -> tuple[float, float, str]:
    precision = select_precision(device, amp=True)
    channels_last = device.type == "cuda"
    backbone = create_backbone(args.embed_arch).to(device, memory_format=layout(device))
    backbone.eval()
    steps = len(loader)

    @torch.no_grad()
    def bare() -> int:
        for _ in range(steps):
            with _autocast(device, precision):
                backbone(x).float()
        return steps * x.shape[0]

    def ours() -> int:
        return len(extract(backbone, loader, device, precision, channels_last, progress=False))

    bare(), ours()
    bare_rate = timed(device, bare, args.epochs)
    with Utilisation(device) as util:
        ours_rate = timed(device, ours, args.epochs)
    return bare_rate, ours_rate, util.describe()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--arch", default="efficientnet_b0")
    parser.add_argument("--embed-arch", default="resnet50")
    parser.add_argument("--img-size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--entries", type=int, default=2048, help="cache entries per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="timed passes per variant")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: skipped (run it where a GPU is lent)")
        return 0
    device = select_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    workers = loader_workers(-1, device)
    with tempfile.TemporaryDirectory() as tmp:
        cache, sources, labels = make_cache(Path(tmp), args.img_size, args.entries, distinct=16)
        loader = DataLoader(CachedImageDataset(sources, labels, cache), batch_size=args.batch,
                            shuffle=True, drop_last=True, num_workers=workers,
                            pin_memory=device.type == "cuda", persistent_workers=workers > 0)
        images, y, *_ = next(iter(loader))
        x = normalize(to_float(images.to(device))).contiguous(memory_format=layout(device))
        y = y.to(device)
        loader_rate = timed(torch.device("cpu"),
                            lambda: sum(len(b[1]) for b in loader), args.epochs)
        train = bench_training(args, device, loader, x, y)
        embed_bare, embed_ours, embed_util = bench_embedding(args, device, loader, x)

    print(f"{name}; torch {torch.__version__}; {args.arch} at {args.img_size} px, batch "
          f"{args.batch}, {select_precision(device, amp=True).describe()}, channels_last "
          f"{device.type == 'cuda'}; {args.entries} cache entries, num_workers {workers}; "
          f"median of {args.epochs} passes")
    print(f"  loader alone          : {loader_rate:8.0f} images/s")
    for key in ("ceiling", "ceiling + sync", "ours"):
        print(f"  train {key:<16}: {train[key]:8.0f} images/s")
    print(f"    ours: {train['ours_util']}")
    for key in ("val ceiling", "ours val"):
        print(f"  {key:<22}: {train[key]:8.0f} images/s")
    print(f"    ours val: {train['ours_val_util']}")
    print(f"  embed {args.embed_arch} bare    : {embed_bare:8.0f} images/s")
    print(f"  embed {args.embed_arch} ours    : {embed_ours:8.0f} images/s ({embed_util})")
    ours = train["ours"]
    checks = {
        "train images/s >= 700": ours >= 700,
        "ours / ceiling >= 0.9": ours / train["ceiling"] >= 0.9,
        "loader / ours >= 1.5": loader_rate / ours >= 1.5,
        "embed bare / ours time <= 1.1": embed_bare / embed_ours <= 1.1,
    }
    print(f"  ours/ceiling {ours / train['ceiling']:.3f}x, ceiling+sync/ceiling "
          f"{train['ceiling + sync'] / train['ceiling']:.3f}x, val ours/ceiling "
          f"{train['ours val'] / train['val ceiling']:.3f}x, loader/ours "
          f"{loader_rate / ours:.2f}x, embed ours/bare {embed_ours / embed_bare:.3f}x")
    for check, ok in checks.items():
        print(f"  goal {check}: {'OK' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
