"""From data options to ready-to-train images, with everything recorded.

``prepare_data`` is the one path every image-reading command takes: labels
CSV → image table (DICOM headers for patient, view, laterality) → decode-once
cache → data manifest in the run directory. Each step's exclusions (class 5,
missing files, unreadable images) are logged as WARNING lines and kept, so
the manifest says exactly what was used and what was left out, and why.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from mammography.config.data import (
    ClusterOptions,
    ImageConfig,
    LabelledSource,
    PreprocessOptions,
)
from mammography.data.density_labels import check_breast_labels
from mammography.data.grouping import normalise_patient_ids
from mammography.data.official_split import select_official_set
from mammography.data.table.exclusions import exclude_bad_images
from mammography.data.table.headers import attach_remembered_headers
from mammography.data.table.reader import load_label_table
from mammography.data.table.records import LabelTable
from mammography.errors import DataError
from mammography.record.contract import MANIFEST_FILE
from mammography.record.reporter import CONSOLE, Reporter

__all__ = ["MANIFEST_FILE", "PreparedData", "build_cache", "data_config", "dataset_config",
           "load_table", "prepare_data", "recorded_changes", "refused_table",
           "write_data_manifest"]



@dataclass
class PreparedData:
    table: LabelTable
    cache: Any  # ImageCache (typed loosely: importing it pulls numpy)
    manifest: dict[str, Any]
    cache_report: dict[str, Any]

    @property
    def manifest_digest(self) -> str:
        return self.manifest["digest"]


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while the per-image tables are built.

    Preparing the data makes a few objects per image (records, headers, manifest
    entries) that all stay alive, and almost no cycles; every automatic
    collection meanwhile walks all of them again, which cost a warm start at
    50,000 images as much CPU as the rest of it (measured: json.loads of a
    remembered header 12 us with the collector on, 3.8 us off). Reference
    counting still frees everything else; the previous state comes back after.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            # What was made meanwhile (the table: records, headers, paths) lives as long
            # as the command, yet sits in the youngest generation: re-enabled, the
            # collector would walk all of it in the first collections of each younger
            # generation (~20 us an image right after a warm start). freeze + unfreeze
            # moves it to the oldest generation without a walk (nothing is exempted).
            gc.freeze()
            gc.unfreeze()
            gc.enable()


@contextlib.contextmanager
def refused_table(table: LabelTable) -> Iterator[None]:
    """A ``DataError`` raised inside carries ``table`` (as ``exc.table``): what was found
    and excluded before the data was refused, for ``data check --json``."""
    try:
        yield
    except DataError as exc:
        if getattr(exc, "table", None) is None:
            exc.table = table  # type: ignore[attr-defined]
        raise


def preprocess_settings(cfg: ImageConfig) -> Any:
    from mammography.data.preprocess import PreprocessSettings

    return PreprocessSettings.for_size(cfg.img_size, crop_breast=cfg.crop_breast,
                                       multiframe=cfg.multiframe, j2k_reduce=cfg.j2k_reduce)


def load_table(cfg: LabelledSource, out: Reporter = CONSOLE,
               frames: str | None = None, remember: bool = False) -> LabelTable:
    """Labels CSV plus DICOM headers, with per-file problems excluded.

    What the header alone rules out (no pixel data, colour, short pixel data,
    multi-frame unless ``frames`` - default: ``cfg.multiframe`` for image
    commands, else "exclude" - takes a frame) is excluded here, before any
    decoding, with the reason the decoder would give.

    ``remember``: through the whole-table memo (``table_memo.py``): the table
    given back, without reading it, while nothing it was read from changed.
    """
    policy = frames or (cfg.multiframe if isinstance(cfg, PreprocessOptions) else "exclude")
    with collector_paused():
        memo = None
        if remember:
            from mammography.data.table_memo import TableMemo

            memo = TableMemo.for_config(cfg, policy)
        if memo is None:
            return _load_table(cfg, out, policy)
        table = memo.recall(out)
        if table is not None:
            return table
        with memo.recording(out) as recorder:
            table = _load_table(cfg, recorder, policy)
        memo.keep(table, recorder)
        return table


def _load_table(cfg: LabelledSource, out: Reporter, policy: str) -> LabelTable:
    from mammography.data.dicom.decode import image_problem, read_header
    from mammography.data.fingerprint import processing_mix

    table = load_label_table(cfg.csv, cfg.dicom_root, include_class_5=cfg.include_class_5,
                             path_column=cfg.path_column, label_column=cfg.label_column,
                             dataset=cfg.dataset, out=out)
    with refused_table(table):
        attach_remembered_headers(table, read_header,
                                  image_problem=partial(image_problem, frames=policy),
                                  on_bad_image=cfg.on_bad_image,
                                  max_bad_fraction=cfg.max_bad_fraction, out=out)
        table.per_view_patient_ids = normalise_patient_ids(table.images, out)
        # The official set, once patients and studies are known (the leak check needs them).
        select_official_set(table, cfg.split, cfg.official_split_leak, out)
        table.label_checks = check_breast_labels(table.images, table.exclude, out)
        if not table.images:
            raise DataError(f"No usable images in {table.csv_path}: every image was "
                            "excluded (see the WARNING lines above).")
    warning = processing_mix(table.fingerprint(), table.images)
    if warning:
        out.warn(warning)
    return table


def build_cache(cfg: ImageConfig, table: LabelTable, out: Reporter = CONSOLE,
                progress: bool = True, verify_entries: bool = False
                ) -> tuple[Any, dict[str, Any]]:
    """Decode every image once into the cache; undecodable ones become exclusions.

    Existing entries are trusted when they have the right size and verified
    (CRC) when first read, where a damaged one is rebuilt; ``verify_entries``
    reads and checks every one of them now instead (``data cache``). A command
    with ``--ray-address`` (``ClusterOptions``) decodes the missing images on that
    Ray cluster (data/cluster/); the report then holds the cluster's record.
    """
    from mammography.data.cache import ImageCache

    cache = ImageCache(preprocess_settings(cfg), cfg.cache_dir, cfg.cache)
    if cfg.cache == "off":
        out.log("Image cache off: images are decoded on every read")
        return cache, {"mode": "off"}
    sources = [r.path for r in table.images]
    report = cache.build(sources, workers=cfg.workers, out=out, progress=progress,
                         lazy=not verify_entries,
                         stats=[r.identity for r in table.images],
                         ray_address=(cfg.ray_address if isinstance(cfg, ClusterOptions)
                                      and cfg.cache == "disk" else None))
    out.log(f"Image cache ({cfg.cache}, {cache.dir if cfg.cache == 'disk' else 'RAM'}): "
            f"{report.reused} reused, {report.built} decoded, {report.regenerated} regenerated, "
            f"{len(report.failed)} failed ({report.seconds:.1f}s)")
    if report.fault:
        out.warn(cache_fault_warning(report.fault))
    if report.failed:
        bad = [(r, report.failed[str(r.path)]) for r in table.images
               if str(r.path) in report.failed]
        exclude_bad_images(table, bad, on_bad_image=cfg.on_bad_image,
                           max_bad_fraction=cfg.max_bad_fraction, out=out, what="undecodable")
    return cache, {"mode": cfg.cache, "dir": str(cache.dir), **report.as_dict()}


def cache_fault_warning(fault: str) -> str:
    """The WARNING for a disk cache that cannot be used (``ImageCache.fault``)."""
    return (f"the image cache cannot be used: {fault}. This run decodes the images it "
            "cannot find there in memory whenever it reads them (slower); no image is "
            "excluded for it. Fix: free disk space, make the cache folder writable or remove "
            "what stands in its way, or point --cache-dir (or MAMMOGRAPHY_CACHE_DIR) at "
            "another folder; --cache memory keeps images in RAM instead.")


def write_data_manifest(run_dir: Path | None, table: LabelTable, out: Reporter = CONSOLE,
                        extra: dict[str, Any] | None = None,
                        group: bool = False, trust_memo: bool = True) -> dict[str, Any]:
    """``data_manifest.json`` for the images in ``table`` (checksums memoised); with
    ``run_dir`` None the manifest is only computed (a worker checking its data).

    ``group``: also give every image its file checksum and leakage-proof split
    group (``grouping.py``), recorded under the manifest's ``grouping``. The
    manifest's ``fingerprint`` is the acquisition fingerprint of the images
    (``fingerprint.py``); records without a header (e.g. read back from a
    splits.csv) count under ``images_without_header``. ``trust_memo`` False:
    every file is hashed again, whatever the checksum memo remembers.
    """
    with collector_paused():
        return _write_data_manifest(run_dir, table, out, extra, group, trust_memo)


def _write_data_manifest(run_dir: Path | None, table: LabelTable, out: Reporter,
                         extra: dict[str, Any] | None, group: bool,
                         trust_memo: bool) -> dict[str, Any]:
    from mammography.data.manifest import (
        ChecksumMemo,
        build_manifest,
        default_memo_path,
        write_manifest,
    )

    with ChecksumMemo(default_memo_path()) as memo:
        if memo.warning:
            out.warn(memo.warning)
        manifest = build_manifest(csv_path=table.csv_paths or table.csv_path,
                                  dicom_root=table.dicom_root,
                                  images=[r.path for r in table.images],
                                  exclusions=table.exclusions, memo=memo, extra=extra,
                                  fingerprint=table.fingerprint(),
                                  absolute={r.path: r.identity[0] for r in table.images
                                            if r.identity is not None},
                                  trust_memo=trust_memo)
    manifest["headers"] = table.headers or None  # how load_table got them (memo hits)
    if table.dataset:  # a public dataset's files, label rule, presence, official split
        manifest["dataset"] = table.dataset
    if group:
        manifest["grouping"] = assign_groups(table, manifest, out)
    if run_dir is not None:
        write_manifest(Path(run_dir) / MANIFEST_FILE, manifest)
    hashing = manifest.get("hashing", {})
    how = ("" if trust_memo else ": every file hashed again, the checksum memo not trusted "
           "(--trust-memo skips that)")
    out.log(f"Data manifest: {manifest['num_images']} images, {manifest['num_exclusions']} "
            f"exclusions, digest {manifest['digest'][:12]} ({hashing.get('files_hashed', 0)} "
            f"hashed, {hashing.get('files_from_memo', 0)} remembered{how})")
    return manifest


def assign_groups(table: LabelTable, manifest: dict[str, Any], out: Reporter) -> dict[str, Any]:
    """Each image's sha256 (from the manifest) and split group; the grouping report."""

    from mammography.data.grouping import leakage_groups, warn_leakage
    from mammography.data.manifest import display_path, shown_path

    root = os.path.abspath(table.dicom_root) if table.dicom_root is not None else None
    sha = {entry["path"]: entry["sha256"] for entry in manifest["images"]}
    for record in table.images:
        shown = (shown_path(record.identity[0], root) if record.identity
                 else display_path(record.path, root))
        record.sha256 = sha.get(shown, "")
    grouping = leakage_groups(table.images)
    for record, name in zip(table.images, grouping.groups, strict=True):
        record.group = name
    warn_leakage(grouping.report, out)
    report = {**grouping.report, "per_view_patient_ids_shortened": table.per_view_patient_ids}
    out.log(f"Split groups: {report['components']} (patient, exam, study and file content "
            f"linked; {report['patients']} patients, {report['exams']} exams)")
    return report


def recorded_changes(recorded: dict[str, Any] | None, manifest: dict[str, Any]) -> str:
    """``: <what differs>`` between a run's recorded data manifest and ``manifest``
    (files named), for a message; empty when the recorded one is unknown or unreadable."""
    from mammography.data.manifest import changes_since

    if not recorded:
        return ""
    try:
        text = changes_since(recorded, manifest)
    except (ValueError, TypeError, KeyError, AttributeError):
        return ""
    return f": {text}" if text else ""


def data_config(cfg: LabelledSource, table: LabelTable, manifest: dict[str, Any]) -> dict[str, Any]:
    """The ``data_config`` section of summary.json."""
    return {
        "csv": str(cfg.csv_file),
        **({"csv_files": [str(p) for p in cfg.csv]} if len(cfg.csv) > 1 else {}),
        "csv_format": table.csv_format,
        **dataset_config(table),
        "dicom_root": str(table.dicom_root) if table.dicom_root else None,
        "num_images": len(table.images),
        "num_exams": table.num_exams,
        "num_patients": table.num_patients,
        "class_distribution": table.class_distribution("exam"),
        "class_distribution_images": table.class_distribution("image"),
        "num_excluded": len(table.exclusions),
        "num_split_groups": (manifest.get("grouping") or {}).get("components"),
        "exams_with_breast_labels": table.label_checks.get("exams_with_breast_labels", 0),
        "manifest_digest": manifest["digest"],
        "manifest_file": MANIFEST_FILE,
    }


def dataset_config(table: LabelTable) -> dict[str, Any]:
    """A public dataset's part of summary.json ``data_config`` (empty for other tables):
    its name, label rule, how much of it the download holds, and the official split."""
    if not table.dataset:
        return {}
    record = table.dataset
    return {"dataset": {key: record.get(key) for key in (
        "name", "title", "label_rule", "images_listed", "images_present", "images_missing",
        "official_sets", "split")}}


def prepare_data(cfg: ImageConfig, run_dir: Path | None, out: Reporter = CONSOLE,
                 progress: bool = True, trust_memo: bool = True,
                 remember_table: bool = False) -> PreparedData:
    """Labels, headers, cache and manifest (written to ``run_dir`` unless None).

    ``trust_memo`` False hashes every image again for the manifest instead of
    taking remembered checksums (``--resume`` does, unless ``--trust-memo``:
    proving the data unchanged is its job); it also reads the table afresh.
    ``remember_table``: through the whole-table memo (``load_table``).
    """
    with collector_paused():
        return _prepare_data(cfg, run_dir, out, progress, trust_memo,
                             remember_table and trust_memo)


def _prepare_data(cfg: ImageConfig, run_dir: Path | None, out: Reporter,
                  progress: bool, trust_memo: bool, remember_table: bool) -> PreparedData:
    table = load_table(cfg, out, remember=remember_table)
    cache, cache_report = build_cache(cfg, table, out, progress)
    out.log(f"Found {len(table.images)} images of {table.num_exams} exams from "
            f"{table.num_patients} patients")
    out.log(f"Class distribution: {_pretty(table.class_distribution('exam'))} (exams), "
            f"{_pretty(table.class_distribution('image'))} (images)")
    manifest = write_data_manifest(run_dir, table, out,
                                   extra={"preprocessing": cache.settings.as_dict()}, group=True,
                                   trust_memo=trust_memo)
    return PreparedData(table, cache, manifest, cache_report)


def _pretty(counts: dict[str, int]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in counts.items()) + "}"
