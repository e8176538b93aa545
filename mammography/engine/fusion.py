"""Embedding fusion: find an embedding run and line its vectors up with a dataset.

``train-density --embeddings-dir DIR`` concatenates each image's precomputed
embedding (from `mammography embed`) with the CNN's pooled features. DIR is
an embedding run (``results_N``) or a folder of them, in which case the
latest completed one is used and named in the log. Images are matched by
absolute path, falling back to the path relative to the DICOM root (so a
dataset that moved still matches); any image without an embedding stops the
run before training with a message saying what to re-run. ``features.npy``
and ``metadata.csv`` are read once, verified against the sha256 the embedding
run recorded when it wrote them (``record/digests.py``): features copied in from
another run are refused, naming the file and both digests.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mammography.errors import DataError
from mammography.record.contract import FEATURES_FILE, METADATA_FILE, RUN_DIR_RE, is_run_dir
from mammography.record.digests import read_verified
from mammography.record.reporter import CONSOLE, Reporter
from mammography.record.view import EMBED, RunView

METADATA_COLUMNS = ("image_path", "rel_path", "accession", "patient", "view", "laterality",
                    "label")


@dataclass
class EmbeddingRun:
    run_dir: Path
    run_id: str
    arch: str
    features: np.ndarray  # N x D float32, standardised per dimension
    paths: list[str]
    rel_paths: list[str]

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])


def _is_usable(view: RunView | None) -> bool:
    return view is not None and view.kind == EMBED and view.status == "completed"


def find_embedding_run(path: Path, out: Reporter = CONSOLE) -> RunView:
    """``path`` itself when it is a completed embedding run, else its latest one."""
    path = Path(path)
    if is_run_dir(path):
        view = RunView.try_read(path)
        if not _is_usable(view):
            kind = view.experiment_type if view is not None else "unreadable summary"
            status = view.status if view is not None else "?"
            raise DataError(f"--embeddings-dir {path} is not a completed embedding run "
                            f"({kind}, status {status}). Point it at a results_N written by "
                            "`mammography embed`.")
        return view
    candidates = []
    for child in path.iterdir():
        match = RUN_DIR_RE.match(child.name)
        view = RunView.try_read(child) if match else None
        if match and _is_usable(view):
            candidates.append((int(match.group(1)), view))
    if not candidates:
        raise DataError(f"--embeddings-dir {path} holds no completed embedding run "
                        "(results_N from `mammography embed`). Run `mammography embed` first.")
    chosen = max(candidates, key=lambda candidate: candidate[0])[1]
    out.log(f"Using the latest completed embedding run in {path}: {chosen.dir.name}")
    return chosen


def embedding_view(source: RunView | Path) -> RunView:
    """The view of an embedding run (an empty record when its summary is unreadable)."""
    return source if isinstance(source, RunView) else \
        RunView.try_read(source) or RunView(Path(source), {})


def verified_embedding_files(source: RunView | Path, out: Reporter) -> tuple[bytes, bytes]:
    """The bytes of ``features.npy`` and ``metadata.csv``, each verified against the
    sha256 the embedding run recorded (``InputError`` naming the file and both digests)."""
    view = embedding_view(source)
    for path in (view.features, view.metadata):
        if not path.is_file():
            raise DataError(f"Cannot read the embeddings in {view.dir}: {path.name} is "
                            "missing. Re-run `mammography embed`.")
    return (read_verified(view, view.features, out, "embeddings"),
            read_verified(view, view.metadata, out, "embedding metadata"))


def load_embedding_run(source: RunView | Path, out: Reporter) -> EmbeddingRun:
    """The features of an embedding run (its view, or its folder), verified and
    standardised."""
    view = embedding_view(source)
    run_dir = view.dir
    features_bytes, metadata_bytes = verified_embedding_files(view, out)
    try:
        features = np.load(io.BytesIO(features_bytes), allow_pickle=False)
        rows = list(csv.DictReader(io.StringIO(metadata_bytes.decode("utf-8"), newline="")))
    except (OSError, ValueError) as exc:
        raise DataError(f"Cannot read the embeddings in {run_dir}: {exc}. Re-run "
                        "`mammography embed`.") from None
    if features.ndim != 2 or len(rows) != features.shape[0]:
        raise DataError(f"{run_dir}: {FEATURES_FILE} has shape {features.shape} but "
                        f"{METADATA_FILE} has {len(rows)} rows; the run is damaged.")
    features = features.astype(np.float32)
    # Unsupervised, whole-run statistics: no label information leaks in.
    mean, std = features.mean(axis=0), features.std(axis=0)
    standardised = (features - mean) / np.where(std > 1e-8, std, 1.0)
    return EmbeddingRun(run_dir, view.run_id or run_dir.name,
                        str(view.section("model_config").get("arch", "?")),
                        standardised.astype(np.float32), [r["image_path"] for r in rows],
                        [r.get("rel_path", "") for r in rows])


def align(run: EmbeddingRun, paths: Sequence[Path], dicom_root: Path | None) -> np.ndarray:
    """One embedding row per path (same order); DataError naming what is missing."""
    by_path = {p: i for i, p in enumerate(run.paths)}
    by_rel = {p: i for i, p in enumerate(run.rel_paths) if p}
    rows, missing = [], []
    for path in paths:
        index = by_path.get(str(path))
        if index is None and dicom_root is not None:
            try:
                index = by_rel.get(str(Path(path).relative_to(dicom_root)))
            except ValueError:
                index = None
        if index is None:
            missing.append(str(path))
        else:
            rows.append(index)
    if missing:
        raise DataError(f"The embeddings of {run.run_dir} do not cover {len(missing)} of the "
                        f"{len(paths)} images (e.g. {missing[0]}): they come from other "
                        "images or another dataset. Run `mammography embed` with the same "
                        "--csv/--dicom-root and pass its run to --embeddings-dir.")
    return run.features[np.asarray(rows, dtype=np.int64)]


@dataclass
class Fusion:
    """Embeddings aligned with a run's image table, and the embedding run they came from."""

    embeddings: np.ndarray  # one standardised row per image of the table
    run_dir: Path
    run_id: str
    arch: str

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def lineage(self) -> dict[str, Any]:
        """The ``based_on`` link of a run that fuses these embeddings."""
        return {"run_dir": str(self.run_dir), "run_id": self.run_id, "relation": "fusion"}


def load_fusion(embeddings_dir: Path | None, paths: Sequence[Path], dicom_root: Path | None,
                out: Reporter = CONSOLE) -> Fusion | None:
    """The embeddings of ``--embeddings-dir`` for these images (None without the option)."""
    if embeddings_dir is None:
        return None
    source = find_embedding_run(embeddings_dir, out)
    out.log(f"Loading embeddings from {source.dir}")
    embedding_run = load_embedding_run(source, out)
    matrix = align(embedding_run, paths, dicom_root)
    out.log(f"Fusing {embedding_run.dim}-dimensional {embedding_run.arch} embeddings of "
            f"{len(matrix)} images")
    return Fusion(matrix, source.dir.resolve(), embedding_run.run_id, embedding_run.arch)
