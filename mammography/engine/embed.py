"""`mammography embed`: pooled backbone features of every image, plus a quick read of them.

Usage::

    mammography embed --csv data/synthetic/classificacao.csv --arch resnet50 --no-pretrained

Writes ``features.npy`` (float32, images × dims) and ``metadata.csv`` (same
row order: image path, path relative to the DICOM root, accession, patient,
view, laterality, label), both recorded with their sha256, a PCA scatter coloured by density, and a
linear-probe baseline (kappa and accuracy in summary.json). The run is the
first stage of the reference two-stage pipeline: `train-density
--embeddings-dir` fuses these vectors with the CNN's own features.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from mammography.config.embed import EmbedConfig
from mammography.data.dataset import CachedImageDataset
from mammography.data.loading import describe_loader, make_loader
from mammography.data.pipeline import PreparedData, data_config, prepare_data
from mammography.engine.device import (
    Precision,
    seed_everything,
    select_device,
    select_precision,
)
from mammography.engine.fusion import METADATA_COLUMNS
from mammography.engine.inference import extract_features
from mammography.engine.linear_probe import linear_probe
from mammography.models.factory import (
    create_backbone,
    describe_weights,
    parameter_counts,
    pooled_dim,
    weights_source,
)
from mammography.record.digests import write_bytes_recorded, write_recorded
from mammography.record.progress import progress_bar
from mammography.record.protocol import RunContext
from mammography.record.view import RunFiles


def extract(backbone: torch.nn.Module, loader: DataLoader, device: torch.device,
            precision: Precision, channels_last: bool, progress: bool = True) -> np.ndarray:
    """Pooled features of every image, in loader order (float32), with a progress bar."""
    with progress_bar(len(loader), "Embedding", enabled=progress, unit="batches") as advance:
        return extract_features(backbone, loader, device=device, precision=precision,
                                channels_last=channels_last, on_batch=advance)


def _metadata_csv(data: PreparedData) -> bytes:
    """metadata.csv: one row per image, in the row order of features.npy."""
    root = data.table.dicom_root
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(METADATA_COLUMNS)
    for r in data.table.images:
        rel = r.path.relative_to(root) if root and r.path.is_relative_to(root) else ""
        writer.writerow([str(r.path), str(rel), r.accession, r.patient, r.view,
                         r.laterality, r.label])
    return buffer.getvalue().encode("utf-8")


def _save_features(features: np.ndarray, temp: Path) -> None:
    with temp.open("wb") as handle:  # a handle: np.save would add .npy to a path
        np.save(handle, features)


def run_embed(cfg: EmbedConfig, run: RunContext) -> None:
    from mammography.report.plots import plot_embeddings_2d

    run.log("Starting embedding extraction")
    data = prepare_data(cfg, run.dir, run)
    run.update(data_config=data_config(cfg, data.table, data.manifest)
               | {"preprocessing": data.cache.settings.as_dict(), "cache": data.cache_report})
    seed_everything(cfg.seed)
    # On a cluster the tasks run the model on the nodes' CPUs; this machine only builds it.
    device = select_device("cpu" if cfg.ray_address else cfg.device)
    precision = select_precision(device, cfg.amp)
    backbone = create_backbone(cfg.arch, pretrained=cfg.pretrained, weights=cfg.weights,
                               allow_partial=cfg.allow_partial_weights,
                               weights_prefix=cfg.weights_prefix)
    line, warnings = describe_weights(backbone)
    run.log(line)
    for text in warnings:
        run.warn(text)
    channels_last = device.type == "cuda"
    backbone = backbone.to(device, memory_format=torch.channels_last if channels_last
                           else torch.contiguous_format)
    total, _ = parameter_counts(backbone)
    run.log(f"Initializing {cfg.arch} ({weights_source(backbone)['pretrained']} weights): "
            f"{total / 1e6:.2f}M parameters, {pooled_dim(backbone)}-dimensional features")
    run.log(f"Device: {device} ({precision.describe()}), batch size {cfg.batch_size}, "
            + (f"Ray cluster at {cfg.ray_address}" if cfg.ray_address
               else describe_loader(cfg.num_workers, device)))
    run.update(model_config={"arch": cfg.arch, **weights_source(backbone),
                             "allow_partial_weights": cfg.allow_partial_weights,
                             "embedding_dim": pooled_dim(backbone), "total_params": total,
                             "in_chans": 1, "device": str(device),
                             "precision": precision.describe()})
    run.refresh_environment()
    images = data.table.images
    started = time.perf_counter()
    if cfg.ray_address:
        features = _extract_on_cluster(cfg, backbone, data, run)
    else:
        dataset = CachedImageDataset([r.path for r in images],
                                     [r.class_index for r in images], data.cache)
        loader = make_loader(dataset, batch_size=cfg.batch_size, device=device,
                             num_workers=cfg.num_workers)
        features = extract(backbone, loader, device, precision, channels_last)
    seconds = time.perf_counter() - started
    files = RunFiles(run.dir)
    # Recorded with their sha256 (fusion verifies them before use: record/digests.py).
    write_recorded(run, files.features, lambda temp: _save_features(features, temp))
    write_bytes_recorded(run, files.metadata, _metadata_csv(data))
    rate = len(features) / seconds if seconds > 0 else 0.0
    run.log(f"Embedded {len(features)} images into {features.shape[1]} dimensions in "
            f"{seconds:.1f}s ({rate:.1f} images/s) -> {files.features}")
    labels = np.array([r.class_index for r in images])
    _pca_plot(features, labels, run.path("plots/embeddings_pca.png"), cfg.arch,
              plot_embeddings_2d, run.dir)
    results = {"num_images": len(features), "embedding_dim": int(features.shape[1]),
               "images_per_second": round(rate, 2), "extract_seconds": round(seconds, 3)}
    if cfg.probe_folds:
        probe = linear_probe(features, labels, [r.split_group for r in images],
                             [r.accession for r in images], cfg.probe_folds, cfg.seed)
        if probe is None:
            run.warn(f"Linear probe skipped: too few patients for {cfg.probe_folds} folds")
        else:
            image, exam = probe["image"], probe["exam"]
            run.log(f"Linear probe ({cfg.probe_folds}-fold, patient-grouped): kappa "
                    f"{image['kappa']:.3f}, acc {image['accuracy']:.3f}; per exam kappa "
                    f"{exam['kappa']:.3f}, acc {exam['accuracy']:.3f}")
            run.write_json("metrics/linear_probe.json", probe)
            results |= {"linear_probe_kappa": image["kappa"],
                        "linear_probe_acc": image["accuracy"],
                        "linear_probe_exam_kappa": exam["kappa"],
                        "linear_probe_exam_acc": exam["accuracy"],
                        "linear_probe_folds": cfg.probe_folds}
    run.set_results(**results)


def _extract_on_cluster(cfg: EmbedConfig, backbone: torch.nn.Module, data: PreparedData,
                        run: RunContext) -> np.ndarray:
    """``extract`` in shards on the Ray cluster (``engine/cluster/``); its record in
    summary.json ``cluster``."""
    from mammography.engine.cluster.embed import embed_on_cluster

    assert cfg.ray_address is not None
    done = embed_on_cluster(backbone, cfg.arch, [r.path for r in data.table.images],
                            data.cache, address=cfg.ray_address, batch_size=cfg.batch_size,
                            out=run)
    run.update(cluster=done.record)
    return done.features


def _pca_plot(features: np.ndarray, labels: np.ndarray, path: Path, arch: str,
              plot: Any, run_dir: Path) -> None:
    from sklearn.decomposition import PCA

    from mammography.report.plots import figure_title, run_label

    if len(features) < 3:
        return
    pca = PCA(n_components=2, random_state=0)
    points = pca.fit_transform(features)
    share = pca.explained_variance_ratio_
    plot(points, labels, path,
         title=figure_title(f"{arch} embeddings, first two principal components",
                            model=f"{arch} (run {run_label(run_dir)})",
                            split=f"all {len(features)} images", level="image"),
         axis_labels=(f"PC 1 ({100 * share[0]:.0f} % of the variance)",
                      f"PC 2 ({100 * share[1]:.0f} % of the variance)"))
