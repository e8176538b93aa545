"""Throughput of `mammography predict`'s scoring vs the bare model forward on the same batches.

Over a disk cache of real preprocessed synthetic mammograms (``_fixtures``):
(a) bare: the batches already in memory, float conversion, normalisation,
``model(x)`` and softmax under ``no_grad``; (b) predict:
``scoring.probabilities.score_members`` with one checkpoint member - it reads the
disk cache through the DataLoader, stages batches, runs the one inference
loop, reorders and averages; (c) the same with ``--tta`` (two passes, so
about 2x); (d) the ONNX path (``--model``: onnxruntime on the same cache),
when onnx and onnxruntime are installed; (e) reading the cache and batching
alone, the part predict adds to the forward.

This machine is shared and noisy (a neighbour's load moves one call by
+-50 %), so every case is timed right next to a bare forward, in alternating
order, and the median of the per-pair ratios is reported. Immune to noise
altogether, predict's own time is also compared with the time its model
spent in ``forward`` during the same calls (a timing wrapper around the
model): everything else - cache reads, batching, conversion, normalisation,
softmax, reordering - counts as predict's cost.
Goal: predict <= 1.1x the bare forward's time.
"""

from __future__ import annotations

import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mammography.data.augment import GRAY_MEAN, GRAY_STD, normalize, to_float
from mammography.data.dataset import CachedImageDataset
from mammography.data.loading import make_loader
from mammography.data.table.records import ImageRecord, LabelTable
from mammography.engine.predict.members import Member
from mammography.engine.scoring.probabilities import score_members
from mammography.models.factory import create_model
from mammography.record.reporter import CollectingReporter

from _fixtures import make_cache

ARCH, IMG, BATCH, IMAGES, REPEATS = "efficientnet_b0", 128, 32, 64, 7
GOAL = 1.1


class TimedForward(torch.nn.Module):
    """The model, with the seconds spent inside its forward added up."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.embedding_dim = 0
        self.seconds = 0.0

    def forward(self, x: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        start = time.perf_counter()
        logits = self.model(x, embedding)
        self.seconds += time.perf_counter() - start
        return logits


def _member(kind: str, model: object, cache, path: Path) -> Member:
    return Member(label=kind, kind=kind, file=path, preprocess=cache.settings,
                  normalization={"mean": GRAY_MEAN, "std": GRAY_STD}, arch=ARCH,
                  embedding_dim=0, model=model)


def _onnx_member(model: torch.nn.Module, cache, folder: Path) -> Member | None:
    if not all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime")):
        return None
    import contextlib
    import io

    from mammography.engine.export import export_onnx
    from mammography.engine.predict.onnx import open_session

    path = folder / "model.onnx"
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress notes
        export_onnx(model, cache.settings.shape, path)
    session, _providers = open_session(path, torch.device("cpu"))
    return _member("onnx", session, cache, path)


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cache, sources, _labels = make_cache(root, IMG, IMAGES, distinct=16)
        model = create_model(ARCH, pretrained=False).eval()
        timed = TimedForward(model).eval()
        table = LabelTable([ImageRecord(path=s, accession=f"E{i // 4}", patient=f"P{i // 8}",
                                        view="CC", laterality="L", label=None, row=i + 2)
                            for i, s in enumerate(sources)], [], None, root / "src", "folder", 0)
        batches = [torch.stack([torch.from_numpy(cache.load(s).copy())[None]
                                for s in sources[i:i + BATCH]])
                   for i in range(0, IMAGES, BATCH)]
        checkpoint = _member("checkpoint", timed, cache, root / "best_model.pt")
        onnx = _onnx_member(model, cache, root)
        caches = {cache.settings.key(): cache}
        quiet = CollectingReporter()

        @torch.no_grad()
        def bare() -> None:
            for images in batches:
                torch.softmax(model(normalize(to_float(images))), dim=1).numpy()

        def predict(member: Member, tta: bool = False):
            return lambda: score_members([member], table, caches, batch_size=BATCH,
                                         num_workers=0, device=torch.device("cpu"), amp=False,
                                         tta=tta, out=quiet, progress=False)

        def read_only() -> None:
            dataset = CachedImageDataset(sources, [0] * len(sources), cache)
            for _batch in make_loader(dataset, batch_size=BATCH, device=torch.device("cpu"),
                                      num_workers=0):
                pass

        cases = {"predict": predict(checkpoint), "predict --tta": predict(checkpoint, tta=True),
                 "read cache only": read_only}
        if onnx is not None:
            cases["predict --model onnx"] = predict(onnx)
        bare()
        for fn in cases.values():  # warm-up
            fn()
        times: dict[str, list[float]] = {"bare": [], **{name: [] for name in cases}}
        ratios: dict[str, list[float]] = {name: [] for name in cases}
        inside: list[float] = []  # predict's seconds inside the model's forward, per call
        for repeat in range(REPEATS):
            for name, fn in cases.items():
                # Each case right next to a bare forward (in alternating order), so both
                # see the same load from the machine's other users; the ratio per pair.
                pair = {}
                for which in (("bare", name) if repeat % 2 == 0 else (name, "bare")):
                    # onnxruntime's threads spin-wait a while after a run: let them settle
                    time.sleep(0.3)
                    timed.seconds = 0.0
                    start = time.perf_counter()
                    (bare if which == "bare" else fn)()
                    pair[which] = time.perf_counter() - start
                    if which == "predict":
                        inside.append(timed.seconds)
                times["bare"].append(pair["bare"])
                times[name].append(pair[name])
                ratios[name].append(pair[name] / pair["bare"])
    median = {name: statistics.median(values) for name, values in times.items()}
    ratio = {name: statistics.median(values) for name, values in ratios.items()}
    own = statistics.median(t / f for t, f in zip(times["predict"], inside, strict=True))
    print(f"{ARCH} at {IMG}x{IMG}, batch {BATCH}, {IMAGES} cached images, CPU, "
          f"{torch.get_num_threads()} threads; medians of {REPEATS} pairs (case, bare forward)")
    print(f"{'bare forward':<21}: {IMAGES / median['bare']:8.1f} images/s")
    for name in cases:
        print(f"{name:<21}: {IMAGES / median[name]:8.1f} images/s  {ratio[name]:.3f}x the bare "
              f"forward's time (range {min(ratios[name]):.2f}-{max(ratios[name]):.2f})")
    print(f"predict / its own model forward (same calls, noise-free): {own:.3f}x")
    verdict = "OK" if ratio["predict"] <= GOAL else "MISSED"
    print(f"goal predict <= {GOAL}x the bare forward: {verdict} ({ratio['predict']:.3f}x)")
    if onnx is None:
        print("(onnx/onnxruntime not installed: the --model path was not measured)")


if __name__ == "__main__":
    main()
