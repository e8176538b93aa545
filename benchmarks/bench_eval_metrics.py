"""eval-export's statistics at paper scale: 2 models x 10,000 images x 2,000 resamples.

What eval-export computes after the models have run, on synthetic predictions
(4 views per exam, 2 exams per patient): the metric pack at image, breast and
exam level with patient-clustered bootstrap CIs for each model, and the paired
comparison of the two (paired bootstrap of every metric, DeLong for the AUCs).
The baseline, measured in the same run, is the straightforward way: one
scikit-learn pass over the pack per resample (timed on a few resamples and
scaled to the same count). Goal: the whole evaluation stays vectorised, i.e.
a large factor faster than the per-resample baseline.

``--images N --resamples N`` to change the scale.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mammography.metrics import classification_metrics
from mammography.metrics.evaluation import evaluate_levels, paired_comparison


def synthetic(n: int, seed: int, skill: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(rng.integers(0, 4, n // 4), 4)[:n]  # an exam's views share its label
    logits = rng.normal(size=(n, 4))
    logits[np.arange(n), y] += skill
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return y, p / p.sum(axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--resamples", type=int, default=2_000)
    args = parser.parse_args()
    n, resamples = args.images, args.resamples
    y, p_a = synthetic(n, 0, 2.0)
    _, p_b = synthetic(n, 1, 1.5)
    accessions = [f"E{i // 4}" for i in range(n)]
    breasts = [f"E{i // 4}/{'LR'[(i // 2) % 2]}" for i in range(n)]
    patients = [f"P{i // 8}" for i in range(n)]

    started = time.perf_counter()
    for probs in (p_a, p_b):
        evaluate_levels(y, probs, accessions, breasts, patients, bootstrap=resamples, seed=0)
    levels_seconds = time.perf_counter() - started
    started = time.perf_counter()
    rows = paired_comparison("a", "b", y, p_a, p_b, accessions, breasts, patients,
                             bootstrap=resamples, seed=0)
    paired_seconds = time.perf_counter() - started

    rng = np.random.default_rng(0)
    probe = 5
    started = time.perf_counter()
    for _ in range(probe):
        rows_drawn = rng.integers(0, n, n)
        classification_metrics(y[rows_drawn], p_a[rows_drawn])
    per_resample = (time.perf_counter() - started) / probe
    # Per model: 3 levels of CIs; the paired comparison: 3 levels x 2 models.
    baseline = per_resample * resamples * (2 * 3 + 2 * 3)
    ours = levels_seconds + paired_seconds
    print(f"{n} images, {resamples} patient-clustered resamples, 2 models, 3 levels")
    print(f"metric pack + CIs, both models : {levels_seconds:7.1f} s")
    print(f"paired comparison ({len(rows)} rows): {paired_seconds:7.1f} s")
    print(f"total                          : {ours:7.1f} s")
    print(f"baseline, sklearn per resample : {baseline:7.1f} s (measured on {probe} resamples)")
    print(f"ours / baseline                : {ours / baseline:7.3f}")


if __name__ == "__main__":
    main()
