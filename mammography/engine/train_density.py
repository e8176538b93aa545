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
(``train.split.train_split``) or k folds (``cv.crossval.cross_validate``).
The run layer around it records summary.json and run.log.

``--resume`` continues what the run directory holds (``train.resume``): a
single run on the same split, one CV fold as a single run on that fold's
split (keeping ``integration.cv_fold``), or a whole cross-validation
(``cv.resume``); always on the same data (manifest digest) or not at all.
The run it names is opened once, here (``trained_run.TrainedRun``), and
handed to everything that continues it.
"""

from __future__ import annotations

from typing import Any

from mammography.config.train import TrainConfig, continued_fold, cross_validates
from mammography.data.pipeline import PreparedData, data_config, prepare_data
from mammography.data.splits import train_val_indices
from mammography.engine.cv.crossval import cross_validate
from mammography.engine.fusion import load_fusion
from mammography.engine.train.result import SplitResult
from mammography.engine.train.resume import (
    check_not_running,
    check_same_data,
    recorded_split,
    resume_link,
)
from mammography.engine.train.split import EpochCallback, train_split
from mammography.engine.trained_run import TrainedRun
from mammography.errors import InputError
from mammography.record.contract import SummaryUnreadable
from mammography.record.protocol import RunContext
from mammography.record.view import RunView


def run_train_density(cfg: TrainConfig, run: RunContext) -> None:
    run.log("Starting density classification training")
    # The run --resume continues, read once here and handed to everything that needs it.
    resumed = TrainedRun.open(cfg.resume, option="--resume") \
        if cfg.resume is not None else None
    run.add_based_on(lineage(cfg, resumed))
    if resumed is not None:
        check_not_running(resumed.view)
        resumed.verify_resumable(run)  # its checkpoints are its own, before data is read
    data = prepare_data(cfg, run.dir, run, trust_memo=resumed is None or cfg.trust_memo,
                        remember_table=True)
    run.update(data_config=data_config(cfg, data.table, data.manifest)
               | {"preprocessing": data.cache.settings.as_dict(), "cache": data.cache_report,
                  "val_fraction": cfg.val_fraction, "cv_folds": cfg.cv_folds})
    if resumed is not None:
        check_same_data(resumed, data)
        fold = continued_fold(resumed.view)
        if fold is not None:
            run.update(integration={"cv_fold": fold})
            run.log(f"Continuing fold {fold} of a cross-validation as a single run")
    train_prepared(cfg, run, data, resumed=resumed)


def train_prepared(cfg: TrainConfig, run: RunContext, data: PreparedData,
                   epoch_callback: EpochCallback | None = None, *,
                   resumed: TrainedRun | None = None) -> SplitResult | list[SplitResult]:
    """Train on prepared data: one split, or every CV fold (then the fold results).

    ``resumed``: the run ``cfg.resume`` names, opened by the caller. Also the body
    of each `tune` trial, which prepares the data once for all trials and passes an
    ``epoch_callback`` (pruning).
    """
    if (resumed is None) != (cfg.resume is None):
        raise ValueError("train_prepared: pass the opened run of cfg.resume as resumed")
    fusion = load_fusion(cfg.embeddings_dir, [r.path for r in data.table.images],
                         data.table.dicom_root, run)
    if fusion is not None:
        run.add_based_on([fusion.lineage()])
    view = resumed.view if resumed is not None else None
    if cross_validates(cfg, view):
        return cross_validate(cfg, run, data, fusion, resumed)
    if resumed is not None and continued_fold(view) is not None:
        train_idx, val_idx = recorded_split(resumed, data)  # the fold's own split
    else:
        labels = [r.class_index for r in data.table.images]
        groups = [r.split_group for r in data.table.images]
        train_idx, val_idx = train_val_indices(labels, groups, cfg.val_fraction, cfg.seed)
    result = train_split(cfg, run, data, train_idx, val_idx, resumed_from=resumed,
                         fusion=fusion, epoch_callback=epoch_callback)
    run.set_results(**result.headline())
    return result


def lineage(cfg: TrainConfig, resumed: TrainedRun | None) -> list[dict[str, Any]] | None:
    """``based_on`` links of ``--resume`` and ``--based-on``."""
    links = [resume_link(resumed)] if resumed is not None else []
    if cfg.based_on is not None:
        try:
            links.append(RunView.read(cfg.based_on).link("lineage", commit=True))
        except SummaryUnreadable as exc:
            raise InputError(f"--based-on {cfg.based_on}: {exc}") from None
    return links or None
