"""`mammography train-density`: the recipe, from data options to the full artifact set.

Usage::

    mammography train-density --csv data/synthetic/classificacao.csv \\
        --dicom-root data/synthetic/archive --arch efficientnet_b0 --epochs 20
    mammography train-density ... --cv-folds 5          # fold_i/results + cv_summary.json
    mammography train-density --resume outputs/density/results_3

The recipe composes the library: data (``data.pipeline.prepare_data``),
optional embedding fusion (``fusion``), then one patient-grouped split
(``split_training.train_split``) or k folds (``crossval.cross_validate``).
The run layer around it records summary.json and run.log.
"""

from __future__ import annotations

import shutil
from typing import Any

from mammography.config.train import TrainConfig
from mammography.data.pipeline import PreparedData, data_config, prepare_data
from mammography.data.splits import train_val_indices
from mammography.engine.checkpoint import load_safely
from mammography.engine.crossval import cross_validate
from mammography.engine.fusion import load_fusion
from mammography.engine.split_result import SplitResult
from mammography.engine.split_training import EpochCallback, train_split
from mammography.run.contract import BEST_MODEL_FILE, LAST_CHECKPOINT_FILE, read_summary
from mammography.run.protocol import RunContext


def run_train_density(cfg: TrainConfig, run: RunContext) -> None:
    run.log("Starting density classification training")
    run.add_based_on(lineage(cfg))
    data = prepare_data(cfg, run.dir, run)
    run.update(data_config=data_config(cfg, data.table, data.manifest)
               | {"preprocessing": data.cache.settings.as_dict(), "cache": data.cache_report,
                  "val_fraction": cfg.val_fraction, "cv_folds": cfg.cv_folds})
    train_prepared(cfg, run, data)


def train_prepared(cfg: TrainConfig, run: RunContext, data: PreparedData,
                   epoch_callback: EpochCallback | None = None
                   ) -> SplitResult | list[SplitResult]:
    """Train on prepared data: one split, or every CV fold (then the fold results).

    Also the body of each `tune` trial, which prepares the data once for all
    trials and passes an ``epoch_callback`` (pruning).
    """
    fusion = load_fusion(cfg.embeddings_dir, [r.path for r in data.table.images],
                         data.table.dicom_root, run)
    if fusion is not None:
        run.add_based_on([fusion.lineage()])
    if cfg.cv_folds:
        return cross_validate(cfg, run, data, fusion)
    labels = [r.class_index for r in data.table.images]
    groups = [r.split_group for r in data.table.images]
    train_idx, val_idx = train_val_indices(labels, groups, cfg.val_fraction, cfg.seed)
    resume = load_safely(cfg.resume / LAST_CHECKPOINT_FILE, "checkpoint") if cfg.resume else None
    if cfg.resume and (cfg.resume / BEST_MODEL_FILE).is_file():
        load_safely(cfg.resume / BEST_MODEL_FILE, "best model")  # refuse a bad file first
        shutil.copy2(cfg.resume / BEST_MODEL_FILE, run.dir / BEST_MODEL_FILE)  # may predate
    result = train_split(cfg, run, data, train_idx, val_idx, resume=resume, fusion=fusion,
                         epoch_callback=epoch_callback)
    run.set_results(**result.headline())
    return result


def lineage(cfg: TrainConfig) -> list[dict[str, Any]] | None:
    """``based_on`` links of ``--resume`` and ``--based-on``."""
    links = []
    for path, relation in ((cfg.resume, "resume"), (cfg.based_on, "lineage")):
        if path is not None:
            summary = read_summary(path)
            links.append({"run_dir": str(path.resolve()), "run_id": summary.get("run_id"),
                          "relation": relation, "git_commit": summary.get("git_commit")})
    return links or None
