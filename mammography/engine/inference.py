"""The one inference loop: batches through a model without gradients, outputs kept on the device.

Validation during training (``loop.evaluate``), ``eval-export``, ``embed`` and
``predict`` all run their images through :func:`forward_batches`, so they
share its device handling: the next batch's host-to-device copy overlaps the
current one on CUDA (``staged_batches``), autocast when mixed precision is on,
channels-last memory on CUDA, and no host synchronisation per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from mammography.engine.batches import autocast, fused_input, prepare_batch, staged_batches
from mammography.engine.device import Precision

#: ``forward(x, embedding)``: the model call (the embedding is None without fusion).
Forward = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]


@torch.no_grad()
def forward_batches(forward: Forward, loader: Iterable, *, device: torch.device,
                    precision: Precision, channels_last: bool,
                    flip: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor,
                                                          torch.Tensor, torch.Tensor]]:
    """``(outputs, y on the device, targets, rows)`` per batch, outputs left on the device.

    ``flip=True`` runs the batch upside down (the vertical flip the training
    augmentation uses), for test-time augmentation.
    """
    for images, y, targets, rows, embeddings in staged_batches(loader, device):
        x = prepare_batch(images, device, channels_last=channels_last)
        if flip:
            x = x.flip(-2)
        with autocast(device, precision):
            outputs = forward(x, fused_input(embeddings, device))
        yield outputs, y, targets, rows


def model_forward(model: torch.nn.Module) -> Forward:
    """``forward`` of a density model (eval mode)."""
    model.eval()
    return lambda x, embedding: model(x, embedding)


def backbone_forward(backbone: torch.nn.Module) -> Forward:
    """``forward`` of a bare backbone: pooled features, the embedding ignored."""
    backbone.eval()
    return lambda x, embedding: backbone(x)


@torch.no_grad()
def predict_probabilities(model: torch.nn.Module, loader: Iterable, *, device: torch.device,
                          precision: Precision, channels_last: bool, tta: bool = False,
                          on_batch: Callable[[], None] | None = None
                          ) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities N x 4 as float32, dataset rows) in loader order.

    With ``tta`` each image is also scored upside down and the two probability
    vectors are averaged.
    """
    forward = model_forward(model)
    passes = [False, True] if tta else [False]
    per_pass, rows = [], None
    for flip in passes:
        probs, seen = [], []
        for logits, _y, _targets, batch_rows in forward_batches(
                forward, loader, device=device, precision=precision,
                channels_last=channels_last, flip=flip):
            probs.append(torch.softmax(logits.float(), dim=1))
            seen.append(batch_rows.numpy())
            if on_batch is not None:
                on_batch()
        per_pass.append(torch.cat(probs) if probs else torch.zeros(0, 4))
        rows = np.concatenate(seen) if seen else np.zeros(0, dtype=np.int64)
    mean = torch.stack(per_pass).mean(dim=0) if len(per_pass) > 1 else per_pass[0]
    return mean.cpu().numpy().astype(np.float32), rows.astype(np.int64)


@torch.no_grad()
def extract_features(backbone: torch.nn.Module, loader: Iterable, *, device: torch.device,
                     precision: Precision, channels_last: bool,
                     on_batch: Callable[[], None] | None = None) -> np.ndarray:
    """Pooled features of every image, in loader order (float32)."""
    parts = []
    for pooled, *_ in forward_batches(backbone_forward(backbone), loader, device=device,
                                      precision=precision, channels_last=channels_last):
        parts.append(pooled.float())  # stays on the device: no per-batch host sync
        if on_batch is not None:
            on_batch()
    if not parts:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(parts).cpu().numpy().astype(np.float32, copy=False)
