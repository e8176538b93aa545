"""A trained model's probabilities for the images of a label table.

The model is run through the one inference loop (``inference.py``: staged
copies, autocast and channels-last on CUDA); a model that fuses embeddings
gets them from the embedding run its checkpoint names. Shared by eval-export
and predict.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mammography.data.cache import ImageCache
from mammography.data.dataset import CachedImageDataset
from mammography.data.loading import make_loader
from mammography.data.table.records import LabelTable
from mammography.engine.device import select_precision
from mammography.engine.inference import predict_probabilities
from mammography.errors import InputError
from mammography.record.contract import FEATURES_FILE
from mammography.record.reporter import Reporter


def score_table(model: torch.nn.Module, table: LabelTable, cache: ImageCache, *,
                batch_size: int, num_workers: int, device: torch.device, amp: bool,
                embeddings: np.ndarray | None = None, tta: bool = False,
                on_batch: Callable[[], None] | None = None) -> np.ndarray:
    """Probabilities of every image of ``table`` (N x 4), in table order; ``on_batch``
    is called after each batch (a progress bar)."""
    labels = [r.class_index if r.label else 0 for r in table.images]
    dataset = CachedImageDataset([r.path for r in table.images], labels, cache, embeddings)
    loader = make_loader(dataset, batch_size=batch_size, device=device,
                         num_workers=num_workers)
    channels_last = device.type == "cuda"
    model.to(device, memory_format=torch.channels_last if channels_last
             else torch.contiguous_format)
    probs, rows = predict_probabilities(model, loader, device=device,
                                        precision=select_precision(device, amp),
                                        channels_last=channels_last, tta=tta,
                                        on_batch=on_batch)
    return probs[np.argsort(rows)]


def embeddings_for(payload: dict[str, Any], table: LabelTable,
                   out: Reporter) -> np.ndarray | None:
    """The fused embeddings a checkpoint needs for ``table`` (None without fusion)."""
    if not int(payload.get("embedding_dim", 0)):
        return None
    from mammography.engine.fusion import align, load_embedding_run

    source = payload.get("embeddings_run_dir")
    if not source or not Path(source, FEATURES_FILE).is_file():
        raise InputError("This model fuses embeddings, but its embedding run "
                         f"({source}) is not reachable; it is needed to score images.")
    out.log(f"Loading embeddings from {source}")
    return align(load_embedding_run(Path(source), out), [r.path for r in table.images],
                 table.dicom_root)
