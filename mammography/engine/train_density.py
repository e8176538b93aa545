"""`mammography train-density`: the recipe, from data options to the full artifact set.

Usage::

    mammography train-density --csv data/synthetic/classificacao.csv \\
        --dicom-root data/synthetic/archive --arch efficientnet_b0 --epochs 20
    mammography train-density ... --cv-folds 5          # fold_i/results + cv_summary.json
    mammography train-density --resume outputs/density/results_3
    mammography train-density --resume outputs/density/results_4   # a CV parent: the rest
    mammography train-density --resume outputs/density/results_4/fold_2/results  # one fold

The recipe composes the library: data (``data.pipeline.prepare_data``),
optional embedding fusion (``fusion``), then one patient-grouped split
(``split_training.train_split``) or k folds (``crossval.cross_validate``).
The run layer around it records summary.json and run.log.

``--resume`` continues what the run directory holds (``resume``): a single
run on the same split, one CV fold as a single run on that fold's split
(keeping ``integration.cv_fold``), or a whole cross-validation
(``cv_resume``); always on the same data (manifest digest) or not at all.
"""

from __future__ import annotations

from typing import Any

from mammography.config.train import TrainConfig
from mammography.data.pipeline import PreparedData, data_config, prepare_data
from mammography.data.splits import train_val_indices
from mammography.engine.cv.crossval import cross_validate
from mammography.engine.fusion import load_fusion
from mammography.engine.train.result import SplitResult
from mammography.engine.train.resume import (
    check_not_running,
    check_same_data,
    load_checkpoint,
    recorded_split,
    resume_link,
)
from mammography.engine.train.split import EpochCallback, train_split
from mammography.record.contract import read_summary
from mammography.record.protocol import RunContext


def run_train_density(cfg: TrainConfig, run: RunContext) -> None:
    run.log("Starting density classification training")
    run.add_based_on(lineage(cfg))
    if cfg.resume is not None:
        check_not_running(cfg.resume, read_summary(cfg.resume))
    data = prepare_data(cfg, run.dir, run, trust_memo=cfg.resume is None or cfg.trust_memo)
    run.update(data_config=data_config(cfg, data.table, data.manifest)
               | {"preprocessing": data.cache.settings.as_dict(), "cache": data.cache_report,
                  "val_fraction": cfg.val_fraction, "cv_folds": cfg.cv_folds})
    if cfg.resume is not None:
        check_same_data(cfg.resume, data)
        fold = cfg.continued_fold()
        if fold is not None:
            run.update(integration={"cv_fold": fold})
            run.log(f"Continuing fold {fold} of a cross-validation as a single run")
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
    if cfg.cross_validation:
        return cross_validate(cfg, run, data, fusion)
    if cfg.continued_fold() is not None:  # the fold's own split, not a fresh draw
        train_idx, val_idx = recorded_split(cfg.resume, data)
    else:
        labels = [r.class_index for r in data.table.images]
        groups = [r.split_group for r in data.table.images]
        train_idx, val_idx = train_val_indices(labels, groups, cfg.val_fraction, cfg.seed)
    resume = load_checkpoint(cfg.resume, run.dir) if cfg.resume else None
    result = train_split(cfg, run, data, train_idx, val_idx, resume=resume,
                         resumed_from=cfg.resume, fusion=fusion, epoch_callback=epoch_callback)
    run.set_results(**result.headline())
    return result


def lineage(cfg: TrainConfig) -> list[dict[str, Any]] | None:
    """``based_on`` links of ``--resume`` and ``--based-on``."""
    links = [resume_link(cfg.resume)] if cfg.resume is not None else []
    if cfg.based_on is not None:
        summary = read_summary(cfg.based_on)
        links.append({"run_dir": str(cfg.based_on.resolve()), "run_id": summary.get("run_id"),
                      "relation": "lineage", "git_commit": summary.get("git_commit")})
    return links or None
