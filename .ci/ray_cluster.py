"""Hold a two-node Ray cluster on 127.0.0.1 until SIGTERM (.ci/ray-cluster starts it).

Two raylets, one CPU each: two Ray nodes as on two machines, made by Ray's own
multi-node test cluster (``ray.cluster_utils.Cluster``, the same processes
``ray start --head`` and ``ray start --address`` launch). Not ``ray start``
itself: it replaces a 127.0.0.1 node address by the machine's network address,
and these tests must talk to loopback only; with
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (set by .ci/ray-cluster for the cluster
and the tests) every node, and every driver, is 127.0.0.1.

    python .ci/ray_cluster.py DIR   writes DIR/address once both nodes are up
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path


def main() -> int:
    folder = Path(sys.argv[1])
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "num_gpus": 0, "include_dashboard": False,
        "object_store_memory": 100 * 1024 * 1024, "temp_dir": str(folder / "tmp")})
    try:
        cluster.add_node(num_cpus=1, num_gpus=0, object_store_memory=100 * 1024 * 1024)
        cluster.wait_for_nodes()
        (folder / "address.tmp").write_text(cluster.address + "\n")
        (folder / "address.tmp").rename(folder / "address")
        print(f"Ray cluster of 2 nodes at {cluster.address}", flush=True)
        stop.wait()
    finally:
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
