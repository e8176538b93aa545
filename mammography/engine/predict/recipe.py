"""`mammography predict`: breast density for new, unlabelled exams.

Usage::

    mammography predict --run outputs/density/results_4 --csv new_exams.csv \\
        --dicom-root /data/new/archive
    mammography predict --run outputs/density/results_7 --dicom-root /pacs/export  # a CV run:
                                                         # the mean of its folds, every DICOM
    mammography predict --model export/model.onnx --dicom-root /pacs/export --tta

The models (``members.py``) are checked first: train-density runs
rebuilt from ``best_model.pt`` with a weights-only load (a CV parent stands
for all its folds), or exported ONNX files with their ``preprocessing.json``.
The images (``data/unlabelled.py``) need no label: a CSV of accessions or
paths, or every DICOM file under a folder; what cannot be read is excluded
with the reason. Then the scoring path eval-export takes too
(``engine/scoring/``): each distinct preprocessing of the members gets one
pass through the decode-once cache, what cannot be decoded is left out by
``--on-bad-image`` / ``--max-bad-fraction``, the acquisition fingerprint of
the images is compared with each training run's (``data_shift.py``), every
member scores every image and the ensemble's probability is their mean;
images, breasts and exams are written with ``prob_A..prob_D``, the call and
the number of members (``report/predict_tables.py``).
"""

from __future__ import annotations

from typing import Any

from mammography.config.predict import PredictConfig
from mammography.data.pipeline import dataset_config, write_data_manifest
from mammography.data.table.records import LabelTable
from mammography.data.unlabelled import load_unlabelled
from mammography.engine.data_shift import check_shift
from mammography.engine.device import select_device, select_precision
from mammography.engine.predict.members import (
    Member,
    describe,
    members_from_onnx,
    members_from_runs,
)
from mammography.engine.scoring.caches import ImagesToScore, prepare_images
from mammography.engine.scoring.probabilities import Scored, score_images
from mammography.record.contract import (
    MANIFEST_FILE,
    PREDICTIONS_BREAST,
    PREDICTIONS_EXAM,
    PREDICTIONS_IMAGE,
)
from mammography.record.protocol import RunContext

#: How summary.json names the test-time augmentation (why vertical: config/predict.py).
TTA_NAME = "vertical flip"
ENSEMBLE_RULE = "mean of the members' probabilities, per image"
LEVEL_RULE = "breast and exam probabilities: the mean of their images' probabilities"


def header_frames(members: list[Member]) -> str:
    """The multi-frame policy of the header check: every member must be able to read an
    image, so a member that excludes multi-frame objects excludes them for all."""
    policies = [m.preprocess.multiframe for m in members]
    return "exclude" if "exclude" in policies else policies[0]


def run_predict(cfg: PredictConfig, run: RunContext) -> None:
    run.log("Starting prediction")
    # On a cluster the tasks run the members on the nodes' CPUs; this machine loads them.
    device = select_device("cpu" if cfg.ray_address else cfg.device)
    members = (members_from_runs(cfg.run, run) if cfg.run else
               members_from_onnx(cfg.model, device, run))
    describe(members, run)
    runs = {str(m.run_dir.resolve()): m.run_id for m in members if m.run_dir is not None}
    run.add_based_on([{"run_dir": path, "run_id": run_id, "relation": "evaluation"}
                      for path, run_id in runs.items()])
    table = load_unlabelled(cfg.csv, cfg.dicom_root, path_column=cfg.path_column,
                            dataset=cfg.dataset, on_bad_image=cfg.on_bad_image,
                            max_bad_fraction=cfg.max_bad_fraction,
                            frames=header_frames(members), out=run)
    images = prepare_images(members, table, cfg, run)
    caches, cache_reports = images.caches, images.reports
    run.log(f"Scoring {len(table.images)} images of {table.num_exams} exams from "
            f"{table.num_patients} patients ({len(table.exclusions)} excluded)")
    manifest = write_data_manifest(run.dir, table, run, extra={
        "preprocessing": [c.settings.as_dict() for c in caches.values()]})
    shift = check_shift(members, manifest["fingerprint"], run)
    precision = select_precision(device, cfg.amp)
    kind = members[0].kind
    run.update(
        data_config={"csv": str(cfg.csv_file) if cfg.csv else None,
                     **({"csv_files": [str(p) for p in cfg.csv]} if len(cfg.csv) > 1 else {}),
                     **dataset_config(table),
                     "dicom_root": str(table.dicom_root) if table.dicom_root else None,
                     "csv_format": table.csv_format, "num_images": len(table.images),
                     "num_exams": table.num_exams, "num_patients": table.num_patients,
                     "num_excluded": len(table.exclusions),
                     "manifest_digest": manifest["digest"], "manifest_file": MANIFEST_FILE,
                     "preprocessing": [c.settings.as_dict() for c in caches.values()],
                     "cache": cache_reports},
        model_config={"kind": kind, "num_members": len(members), "ensemble": ENSEMBLE_RULE,
                      "levels": LEVEL_RULE, "tta": TTA_NAME if cfg.tta else None,
                      "device": str(device),
                      "precision": "float32 (onnxruntime)" if kind == "onnx"
                      else precision.describe(),
                      "members": [m.record() for m in members]})
    run.refresh_environment()
    engine = ("onnxruntime " + ", ".join(members[0].providers or []) if kind == "onnx"
              else precision.describe())
    run.log(f"Device: {device} ({engine}), batch size {cfg.batch_size}, TTA "
            f"{TTA_NAME if cfg.tta else 'off'}"
            + (f", Ray cluster at {cfg.ray_address}" if cfg.ray_address else ""))
    if cfg.ray_address:
        scored = _score_on_cluster(cfg, members, images, run)
    else:
        scored = score_images(members, images, cfg, device=device, out=run, tta=cfg.tta)
    counts = _write_tables(run, table, scored.probs, len(members))
    rate = scored.images_per_second
    run.set_results(**counts, num_members=len(members), tta=TTA_NAME if cfg.tta else "none",
                    images_per_second=round(rate, 2),
                    scoring_seconds=round(scored.seconds, 3), data_shift=shift)
    _closing_lines(run, counts, len(members), scored.seconds, rate, shift)


def _score_on_cluster(cfg: PredictConfig, members: list[Member], images: ImagesToScore,
                      run: RunContext) -> Scored:
    """``score_images`` in shards on the Ray cluster (``engine/cluster/``); its record in
    summary.json ``cluster``."""
    from mammography.engine.cluster.scoring import score_on_cluster

    assert cfg.ray_address is not None
    done = score_on_cluster(members, images.table, images.caches, address=cfg.ray_address,
                            batch_size=cfg.batch_size, tta=cfg.tta, out=run)
    run.update(cluster=done.record)
    return done.scored


def _write_tables(run: RunContext, table: LabelTable, probs: Any, members: int
                  ) -> dict[str, Any]:
    from mammography.report.predict_tables import write_prediction_tables

    return write_prediction_tables(run.dir, table.images, probs, members,
                                   (PREDICTIONS_IMAGE, PREDICTIONS_BREAST, PREDICTIONS_EXAM))


def _closing_lines(run: RunContext, counts: dict[str, Any], members: int, seconds: float,
                   rate: float, shift: dict[str, Any]) -> None:
    exams = counts["exam_density_counts"]
    run.log("")
    run.log("Prediction Complete")
    run.log("-------------------")
    run.log(f"Scored {counts['num_images']} images ({counts['num_breasts']} breasts, "
            f"{counts['num_exams']} exams) with {members} model{'s' if members > 1 else ''} "
            f"in {seconds:.1f}s ({rate:.1f} images/s)")
    run.log("Exams by predicted density: " + ", ".join(f"{k} {v}" for k, v in exams.items())
            + f"; dense (C/D): {counts['dense_exams']} of {counts['num_exams']}")
    if shift["shift_detected"]:
        run.log(f"Data shift: {len(shift['differences'])} acquisition differences from the "
                "training data (see the WARNING above and summary.json data_shift)")
    run.log(f"Predictions: {PREDICTIONS_IMAGE}, {PREDICTIONS_BREAST}, {PREDICTIONS_EXAM} in "
            f"{run.dir}")
