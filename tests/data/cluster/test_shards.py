"""Shards: contiguous, in order, sized for the cluster."""

import pytest

from mammography.data.cluster.shards import (
    MAX_SHARD_IMAGES,
    SHARDS_PER_CPU,
    aligned,
    plan_shards,
    shard_size_for,
)


def test_shards_cover_the_list_once_in_order():
    shards = plan_shards(10, 3)
    assert [(s.start, s.stop) for s in shards] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert [s.index for s in shards] == [0, 1, 2, 3]
    assert sum(len(s) for s in shards) == 10
    assert shards[-1].describe() == "shard 3 (items 10-10)"
    assert plan_shards(0, 5) == []
    with pytest.raises(ValueError):
        plan_shards(3, 0)


def test_shard_size_aims_at_a_few_shards_per_cpu_and_caps_them():
    assert shard_size_for(12, 2) == 2  # 6 shards: 3 per CPU
    assert shard_size_for(480_000, 256) == MAX_SHARD_IMAGES  # EMBED on 16 x 16 CPUs
    assert shard_size_for(3, 64) == 1
    assert shard_size_for(0, 4) == 1
    size = shard_size_for(1000, 10)
    assert len(plan_shards(1000, size)) >= SHARDS_PER_CPU * 10 * 0.9


def test_aligned_shards_are_whole_batches_of_the_one_machine_run():
    assert [aligned(size, 4) for size in (1, 4, 5, 8, 9)] == [4, 4, 8, 8, 12]
    assert aligned(7, 1) == 7 and aligned(0, 3) == 3
    # Every shard then starts where a batch of the whole list starts.
    assert all(s.start % 4 == 0 for s in plan_shards(30, aligned(6, 4)))
    with pytest.raises(ValueError):
        aligned(5, 0)
