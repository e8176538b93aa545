"""The cluster record: per node by its own clock, retries with their reasons."""

from mammography.data.cluster.record import ClusterRecord, ShardOutput


def output(index, node, worker, started, seconds, n):
    return ShardOutput(index=index, results=[None] * n, node_id=node, host=f"h-{node}",
                       ip="127.0.0.1", worker_id=worker, pid=1, started=started,
                       seconds=seconds)


def test_per_node_throughput_workers_and_retries():
    record = ClusterRecord(address="127.0.0.1:1", label="Caching", cluster_cpus=3,
                           shard_size=4, shards=3, images=10, seconds=5.0)
    record.add(output(0, "a", "w1", 100.0, 2.0, 4))
    record.add(output(1, "a", "w2", 101.0, 3.0, 4))  # node a: 8 images from 100 to 104
    record.add(output(2, "b", "w3", 5000.0, 1.0, 2))  # another clock: never compared
    record.retried("shard 1 (items 5-8)", "WorkerCrashedError", 1)
    data = record.as_dict()
    assert data["nodes"] == 2 and data["workers"] == 3 and data["retries"] == 1
    assert data["retried"] == [{"shard": "shard 1 (items 5-8)",
                                "reason": "WorkerCrashedError", "attempt": 1}]
    nodes = data["per_node"]
    assert nodes["a"] == {"host": "h-a", "ip": "127.0.0.1", "images": 8, "shards": 2,
                          "workers": 2, "busy_seconds": 5.0, "images_per_second": 2.0}
    assert nodes["b"]["images_per_second"] == 2.0
    assert data["images_per_second"] == 2.0  # 10 images in 5 s of the driver's clock
    lines = record.lines()
    assert lines[0].startswith("Ray: 10 images in 3 shards of up to 4 on 2 nodes (3 workers")
    assert "1 retried" in lines[0] and len(lines) == 3
