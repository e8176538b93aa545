"""What a sharded run did on the cluster, for the run's record and its log.

Per node: images, shards, the workers (Ray worker processes) that ran them, busy
seconds (the sum of its shards' times) and throughput: images per second of
the node's own clock, from its first shard's start to its last shard's end (so
clocks of different machines are never compared). For the whole run: nodes,
workers, shards, retries (with why each was retried) and images per second of
the driver's clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ShardOutput:
    """One shard's results and where and how long it ran (returned by its Ray task)."""

    index: int
    results: list[Any]
    node_id: str
    host: str
    ip: str
    worker_id: str
    pid: int
    started: float  # the node's clock (time.time)
    seconds: float


@dataclass
class _Node:
    host: str
    ip: str
    images: int = 0
    shards: int = 0
    busy_seconds: float = 0.0
    first_start: float = float("inf")
    last_end: float = 0.0
    workers: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        span = max(self.last_end - self.first_start, 1e-9)
        return {"host": self.host, "ip": self.ip, "images": self.images,
                "shards": self.shards, "workers": len(self.workers),
                "busy_seconds": round(self.busy_seconds, 3),
                "images_per_second": round(self.images / span, 3)}


@dataclass
class ClusterRecord:
    """Filled by ``map_shards`` as shards finish; ``as_dict`` is what runs record."""

    address: str
    label: str
    cluster_cpus: float = 0.0
    shard_size: int = 0
    shards: int = 0
    images: int = 0
    retries: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    unit: str = "images"  # what an item is, in the log lines
    _nodes: dict[str, _Node] = field(default_factory=dict)

    def add(self, output: ShardOutput) -> None:
        node = self._nodes.setdefault(output.node_id, _Node(output.host, output.ip))
        node.images += len(output.results)
        node.shards += 1
        node.busy_seconds += output.seconds
        node.first_start = min(node.first_start, output.started)
        node.last_end = max(node.last_end, output.started + output.seconds)
        node.workers.add(output.worker_id)

    def retried(self, shard: str, reason: str, attempt: int) -> None:
        self.retries.append({"shard": shard, "reason": reason, "attempt": attempt})

    def as_dict(self) -> dict[str, Any]:
        nodes = {node_id: node.as_dict() for node_id, node in sorted(self._nodes.items())}
        return {"engine": "ray", "address": self.address, "task": self.label,
                "cluster_cpus": self.cluster_cpus, "nodes": len(nodes),
                "workers": sum(n["workers"] for n in nodes.values()),
                "shards": self.shards, "shard_size": self.shard_size, "images": self.images,
                "retries": len(self.retries), "retried": self.retries,
                "seconds": round(self.seconds, 3),
                "images_per_second": round(self.images / max(self.seconds, 1e-9), 3),
                "per_node": nodes}

    def lines(self) -> list[str]:
        """The record in words, for the log: the whole, then one line per node."""
        record = self.as_dict()
        unit = self.unit
        head = (f"Ray: {record['images']} {unit} in {record['shards']} shards of up to "
                f"{record['shard_size']} on {record['nodes']} nodes ({record['workers']} "
                f"workers, {record['cluster_cpus']:g} CPUs), {record['retries']} retried; "
                f"{record['images_per_second']:.3g} {unit}/s over {record['seconds']:.1f} s")
        return [head] + [
            f"  node {n['host']} ({n['ip']}): {n['images']} {unit} in {n['shards']} shards "
            f"by {n['workers']} workers, {n['images_per_second']:.3g} {unit}/s, "
            f"{n['busy_seconds']:.1f} s busy" for n in record["per_node"].values()]
