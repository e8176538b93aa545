"""Per-image work spread over a Ray cluster, with the same result as on one machine.

An image list is cut into shards (``shards``); each shard is one Ray task that
runs a per-shard function where Ray places it, on any node (``sharded``:
bounded in-flight tasks, a shard whose worker or node dies is submitted again,
results merged back in list order, one progress bar in the driver). Before any
shard runs, every node is asked whether it can do the work as this machine
would (``nodes``: the same code, the images and the shared folder at the same
paths), and refused with a message naming the node otherwise. What the run did
on the cluster - nodes, workers, shards, retries, throughput per node - is
``record.ClusterRecord``.

The per-shard function is the caller's: ``data cache`` and ``data check`` pass
the cache's decode jobs (``data/cache.py``); ``embed`` and ``predict`` can pass
their own (a model loaded once per shard). Ray is imported only here, and only
when a command is given ``--ray-address``.
"""

from mammography.data.cluster.nodes import ClusterError, NodeRequirements
from mammography.data.cluster.record import ClusterRecord
from mammography.data.cluster.sharded import EachItem, ShardedRun, ShardFailed, map_shards

__all__ = ["ClusterError", "ClusterRecord", "EachItem", "NodeRequirements", "ShardFailed",
           "ShardedRun", "map_shards"]
