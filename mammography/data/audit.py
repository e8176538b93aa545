"""`mammography data check` and `mammography data cache`.

``check`` is the audit a researcher runs before spending GPU hours: what the
CSV and the DICOM tree hold (classes, exams, images, patients, views), every
item that will be left out with the reason, and - when it decodes the images -
every image whose breast segmentation looks wrong (the breast running along
three sides of the image, or covering less than 5 % or more than 95 % of it),
by name, with the breast's median share of the network input. ``cache`` builds
(or verifies) the decode-once cache ahead of the GPU jobs that will read it.
Neither makes a run directory: they change no results.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from mammography.config.datacmd import DataCacheConfig, DataCheckConfig
from mammography.data.cluster.sharded import ShardFailed
from mammography.data.pipeline import (
    build_cache,
    load_table,
    preprocess_settings,
    refused_table,
    write_data_manifest,
)
from mammography.data.table.exclusions import exclude_bad_images
from mammography.data.table.records import LabelTable
from mammography.errors import EXIT_FAILED, EXIT_OK, DataError
from mammography.record.reporter import ConsoleReporter


def audit(table: LabelTable) -> dict[str, Any]:
    """Counts, exclusions and the acquisition fingerprint of a label table, JSON-ready."""
    views = Counter(f"{r.laterality or '?'}-{r.view or '?'}" for r in table.images)
    fingerprint = table.fingerprint()
    reasons = Counter(_reason_key(e["reason"]) for e in table.exclusions)
    return {
        "csv": str(table.csv_path),
        **({"csv_files": [str(p) for p in table.csv_paths]} if len(table.csv_paths) > 1
           else {}),
        "dataset": table.dataset or None,
        "csv_format": table.csv_format,
        "csv_rows": table.csv_rows,
        "dicom_root": str(table.dicom_root) if table.dicom_root else None,
        "images": len(table.images),
        "exams": table.num_exams,
        "patients": table.num_patients,
        "class_distribution_exams": table.class_distribution("exam"),
        "class_distribution_images": table.class_distribution("image"),
        "views": dict(sorted(views.items())),
        "for_processing": sum(r.for_processing for r in table.images),
        "fingerprint": fingerprint,
        "images_found": table.images_found,
        "unusable_images": table.bad_images,
        "excluded": len(table.exclusions),
        "exclusion_reasons": dict(reasons.most_common()),
        "exclusions": table.exclusions,
        "usable": bool(table.images),
    }


def segmentation_audit(table: LabelTable, infos: dict[str, dict[str, Any]],
                       shape: tuple[int, int]) -> dict[str, Any]:
    """How the breast segmentation went, from each image's preprocessing record."""
    checked, shares, flagged = 0, [], []
    for record in table.images:
        info = infos.get(str(record.path))
        if info is None:
            continue
        checked += 1
        shares.append(float(info.get("breast_share", 0.0)))
        problems = info.get("segmentation_problems") or []
        if problems:
            flagged.append({"path": str(record.path), "accession": record.accession,
                            "view": f"{record.laterality or '?'}-{record.view or '?'}",
                            "problems": problems,
                            "mask_area_fraction": info.get("mask_area_fraction"),
                            "mask_touches": info.get("mask_touches"),
                            "mask_box": info.get("mask_box")})
    return {"checked": checked, "input_shape": list(shape),
            "median_breast_share": round(float(np.median(shares)), 4) if shares else None,
            "flagged": flagged}


def print_segmentation(report: dict[str, Any]) -> None:
    from rich.console import Console

    console = Console()
    if not report["checked"]:
        return
    height, width = report["input_shape"]
    console.print(f"Breast segmentation: {report['checked']} images, median breast share of "
                  f"the {height}x{width} input {report['median_breast_share']:.2f}; "
                  f"{len(report['flagged'])} look wrong", markup=False, highlight=False,
                  soft_wrap=True)
    for item in report["flagged"][:50]:
        console.print(f"  - {item['path']}: {'; '.join(item['problems'])}", markup=False,
                      highlight=False, soft_wrap=True)
    if len(report["flagged"]) > 50:
        console.print(f"  ... and {len(report['flagged']) - 50} more (see --json)")


def _reason_key(reason: str) -> str:
    # "unknown label 'Q' (use 1-4 ...)" and "unknown label 'X' ..." count as one reason.
    return reason.split(" '")[0].split(" (")[0].split(":")[0].split(" under ")[0]


def print_audit(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"Data check: {report['csv']}", markup=False, highlight=False)
    table = Table(show_header=True)
    table.add_column("class")
    table.add_column("exams", justify="right")
    table.add_column("images", justify="right")
    exams, images = report["class_distribution_exams"], report["class_distribution_images"]
    names = {"1": "1 (A)", "2": "2 (B)", "3": "3 (C)", "4": "4 (D)", "5": "5 (n/c)"}
    for key in sorted(set(exams) | set(images)):
        table.add_row(names.get(key, key), str(exams.get(key, 0)), str(images.get(key, 0)))
    table.add_row("total", str(report["exams"]), str(report["images"]), style="bold")
    console.print(table)
    console.print(f"Patients: {report['patients']}   CSV rows: {report['csv_rows']} "
                  f"({report['csv_format']})   DICOM root: {report['dicom_root']}")
    if report.get("dataset"):
        print_dataset(console, report["dataset"])
    console.print("Views: " + ", ".join(f"{k} {v}" for k, v in report["views"].items()))
    if report["for_processing"]:
        console.print(f"[yellow]For Processing images: {report['for_processing']}[/yellow]")
    print_fingerprint(console, report["fingerprint"])
    if report["excluded"]:
        console.print(f"Excluded: {report['excluded']} — " + ", ".join(
            f"{n} x {reason}" for reason, n in report["exclusion_reasons"].items()))
        for item in report["exclusions"][:50]:
            where = item.get("path") or item.get("accession") or f"row {item.get('row')}"
            console.print(f"  - {where}: {item['reason']}", markup=False, highlight=False)
        if report["excluded"] > 50:
            console.print(f"  ... and {report['excluded'] - 50} more (see --json)")
    grouping = report.get("grouping")
    if grouping:
        console.print(
            f"Split groups: {grouping['components']} (patients, exams, studies and identical "
            f"files linked); kept together: "
            f"{grouping['accessions_with_several_patients']['count']} exams with several "
            f"PatientIDs, {grouping['study_uids_with_several_patients']['count']} studies with "
            f"several PatientIDs, "
            f"{grouping['identical_files_under_several_exams']['count']} files copied under "
            f"several exams; {grouping['components_joining_several_patient_ids']} groups join "
            f"several PatientIDs; {grouping.get('per_view_patient_ids_shortened', 0)} per-view "
            "PatientIDs read as their patient", markup=False, highlight=False)
    checks = report.get("label_checks") or {}
    if checks.get("exams_with_breast_labels"):
        console.print(f"Exams labelled per breast: {checks['exams_with_breast_labels']} "
                      "(exam label = the denser breast)")
    if report.get("segmentation"):
        print_segmentation(report["segmentation"])
    verdict = "usable" if report["usable"] else "NOT usable"
    console.print(f"Verdict: {verdict} — {report['images']} images of {report['exams']} exams")


def print_dataset(console: Any, dataset: dict[str, Any]) -> None:
    """A public dataset's lines: how much of it the download holds, its label rule and
    official split (not wrapped: each is one line to grep)."""
    def line(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    listed, present = dataset["images_listed"], dataset["images_present"]
    share = f" ({present / listed:.1%})" if listed else ""
    line(f"Dataset {dataset['title']}: {present} of its {listed} listed images are in the "
         f"download{share}")
    line(f"  Labels: {dataset['label_rule']}")
    if dataset.get("official_sets"):
        sets = ", ".join(f"{k} {v}" for k, v in dataset["official_sets"].items())
        line(f"  Official sets (images kept): {sets}")
    split = dataset.get("split") or {}
    leaks = split.get("leaks") or {}
    if split.get("mode") not in (None, "all"):
        line(f"  --split {split['mode']}: {split['kept']} images of the {split['keeps']} set, "
             f"{split['held_out']} held out; {leaks['groups']} split groups in both sets "
             f"(--official-split-leak {split['leak_policy']})")
    elif leaks.get("groups"):
        line(f"  The official split leaks: {leaks['groups']} split groups have images in both "
             "sets (--split official/test ask what to do: --official-split-leak)")


#: Fingerprint fields shown by ``data check`` (all of them are in --json).
_SHOWN = (("manufacturer", "Manufacturer"), ("model", "Model"), ("sop_class", "SOP class"),
          ("image_kind", "Kind"), ("photometric", "Photometric"), ("bits_stored", "Bits stored"),
          ("voi_lut_function", "VOI LUT function"), ("image_size", "Image size"),
          ("pixel_spacing", "Pixel spacing (mm)"), ("view_source", "View from"),
          ("laterality_source", "Laterality from"))


def print_fingerprint(console: Any, fingerprint: dict[str, Any]) -> None:
    console.print("Acquisition fingerprint:")
    for key, title in _SHOWN:
        counts = fingerprint.get(key, {})
        if counts:
            shown = sorted(counts.items(), key=lambda kv: -kv[1])
            text = ", ".join(f"{value} {n}" for value, n in shown[:8])
            more = f" (+{len(shown) - 8} more)" if len(shown) > 8 else ""
            console.print(f"  {title}: {text}{more}", markup=False, highlight=False)


def run_check(cfg: DataCheckConfig) -> int:
    try:
        return _run_check(cfg)
    except DataError as exc:  # unusable data: the audit of what was found, then the error
        if cfg.json is not None:
            write_refused_audit(cfg.json, exc)
        raise
    except ShardFailed as exc:
        return cluster_failed(exc)


def cluster_failed(exc: ShardFailed) -> int:
    """A shard lost too often (or a bug on a node): one message, exit 1."""
    print(f"Error: {exc}", file=sys.stderr, flush=True)
    return EXIT_FAILED


def write_refused_audit(path: Path, exc: DataError) -> None:
    """``--json`` when the data is refused: the audit of what was read before (when
    there was a table), ``usable: false`` and the ``error``; the user needs it most then."""
    table = getattr(exc, "table", None)
    result = audit(table) if table is not None else {}
    result.update(usable=False, error=exc.render())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"Audit written to {path}")


def _run_check(cfg: DataCheckConfig) -> int:
    out = ConsoleReporter()
    table = load_table(cfg, out)
    segmentation = cluster = None
    if cfg.decode:
        from mammography.data.cache import ImageCache

        # The same decode, exclusions and --max-bad-fraction as data cache and training;
        # images the disk cache already holds for these settings decoded before.
        settings = preprocess_settings(cfg)
        cache = ImageCache(settings, cfg.cache_dir, "disk" if cfg.cache == "disk" else "off")
        report = cache.verify([r.path for r in table.images], workers=cfg.workers,
                              stats=[r.identity for r in table.images],
                              ray_address=cfg.ray_address, out=out)
        out.log(f"Decode check: {report.built + len(report.failed)} images decoded "
                f"({len(report.failed)} failed), {report.reused} already in the image cache "
                f"({report.seconds:.1f}s)")
        bad = [(r, report.failed[str(r.path)]) for r in table.images
               if str(r.path) in report.failed]
        with refused_table(table):
            exclude_bad_images(table, bad, on_bad_image=cfg.on_bad_image,
                               max_bad_fraction=cfg.max_bad_fraction, out=out,
                               what="undecodable")
        segmentation = segmentation_audit(table, report.info, settings.shape)
        cluster = report.cluster
    result = audit(table)
    result["decoded"] = cfg.decode
    result["segmentation"] = segmentation
    if cluster is not None:
        result["cluster"] = cluster
    if table.images:
        # Checksums (remembered between runs) give the leakage-proof split groups.
        result["grouping"] = write_data_manifest(None, table, out, group=True)["grouping"]
    result["label_checks"] = table.label_checks
    print_audit(result)
    if cfg.json is not None:
        cfg.json.parent.mkdir(parents=True, exist_ok=True)
        cfg.json.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"Audit written to {cfg.json}")
    return EXIT_OK if result["usable"] else 2


def run_cache(cfg: DataCacheConfig) -> int:
    out = ConsoleReporter()
    table = load_table(cfg, out)
    try:
        cache, report = build_cache(cfg, table, out, verify_entries=True)  # the thorough check
    except ShardFailed as exc:
        return cluster_failed(exc)
    print(f"Cache ready: {len(table.images)} images at {Path(cache.dir)}")
    if cfg.json is not None:
        cfg.json.parent.mkdir(parents=True, exist_ok=True)
        cfg.json.write_text(json.dumps({"images": len(table.images), **report,
                                        "exclusions": table.exclusions}, indent=2,
                                       default=str) + "\n", encoding="utf-8")
        print(f"Build report written to {cfg.json}")
    return EXIT_OK
