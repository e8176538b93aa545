"""Scoring the ensemble: every member over the same images, averaged per image.

A checkpoint member runs through the one inference loop (``scoring.score_table``
→ ``inference.predict_probabilities``: staged copies, autocast and
channels-last on CUDA, the vertical-flip TTA); an ONNX member through
onnxruntime (``onnx_scoring.py``). Both read the decode-once cache of their
own preprocessing. The ensemble's probability of an image is the mean of its
members' probabilities.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from mammography.data.cache import ImageCache
from mammography.data.dataset import CachedImageDataset
from mammography.data.loading import make_loader
from mammography.data.table.records import LabelTable
from mammography.engine.predict.members import Member
from mammography.engine.predict.onnx import onnx_probabilities
from mammography.engine.scoring import embeddings_for, score_table
from mammography.record.progress import progress_bar
from mammography.record.reporter import Reporter


@dataclass
class Scored:
    probs: np.ndarray  # the ensemble: N x 4, the mean over members
    per_member: list[np.ndarray]
    seconds: float  # wall time of scoring, every member and pass included

    @property
    def images_per_second(self) -> float:
        return len(self.probs) / self.seconds if self.seconds > 0 else 0.0


def member_probabilities(member: Member, table: LabelTable, cache: ImageCache, *,
                         batch_size: int, num_workers: int, device: torch.device, amp: bool,
                         tta: bool, out: Reporter, on_batch=None) -> np.ndarray:
    """One member's probabilities (N x 4, float32) for the images of ``table``, in order."""
    embeddings = embeddings_for(member.payload, table, out) if member.embedding_dim else None
    if member.kind == "onnx":
        paths = [r.path for r in table.images]
        dataset = CachedImageDataset(paths, [0] * len(paths), cache, embeddings)
        loader = make_loader(dataset, batch_size=batch_size, device=torch.device("cpu"),
                             num_workers=num_workers)
        return onnx_probabilities(member.model, loader, normalization=member.normalization,
                                  tta=tta, on_batch=on_batch)
    probs = score_table(member.model, table, cache, batch_size=batch_size,
                        num_workers=num_workers, device=device, amp=amp,
                        embeddings=embeddings, tta=tta, on_batch=on_batch)
    member.model.cpu()  # the next member gets the device memory
    return probs


def score_members(members: list[Member], table: LabelTable, caches: dict[str, ImageCache], *,
                  batch_size: int, num_workers: int, device: torch.device, amp: bool,
                  tta: bool, out: Reporter, progress: bool = True) -> Scored:
    """Every member over the images of ``table``; the mean is the ensemble's prediction."""
    passes = 2 if tta else 1
    batches = math.ceil(len(table.images) / batch_size) * passes * len(members)
    label = (f"Scoring {len(table.images)} images with {len(members)} "
             f"model{'s' if len(members) > 1 else ''}{' (TTA)' if tta else ''}")
    per_member = []
    started = time.perf_counter()
    with progress_bar(batches, label, enabled=progress, unit="batches") as advance:
        for member in members:
            per_member.append(member_probabilities(
                member, table, caches[member.preprocess.key()], batch_size=batch_size,
                num_workers=num_workers, device=device, amp=amp, tta=tta, out=out,
                on_batch=advance))
    seconds = time.perf_counter() - started
    ensemble = np.mean(np.stack(per_member), axis=0).astype(np.float32)
    return Scored(ensemble, per_member, seconds)
