"""What recording and verifying model files costs: an epoch's checkpoint saves, and a load.

An epoch of train-density saves ``best_model.pt`` (when it improved) and
``last_checkpoint.pt``, then updates summary.json once. Since model files are
part of the record, each save also hashes the written file and rewrites
summary.json twice (the digest announced as pending before the rename, then
recorded): ``engine.checkpoint.save_recorded``. Measured here on an
efficientnet_b0 (the demo's model; best_model.pt ~16 MB, last_checkpoint.pt
with AdamW's state ~48 MB) against the plain temp-file + rename save of
before (``baseline``), in alternating pairs, medians of the per-pair ratios; the
summary is a real one (this machine's environment, every installed package).

Loading: ``TrainedRun.checkpoint_bytes`` (read once, hash those bytes, load them,
check the run id) against a plain ``torch.load(weights_only=True)``.

Goal: the extra time per epoch is under 1 % of the demo's CPU epoch time
(README: ~30 s per epoch on 2 cores), i.e. well under 0.3 s.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from mammography.engine.checkpoint import best_payload, load_safely, save_recorded
from mammography.engine.trained_run import TrainedRun
from mammography.models.factory import create_model
from mammography.record.document import initial_document
from mammography.record.environment import collect_environment
from mammography.record.reporter import CollectingReporter
from mammography.record.summary import SummaryWriter
from mammography.record.view import RunView

ARCH, REPEATS = "efficientnet_b0", 7
DEMO_EPOCH_SECONDS = 30.0


class SummaryRun:
    """A run's summary.json writer with the RunContext methods the writer uses."""

    def __init__(self, directory: Path, document: dict[str, Any]) -> None:
        self.dir, self.run_id, self.is_primary = directory, "results_1", True
        self.summary = SummaryWriter(directory / "summary.json", document)

    def get(self, key: str, default: Any = None) -> Any:
        return self.summary.get(key, default)

    def update(self, fragment: dict[str, Any] | None = None, **fields: Any) -> None:
        self.summary.update(fragment, **fields)


def plain_save(obj: Any, path: Path) -> None:
    """The save of before: torch.save into a temp file, renamed into place."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    torch.save(obj, temp)
    os.replace(temp, path)


def main() -> None:
    torch.manual_seed(0)
    model = create_model(ARCH, pretrained=False)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.zeros(2, 1, 64, 64)).sum().backward()
    optimizer.step()  # AdamW's moments exist, as in a real last_checkpoint.pt
    best = best_payload(model, arch=ARCH, epoch=1, metrics={}, preprocess={"img_size": 128},
                        normalization={"mean": 0.449, "std": 0.226})
    last = {"state_dict": model.state_dict(), "optimizer": optimizer.state_dict()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        document = initial_document(
            experiment_type="density_classification", command="train-density",
            run_id="results_1", run_dir=root, parent_dir=None, seed=0, provenance={},
            version="bench", hyperparameters={}, config_record=None,
            environment=collect_environment(), rerun_command=None, integration={},
            based_on=None, started="now")
        run = SummaryRun(root, document)
        best["run_uid"] = document["run_uid"]

        def epoch_before() -> None:
            plain_save(best, root / "best_model.pt")
            plain_save(last, root / "last_checkpoint.pt")
            run.update(results={"epochs_completed": 1})

        def epoch_now() -> None:
            save_recorded(best, root / "best_model.pt", run)
            save_recorded(last, root / "last_checkpoint.pt", run)
            run.update(results={"epochs_completed": 1})

        trained = TrainedRun.of(RunView.read(root))
        out = CollectingReporter()

        def load_before() -> None:
            load_safely(root / "best_model.pt", "best model")

        def load_now() -> None:
            TrainedRun.of(RunView.read(root)).checkpoint_bytes(trained.best_model, out,
                                                               "best model")

        results = {}
        for name, before, now in (("epoch's saves", epoch_before, epoch_now),
                                  ("best_model.pt load", load_before, load_now)):
            before(), now()  # warm-up (and the files exist for the loads)
            pairs = []
            for repeat in range(REPEATS):
                pair = {}
                for which, fn in ((("before", before), ("now", now)) if repeat % 2 == 0
                                  else (("now", now), ("before", before))):
                    start = time.perf_counter()
                    fn()
                    pair[which] = time.perf_counter() - start
                pairs.append(pair)
            results[name] = pairs
        sizes = {p.name: p.stat().st_size for p in root.glob("*.pt")}
        summary_bytes = (root / "summary.json").stat().st_size
    print(f"{ARCH}: best_model.pt {sizes['best_model.pt'] / 1e6:.1f} MB, last_checkpoint.pt "
          f"{sizes['last_checkpoint.pt'] / 1e6:.1f} MB, summary.json {summary_bytes / 1e3:.0f} kB;"
          f" {torch.get_num_threads()} threads; medians of {REPEATS} alternating pairs")
    for name, pairs in results.items():
        before = statistics.median(p["before"] for p in pairs)
        now = statistics.median(p["now"] for p in pairs)
        extra = statistics.median(p["now"] - p["before"] for p in pairs)
        ratio = statistics.median(p["now"] / p["before"] for p in pairs)
        print(f"{name:<20}: before {before * 1e3:7.1f} ms, now {now * 1e3:7.1f} ms "
              f"({ratio:.2f}x, +{extra * 1e3:.1f} ms)")
    extra = statistics.median(p["now"] - p["before"] for p in results["epoch's saves"])
    share = extra / DEMO_EPOCH_SECONDS
    print(f"extra per epoch (best and last saved): {extra * 1e3:.1f} ms = {100 * share:.2f} % of "
          f"a {DEMO_EPOCH_SECONDS:.0f} s demo epoch; goal < 1 %: "
          f"{'OK' if share < 0.01 else 'MISSED'}")


if __name__ == "__main__":
    main()
