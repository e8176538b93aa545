"""``embed`` and ``predict`` with ``--ray-address``: the model over the images on a Ray cluster.

The images are cut into shards of whole batches and each shard is one Ray task
(``data/cluster/``'s ``map_shards``: node checks, retries, one progress bar,
the ``ClusterRecord``); a task rebuilds the model once from the weights the
driver shipped (``weights``), verifies their sha256, reads its images from the
shared decode-once cache keyed as the driver keys them (``tasks``) and runs
them through the one inference loop on the node's CPU, with the driver's torch
thread count. The driver puts the per-image results back in image order, so
``features.npy`` and the prediction tables are the one-machine run's bytes
(``embed``: features; ``scoring``: every member's probabilities, averaged as
on one machine).
"""
