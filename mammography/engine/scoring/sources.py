"""What the scoring path takes: loaded models with their preprocessing, and its settings.

A model to score (``ScoredModel``) is any object that says how it was
trained to see images - its preprocessing and normalisation - and holds the
loaded model: predict's members (``predict/members.Member``, checkpoints or
ONNX sessions) and eval-export's checkpoints (the same ``Member``, one per
run) both are. The settings (``ScoringSettings``) are the option groups the
two commands share (``config/data.py``: cache, loader, inference batch size,
bad-image policy), so their configs are passed as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mammography.errors import InputError
from mammography.record.contract import FEATURES_FILE
from mammography.record.reporter import Reporter

if TYPE_CHECKING:
    import numpy as np

    from mammography.data.preprocess import PreprocessSettings
    from mammography.data.table.records import LabelTable


class ScoredModel(Protocol):
    """A loaded model and how it sees images."""

    label: str
    kind: str  # "checkpoint" (a torch module) or "onnx" (an onnxruntime session)
    preprocess: PreprocessSettings
    normalization: dict[str, float]
    embedding_dim: int  # > 0: a fusion model, fed each image's embedding
    model: Any
    payload: dict[str, Any] | None  # the checkpoint's payload (fusion: its embedding run)


class ScoringSettings(Protocol):
    """The options of eval-export and predict the scoring path reads."""

    cache: str  # "disk", "memory" or "off"
    cache_dir: Path | None
    workers: int  # processes decoding images into the cache
    batch_size: int
    num_workers: int  # DataLoader workers
    amp: bool
    on_bad_image: str  # "skip" or "error"
    max_bad_fraction: float


def embeddings_for(payload: dict[str, Any] | None, table: LabelTable,
                   out: Reporter) -> np.ndarray | None:
    """The fused embeddings a checkpoint needs for ``table`` (None without fusion)."""
    if not payload or not int(payload.get("embedding_dim", 0)):
        return None
    from mammography.engine.fusion import align, load_embedding_run

    source = payload.get("embeddings_run_dir")
    if not source or not Path(source, FEATURES_FILE).is_file():
        raise InputError("This model fuses embeddings, but its embedding run "
                         f"({source}) is not reachable; it is needed to score images.")
    out.log(f"Loading embeddings from {source}")
    return align(load_embedding_run(Path(source), out), [r.path for r in table.images],
                 table.dicom_root)
