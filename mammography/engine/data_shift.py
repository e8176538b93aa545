"""Are the scored images like the ones the models were trained on? The shift warning.

A density model trained on one vendor's 12-bit For Presentation images can
be silently wrong on another vendor's, on For Processing (raw detector)
data, or at an image size it never saw. Every training run's
``data_manifest.json`` holds the acquisition fingerprint of its images;
predict and eval-export (``--csv``: data other than the run's own split)
compare the fingerprint of the images they score with it and, per distinct
training data set (CV folds share one), name every manufacturer, image
kind, photometric interpretation, bit depth, VOI LUT function, image size or
pixel spacing that training never saw, in a WARNING and in summary.json
(``data_shift``). A model whose training data cannot be compared (an ONNX
file on another machine, a run older than the fingerprint) is named with the
reason, in the log and in the record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mammography.data.fingerprint import compare_fingerprints
from mammography.record.reporter import Reporter

#: What a WARNING advises by default (predict: the images have no labels to check with).
CHECK_ON_LABELLED = ("Predictions for such images may be unreliable: check the model on "
                     "labelled images of this kind (eval-export --csv) before relying on them.")


def check_shift(members: Sequence[Any], scored: dict[str, Any], out: Reporter, *,
                advice: str = CHECK_ON_LABELLED) -> dict[str, Any]:
    """Compare ``scored`` (the scored images' fingerprint) with each member's training
    data (``member.training``, a ``TrainedRun`` or None with ``member.training_note``);
    warn on what training never saw, followed by ``advice``. The ``data_shift`` record
    of summary.json."""
    groups: dict[str, dict[str, Any]] = {}
    unchecked = []
    for member in members:
        if member.training is None:
            unchecked.append({"model": member.label, "reason": member.training_note})
            continue
        trained = member.training.training_fingerprint()
        if trained.fingerprint is None:
            unchecked.append({"model": member.label, "reason": trained.reason})
            continue
        group = groups.setdefault(trained.digest, {"models": [], "manifest": str(
            trained.manifest.resolve()), "fingerprint": trained.fingerprint})
        group["models"].append(member.label)
    training = []
    for group in groups.values():
        differences = compare_fingerprints(group["fingerprint"], scored)
        names = ", ".join(group["models"])
        if differences:
            out.warn(f"The images scored differ from the training data of {names}: "
                     f"{'; '.join(differences)}. {advice}")
        else:
            out.log(f"Acquisition fingerprint: nothing in the scored images is new to the "
                    f"training data of {names}")
        training.append({"models": group["models"], "manifest": group["manifest"],
                         "differences": differences})
    for item in unchecked:
        out.log(f"No training fingerprint for {item['model']}: {item['reason']}; cannot tell "
                "whether the scored images differ from its training data")
    every = sorted({d for t in training for d in t["differences"]})
    return {"checked": bool(training), "shift_detected": bool(every), "differences": every,
            "training_data": training, "unchecked": unchecked}
