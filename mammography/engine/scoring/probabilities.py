"""Every model over the same images, averaged per image: the probabilities of a scoring call.

A checkpoint runs through the one inference loop (``model.py`` →
``inference.predict_probabilities``: staged copies, autocast and
channels-last on CUDA, the vertical-flip TTA); an ONNX model through
onnxruntime (``onnx.py``). Both read the decode-once cache of their own
preprocessing (``caches.py``). The probability of an image is the mean of
its models' probabilities (a single model: its own).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mammography.data.cache import ImageCache
from mammography.data.dataset import CachedImageDataset
from mammography.data.loading import make_loader
from mammography.data.table.records import LabelTable
from mammography.engine.scoring.caches import ImagesToScore
from mammography.engine.scoring.model import model_probabilities
from mammography.engine.scoring.onnx import onnx_probabilities
from mammography.engine.scoring.sources import ScoredModel, ScoringSettings, embeddings_for
from mammography.record.progress import progress_bar
from mammography.record.reporter import Reporter


@dataclass
class Scored:
    probs: np.ndarray  # N x 4 in table order: the mean over the models
    per_member: list[np.ndarray]  # each model's N x 4, in the order given
    seconds: float  # wall time of scoring, every model and pass included

    @property
    def images_per_second(self) -> float:
        return len(self.probs) / self.seconds if self.seconds > 0 else 0.0


def member_probabilities(model: ScoredModel, table: LabelTable, cache: ImageCache, *,
                         batch_size: int, num_workers: int, device: torch.device, amp: bool,
                         tta: bool, out: Reporter,
                         on_batch: Callable[[], None] | None = None) -> np.ndarray:
    """One model's probabilities (N x 4, float32) for the images of ``table``, in order.

    A torch model goes back to the CPU afterwards: the next model gets the
    device memory, and eval-export exports the very module it scored.
    """
    embeddings = embeddings_for(model.payload, table, out) if model.embedding_dim else None
    if model.kind == "onnx":
        paths = [r.path for r in table.images]
        dataset = CachedImageDataset(paths, [0] * len(paths), cache, embeddings)
        loader = make_loader(dataset, batch_size=batch_size, device=torch.device("cpu"),
                             num_workers=num_workers)
        return onnx_probabilities(model.model, loader, normalization=model.normalization,
                                  tta=tta, on_batch=on_batch)
    probs = model_probabilities(model.model, table, cache, batch_size=batch_size,
                                num_workers=num_workers, device=device, amp=amp,
                                embeddings=embeddings, tta=tta, on_batch=on_batch)
    # Back on the CPU in the layout it was loaded with (channels-last is for CUDA only).
    model.model.to("cpu", memory_format=torch.contiguous_format)
    return probs


def score_images(models: Sequence[ScoredModel], images: ImagesToScore,
                 settings: ScoringSettings, *, device: torch.device, out: Reporter,
                 tta: bool = False, progress: bool = True) -> Scored:
    """Every model over the images ``prepare_images`` made ready; the mean per image."""
    return score_members(models, images.table, images.caches, batch_size=settings.batch_size,
                         num_workers=settings.num_workers, device=device, amp=settings.amp,
                         tta=tta, out=out, progress=progress)


def score_members(models: Sequence[ScoredModel], table: LabelTable,
                  caches: dict[str, ImageCache], *, batch_size: int, num_workers: int,
                  device: torch.device, amp: bool, tta: bool, out: Reporter,
                  progress: bool = True) -> Scored:
    """Every model over the images of ``table``, each from ``caches[its preprocessing]``."""
    passes = 2 if tta else 1
    batches = math.ceil(len(table.images) / batch_size) * passes * len(models)
    label = (f"Scoring {len(table.images)} images with {len(models)} "
             f"model{'s' if len(models) > 1 else ''}{' (TTA)' if tta else ''}")
    per_member = []
    started = time.perf_counter()
    with progress_bar(batches, label, enabled=progress, unit="batches") as advance:
        for model in models:
            per_member.append(member_probabilities(
                model, table, caches[model.preprocess.key()], batch_size=batch_size,
                num_workers=num_workers, device=device, amp=amp, tta=tta, out=out,
                on_batch=advance))
    return ensemble_of(per_member, time.perf_counter() - started)


def ensemble_of(per_member: list[np.ndarray], seconds: float) -> Scored:
    """The mean of the members' probabilities per image (one machine or a cluster's)."""
    ensemble = np.mean(np.stack(per_member), axis=0).astype(np.float32)
    return Scored(ensemble, per_member, seconds)
