"""Scale-out on 2 cores: a 4-trial study and a 4-fold CV, parallel vs sequential.

Same tiny problem each way (synthetic data, test_efficientnet at 96 px,
3 epochs, cache built beforehand so nothing is decoded during the timings):

* study: `tune --engine optuna` (trials one after another, 2 threads each)
  vs `tune --engine ray` (2 trials at a time, 1 CPU each);
* CV: `train-density --cv-folds 4` vs `--cv-folds 4 --cv-workers 2`.

Wall time of the whole CLI call, and the speed-up. Goal: >= 1.7x with 2
workers. Fixed per-trial costs (process start, torch import: a few seconds
each) weigh heavily on problems this small; they are what keeps the ratio
from 2.0.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMON = ["--arch", "test_efficientnet", "--no-pretrained", "--img-size", "96", "--epochs",
          "3", "--num-workers", "0", "--batch-size", "16"]


def cli(*args: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mammography", *args], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {**os.environ, "MAMMOGRAPHY_CACHE_DIR": str(root / "cache")}
        cli("synth", "--out", str(root / "data"), "--exams", "60", "--size", "192x160",
            env=env)
        data = ["--csv", str(root / "data" / "classificacao.csv")]
        cli("data", "cache", *data, "--img-size", "96", env=env)
        study = [*data, *COMMON, "--n-trials", "4", "--pruner", "none"]
        timings = {
            "study, optuna sequential": cli("tune", *study, "--outdir", str(root / "a"),
                                            env=env),
            "study, ray 2 at a time": cli("tune", *study, "--engine", "ray",
                                          "--outdir", str(root / "b"), env=env),
            "cv 4 folds, sequential": cli("train-density", *data, *COMMON, "--cv-folds", "4",
                                          "--outdir", str(root / "c"), env=env),
            "cv 4 folds, 2 workers": cli("train-density", *data, *COMMON, "--cv-folds", "4",
                                         "--cv-workers", "2", "--outdir", str(root / "d"),
                                         env=env),
        }
    for name, seconds in timings.items():
        print(f"{name:<28}: {seconds:6.1f} s")
    for parallel, sequential in (("study, ray 2 at a time", "study, optuna sequential"),
                                 ("cv 4 folds, 2 workers", "cv 4 folds, sequential")):
        ratio = timings[sequential] / timings[parallel]
        print(f"speed-up {parallel:<22}: {ratio:.2f}x  goal >= 1.7: "
              f"{'OK' if ratio >= 1.7 else 'MISSED'}")


if __name__ == "__main__":
    main()
