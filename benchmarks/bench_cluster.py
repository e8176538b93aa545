"""EMBED on a cluster: measured per-image and per-task costs, and the projected wall time.

Measured in this run, on this machine:

* **per image**: CPU seconds to bring one synthetic full-field JPEG 2000 mammogram
  (``--size``, default 4096 x 3328, 14 bits) to the 512 px cache entry, reduced-
  resolution decoding on (the default), one process (``ImageCache`` building one
  entry at a time; median of ``--images``);
* **per task**: what one Ray task costs beyond its work, on a two-node Ray cluster on
  loopback (``.ci/ray-cluster``, started here unless ``--ray-address`` names one):
  ``map_shards`` over ``--tasks`` shards of one item whose function does nothing, so
  the wall time per task and task slot is scheduling, shipping the shard and its
  result, and the driver's bookkeeping;
* **embed / predict per image and per task**: CPU seconds of one image through
  ``--model-arch`` (default efficientnet_b0, random weights) at ``--img-size`` in
  batches of ``--model-batch``, one torch thread (what a task runs with
  ``OMP_NUM_THREADS=1``), and what a task pays once to rebuild the model from the
  shipped weights (``engine/cluster/weights.py``: sha256 check, weights-only load),
  as a share of a shard of 64 images;
* **the same images on the cluster**: ``data cache --ray-address`` against ``data
  cache --workers 2`` on this machine, images/s (both nodes share this machine's
  cores, so this shows the overhead, not a speed-up).

**Projected** (not measured: nobody here has 16 nodes) for EMBED, ``--embed-images``
(480,000) images, on 1, 4 and 16 nodes of ``--cores`` (16) cores each, one task per
core, shards as ``data/cluster/shards.py`` cuts them::

    wall = ceil(shards / task slots) x (shard size x per-image CPU + per-task cost)
           + node check

assuming the shared storage keeps up (480,000 files of ~8 MB in a few hours is
~0.3-4 GB/s) and every core decodes as fast as this machine's.

    python benchmarks/bench_cluster.py [--images 4] [--tasks 200] [--ray-address ADDR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EMBED_IMAGES = 480_000


def per_image_cpu(data: Path, img_size: int) -> list[float]:
    """CPU seconds per image of a one-process cache build at ``img_size`` (fresh cache)."""
    from mammography.data.cache import ImageCache
    from mammography.data.preprocess import PreprocessSettings

    files = sorted((data / "archive").rglob("*.dcm"))
    with tempfile.TemporaryDirectory() as root:
        cache = ImageCache(PreprocessSettings.for_size(img_size), Path(root))
        seconds = []
        for path in files:
            start = time.process_time()
            cache.load(path)
            seconds.append(time.process_time() - start)
    return seconds


def nothing(items: list) -> list:
    return items


def per_task_seconds(address: str, tasks: int) -> dict[str, float]:
    """Wall seconds per task and slot of ``tasks`` one-item shards doing nothing."""
    from mammography.data.cluster import map_shards
    from mammography.record.reporter import CollectingReporter

    # Once to start the workers (their imports are paid once per worker, not per task).
    map_shards(nothing, list(range(4)), address=address, label="warm-up", shard_size=1,
               out=CollectingReporter(), progress=False)
    start = time.perf_counter()
    run = map_shards(nothing, list(range(tasks)), address=address, label="empty shards",
                     shard_size=1, out=CollectingReporter(), progress=False)
    wall = time.perf_counter() - start
    slots = run.record.cluster_cpus
    return {"tasks": tasks, "slots": slots, "wall_seconds": round(wall, 3),
            "seconds_per_task_and_slot": wall * slots / tasks,
            "driver_tasks_per_second": tasks / wall}


def model_costs(arch: str, img_size: int, batch: int) -> dict[str, float]:
    """CPU seconds per image of the backbone's forward (one thread), and wall seconds of a
    task's model rebuild from shipped weights (median of 3)."""
    import torch

    from mammography.data.cluster.shards import MAX_SHARD_IMAGES, aligned
    from mammography.engine.cluster.weights import BACKBONE, ShippedWeights
    from mammography.models.factory import create_backbone

    torch.set_num_threads(1)
    backbone = create_backbone(arch, pretrained=False).eval()
    x = torch.rand(batch, 1, img_size, img_size)
    with torch.no_grad():
        backbone(x)  # warm-up: first-call allocations
        start = time.process_time()
        for _ in range(2):
            backbone(x)
        per_image = (time.process_time() - start) / (2 * batch)
    shipped = ShippedWeights.of(backbone, BACKBONE, arch)
    rebuilds = []
    for _ in range(3):
        start = time.perf_counter()
        shipped.load()
        rebuilds.append(time.perf_counter() - start)
    rebuild = statistics.median(rebuilds)
    shard = aligned(MAX_SHARD_IMAGES, batch)
    return {"arch": arch, "img_size": img_size, "batch": batch,
            "forward_cpu_s_per_image": per_image, "weights_bytes": len(shipped.data),
            "rebuild_s_per_task": rebuild, "shard": shard,
            "rebuild_share_of_shard": rebuild / (rebuild + shard * per_image)}


def cli(*args: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mammography", *args], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"mammography {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return time.perf_counter() - start


def projection(images: int, nodes: int, cores: int, image_cpu: float, task: float,
               check: float) -> dict[str, float]:
    from mammography.data.cluster.shards import plan_shards, shard_size_for

    slots = nodes * cores
    size = shard_size_for(images, slots)
    shards = len(plan_shards(images, size))
    rounds = math.ceil(shards / slots)
    wall = rounds * (size * image_cpu + task) + check
    return {"nodes": nodes, "cores": slots, "shard_size": size, "shards": shards,
            "hours": wall / 3600, "task_overhead_share": task / (size * image_cpu + task)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=4, help="full-field J2K images")
    parser.add_argument("--size", default="4096x3328")
    parser.add_argument("--img-size", type=int, default=512)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--cores", type=int, default=16, help="cores per projected node")
    parser.add_argument("--embed-images", type=int, default=EMBED_IMAGES)
    parser.add_argument("--model-arch", default="efficientnet_b0")
    parser.add_argument("--model-batch", type=int, default=8)
    parser.add_argument("--ray-address", help="a running cluster (default: start two "
                        "loopback nodes with .ci/ray-cluster)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only
    sys.path.insert(0, str(REPO))
    from mammography.config.synth import SynthConfig
    from mammography.data.synthetic import generate_dataset

    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        tmp_path = Path(tmp)
        data = tmp_path / "data"
        exams = max(1, math.ceil(args.images / 4))
        generate_dataset(SynthConfig(out=data, exams=exams, seed=11, size=args.size,
                                     compression="j2k"), log=lambda message: None)
        cpu = per_image_cpu(data, args.img_size)
        image_cpu = statistics.median(cpu)
        print(f"Per image (measured): {image_cpu:.3f} s CPU median of {len(cpu)} full-field "
              f"J2K images {args.size} -> {args.img_size} px (min {min(cpu):.3f}, max "
              f"{max(cpu):.3f})")
        model = model_costs(args.model_arch, args.img_size, args.model_batch)
        print(f"embed/predict per image (measured): {model['forward_cpu_s_per_image']:.3f} s "
              f"CPU through {model['arch']} at {model['img_size']} px, batches of "
              f"{model['batch']}, one torch thread; per task: {model['rebuild_s_per_task']:.2f}"
              f" s to rebuild the model from {model['weights_bytes'] / 1e6:.1f} MB of shipped "
              f"weights, {model['rebuild_share_of_shard']:.1%} of a {model['shard']}-image "
              "shard")
        address, started = args.ray_address, None
        env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               "OMP_NUM_THREADS": "1"}
        if address is None:
            started = tmp_path / "ray"
            address = subprocess.run([str(REPO / ".ci" / "ray-cluster"), "start", str(started)],
                                     env={**env, "MAMMOGRAPHY_CI_PYTHON": sys.executable},
                                     check=True, capture_output=True, text=True).stdout.strip()
        try:
            task = per_task_seconds(address, args.tasks)
            print(f"Per task (measured): {task['seconds_per_task_and_slot'] * 1000:.1f} ms per "
                  f"task and slot ({task['tasks']} empty one-item shards on {task['slots']:g} "
                  f"slots in {task['wall_seconds']:.2f} s; the driver kept up "
                  f"{task['driver_tasks_per_second']:.0f} tasks/s)")
            csv = str(data / "classificacao.csv")
            common = ["data", "cache", "--csv", csv, "--img-size", str(args.img_size)]
            local = cli(*common, "--cache-dir", str(tmp_path / "c1"), "--workers", "2", env=env)
            start = time.perf_counter()
            remote = cli(*common, "--cache-dir", str(tmp_path / "c2"), "--ray-address",
                         address, env=env)
            check_wall = time.perf_counter() - start
            n = len(cpu)
            print(f"Same {n} images, whole command (measured): this machine --workers 2 "
                  f"{local:.1f} s ({n / local:.2f} images/s), two loopback Ray nodes "
                  f"{remote:.1f} s ({n / remote:.2f} images/s; connection and node check "
                  "included, both nodes on this machine's 2 cores)")
        finally:
            if started is not None:
                subprocess.run([str(REPO / ".ci" / "ray-cluster"), "stop", str(started)],
                               env={**env, "MAMMOGRAPHY_CI_PYTHON": sys.executable})
    check = min(check_wall, 10.0)
    print(f"\nEMBED, {args.embed_images:,} images, PROJECTED from the measured costs "
          f"({image_cpu:.3f} s per image, {task['seconds_per_task_and_slot'] * 1000:.1f} ms "
          f"per task, {args.cores} cores per node, storage assumed to keep up):")
    rows = [projection(args.embed_images, nodes, args.cores, image_cpu,
                       task["seconds_per_task_and_slot"], check) for nodes in (1, 4, 16)]
    for row in rows:
        print(f"  {row['nodes']:>2} nodes ({row['cores']:>3} cores): {row['shards']:>6} shards "
              f"of {row['shard_size']}, projected {row['hours']:.2f} h "
              f"(task overhead {row['task_overhead_share']:.2%}; the driver must hand out "
              f"{row['shards'] / (row['hours'] * 3600):.1f} tasks/s, it kept up "
              f"{task['driver_tasks_per_second']:.0f} here)")
    print(json.dumps({"per_image_cpu_s": image_cpu, "per_task": task, "model": model,
                      "projected": rows}, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
