"""The acquisition fingerprint: what kind of images a dataset holds, by header.

A model trained on one vendor's For Presentation images at 12 bits can fail
silently on another vendor's, on For Processing (raw detector) data, or on
images with a sigmoid VOI LUT. :func:`acquisition_fingerprint` counts, over
the images of a table, everything in the header that changes what the
network sees: manufacturer and model, SOP class (and what kind of image -
For Presentation, For Processing, DBT, synthetic 2-D), photometric
interpretation, bits stored, VOI LUT function, image size, pixel spacing,
view and laterality. Every run's ``data_manifest.json`` carries it under
``fingerprint``; ``data check`` prints it; :func:`compare_fingerprints` turns
two of them into the sentences a user needs ("manufacturer X never seen in
training"), so evaluation and prediction can warn when the data differs from
the data a model was trained on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

FINGERPRINT_VERSION = 1

#: Fingerprint fields compared between datasets, with how a difference reads.
_COMPARED = (
    ("manufacturer", "manufacturer {} never seen in training"),
    ("model", "model {} never seen in training"),
    ("image_kind", "{} images, none in training"),
    ("photometric", "photometric interpretation {} not in training"),
    ("bits_stored", "bits stored {} not in training"),
    ("voi_lut_function", "VOI LUT function {} not in training"),
    ("image_size", "image size {} not in training"),
    ("pixel_spacing", "pixel spacing {} mm not in training"),
)


_KEYS = ("manufacturer", "model", "sop_class", "image_kind", "photometric", "bits_stored",
         "voi_lut_function", "image_size", "pixel_spacing", "view", "laterality",
         "view_source", "laterality_source")


def acquisition_fingerprint(records: Iterable[Any]) -> dict[str, Any]:
    """Counts per acquisition property over records that carry a ``header`` (JSON-ready)."""
    # Count the raw properties first (one tuple per image; an archive has few
    # distinct ones), then spell each distinct tuple out once: this runs twice
    # per run over every image.
    raw: Counter[tuple] = Counter()
    images = without_header = 0
    for record in records:
        images += 1
        header = getattr(record, "header", None)
        if header is None:
            without_header += 1
            continue
        raw[(header.manufacturer, header.model, header.sop_class, header.image_kind,
             header.photometric, header.bits_stored, header.voi_lut_function, header.rows,
             header.columns, header.pixel_spacing, getattr(record, "view", ""),
             getattr(record, "laterality", ""), getattr(record, "view_source", ""),
             getattr(record, "laterality_source", ""))] += 1
    counts: dict[str, Counter[str]] = {key: Counter() for key in _KEYS}
    for properties, n in raw.items():
        for key, value in zip(_KEYS, _spelled(*properties), strict=True):
            counts[key][value] += n
    return {"fingerprint_version": FINGERPRINT_VERSION, "images": images,
            "images_without_header": without_header,
            **{key: dict(sorted(counter.items())) for key, counter in counts.items()}}


def _spelled(manufacturer: str, model: str, sop_class: str, image_kind: str, photometric: str,
             bits_stored: int, voi_lut_function: str, rows: int, columns: int,
             pixel_spacing: tuple[float, float] | None, view: str, laterality: str,
             view_source: str, laterality_source: str) -> tuple[str, ...]:
    """One image's fingerprint values, in ``_KEYS`` order."""
    manufacturer = manufacturer or "unknown"
    return (manufacturer, f"{manufacturer} {model or 'unknown'}", sop_class or "unknown",
            image_kind, photometric or "unknown", str(bits_stored), voi_lut_function or "none",
            f"{rows}x{columns}",
            f"{pixel_spacing[0]:g}x{pixel_spacing[1]:g}" if pixel_spacing else "unknown",
            view or "unknown", laterality or "unknown", view_source or "none",
            laterality_source or "none")


def compare_fingerprints(reference: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """How ``other`` (evaluated data) differs from ``reference`` (training data), as sentences.

    Only values present in ``other`` and absent from ``reference`` are named;
    an empty list means nothing in ``other`` is new. A reference without a
    fingerprint (a run from before they were recorded) gives one sentence
    saying so.
    """
    if not reference or not reference.get("images"):
        return ["the training data has no acquisition fingerprint (an older run?): "
                "cannot tell whether the data differ"]
    differences = []
    for key, template in _COMPARED:
        seen = set(reference.get(key, {}))
        for value, count in sorted(other.get(key, {}).items()):
            if value not in seen and value != "unknown":
                differences.append(f"{template.format(value)} ({count} images)")
    return differences


#: For Processing files a warning names.
EXAMPLES = 3


def processing_mix(fingerprint: dict[str, Any], records: Sequence[Any] = ()) -> str | None:
    """A warning when For Processing and For Presentation images are mixed (or only
    Processing); with ``records`` (image records: ``path``, ``accession``,
    ``for_processing``) it names the first few For Processing files and their exams,
    so the one odd image among fifty can be found."""
    kinds = fingerprint.get("image_kind", {})
    processing = kinds.get("For Processing", 0)
    if not processing:
        return None
    examples = [r for r in records if getattr(r, "for_processing", False)][:EXAMPLES]
    named = ""
    if examples:
        more = f" and {processing - len(examples)} more" if processing > len(examples) else ""
        named = (" (" + ", ".join(f"{r.path} of exam {r.accession or '?'}" for r in examples)
                 + more + ")")
    others = sum(n for kind, n in kinds.items() if kind != "For Processing")
    if others:
        return (f"{processing} 'For Processing' images (raw detector data){named} are mixed "
                f"with {others} 'For Presentation' ones in one set: they need different "
                "intensity handling, so a model sees two kinds of image. Train on one kind.")
    return (f"all {processing} images are 'For Processing' (raw detector data){named}; "
            "density models are trained on 'For Presentation' images.")
