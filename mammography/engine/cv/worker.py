"""A parallel CV worker: ``python -m mammography.engine.cv.worker PARENT K [K ...]``.

Started by ``crossval`` through the executor (``cv.executor``), one per
``--cv-workers`` slot. It re-reads the parent run's settings (its
config.yaml), prepares the same data once (the cache makes this cheap; the
manifest digest must match the parent's, or the data changed under the run),
and trains its folds one after another, each as the child run
``PARENT/fold_K/results`` (``train.split.train_child``, as sequential CV
does), with the fold's images read from the parent's splits.csv. A fold the
parent's plan (summary.json ``cross_validation``) says to continue starts from
the interrupted run's last_checkpoint.pt.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mammography.errors import DataError, InputError


def worker_command(parent_dir: Path, folds: list[int]) -> list[str]:
    """The command line of a worker that trains ``folds`` of the CV run ``parent_dir``."""
    return [sys.executable, "-m", "mammography.engine.cv.worker", str(parent_dir),
            *map(str, folds)]


def train_folds(parent_dir: Path, folds: list[int]) -> int:
    """Worker body: the folds in order; the exit code of the first that does not complete."""
    from mammography.config.resolve import run_config
    from mammography.config.train import TrainConfig
    from mammography.data.pipeline import prepare_data
    from mammography.data.splits import fold_split
    from mammography.engine.cv.executor import announce
    from mammography.engine.cv.resume import recorded_plan
    from mammography.engine.fusion import load_fusion
    from mammography.engine.train.split import ChildRunEnded, train_fold
    from mammography.record.placement import RunRef
    from mammography.record.reporter import ConsoleReporter
    from mammography.record.view import RunView

    cfg = run_config(TrainConfig, parent_dir)
    parent = RunRef.load(parent_dir)
    parent_view = RunView(Path(parent_dir), parent.document)
    out = ConsoleReporter()
    data = prepare_data(cfg, None, out, progress=False)
    expected = parent_view.section("data_config").get("manifest_digest")
    if data.manifest_digest != expected:
        raise DataError(f"The data of {parent_dir} changed while its cross-validation ran "
                        f"(manifest digest {data.manifest_digest[:12]}, the run's "
                        f"{str(expected)[:12]}). Start the run again.")
    paths = [r.path for r in data.table.images]
    fusion = load_fusion(cfg.embeddings_dir, paths, data.table.dicom_root, out)
    for fold in folds:
        announce(fold)
        split = fold_split(parent_view.splits, paths, data.table.dicom_root, fold)
        plan = recorded_plan(parent_dir, parent.document, fold)
        try:
            train_fold(parent, fold, cfg, data, split, fusion, resume_from=plan.continued_run())
        except ChildRunEnded as ended:  # recorded in the fold's own run directory
            return ended.exit_code
    return 0


def main(argv: list[str]) -> int:
    parent, folds = Path(argv[0]), [int(k) for k in argv[1:]]
    from mammography.errors import EXIT_FAILED, EXIT_INTERRUPTED, RunInterrupted

    try:
        return train_folds(parent, folds)
    except InputError as exc:  # before a fold's run existed, or its own refusal: message only
        print(f"Error: {exc.render()}", file=sys.stderr, flush=True)
        return exc.exit_code
    except (RunInterrupted, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    except Exception:  # before any fold's run existed: the traceback is the record
        import traceback

        traceback.print_exc()
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
