"""The images to score: one decode-once cache per distinct preprocessing, built once.

Every model of a scoring call reads the cache of its own preprocessing (the
one it was trained with), so models sharing one share the cache. What any
cache cannot decode is excluded for every model - they score one set of
images - through the one bad-image rule (``data/table/exclusions.py``): a
WARNING and a recorded exclusion under ``--on-bad-image skip``, a stop under
``error``, and a stop when the unusable images, every stage together, exceed
``--max-bad-fraction``. With ``--cache off`` nothing is kept, so each image is
decoded once here (``ImageCache.verify``) to find what fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mammography.config.data import ClusterOptions
from mammography.data.cache import ImageCache
from mammography.data.table.exclusions import exclude_bad_images
from mammography.data.table.records import LabelTable
from mammography.engine.scoring.sources import ScoredModel, ScoringSettings
from mammography.errors import DataError
from mammography.record.reporter import Reporter


@dataclass
class ImagesToScore:
    """The table's images that can be scored, and the caches they are read from."""

    table: LabelTable  # the table given, without what could not be decoded
    caches: dict[str, ImageCache]  # by ``PreprocessSettings.key()``
    reports: list[dict[str, Any]]  # per cache: mode, preprocessing, dir, built, reused, ...
    excluded: list[dict[str, Any]]  # the exclusions recorded here (also in table.exclusions)

    def cache_of(self, model: ScoredModel) -> ImageCache:
        return self.caches[model.preprocess.key()]


def prepare_images(models: Sequence[ScoredModel], table: LabelTable,
                   settings: ScoringSettings, out: Reporter) -> ImagesToScore:
    """Build each distinct preprocessing's cache for ``table`` once and leave out (from
    ``table`` itself) what any of them cannot decode, by the bad-image rule."""
    caches: dict[str, ImageCache] = {}
    for model in models:
        caches.setdefault(model.preprocess.key(),
                          ImageCache(model.preprocess, settings.cache_dir, settings.cache))
    reports, failed = [], {}
    sources = [r.path for r in table.images]
    # predict --ray-address: the images to decode go to the cluster too (disk cache only).
    ray_address = (settings.ray_address if isinstance(settings, ClusterOptions)
                   and settings.cache == "disk" else None)
    for cache in caches.values():
        height, width = cache.settings.shape
        report = (cache.verify(sources, workers=settings.workers) if settings.cache == "off"
                  else cache.build(sources, workers=settings.workers, out=out,
                                   ray_address=ray_address))
        out.log(f"Image cache ({settings.cache}, {height}x{width}"
                f"{', ' + str(cache.dir) if settings.cache == 'disk' else ''}): "
                f"{report.reused} reused, {report.built} decoded, {report.regenerated} "
                f"regenerated, {len(report.failed)} failed ({report.seconds:.1f}s)")
        reports.append({"mode": settings.cache, "preprocessing": cache.settings.as_dict(),
                        "dir": str(cache.dir), **report.as_dict()})
        for path, reason in report.failed.items():
            failed.setdefault(path, reason)
    recorded = len(table.exclusions)
    if failed:
        bad = [(r, failed[str(r.path)]) for r in table.images if str(r.path) in failed]
        exclude_bad_images(table, bad, on_bad_image=settings.on_bad_image,
                           max_bad_fraction=settings.max_bad_fraction, out=out,
                           what="undecodable")
        if not table.images:
            record, reason = bad[0]
            raise DataError(f"None of the {len(bad)} images to score could be decoded (first: "
                            f"{record.path}: {reason}). Check --dicom-root and the decoder "
                            "plugins (`mammography data check`).")
    return ImagesToScore(table, caches, reports, table.exclusions[recorded:])
