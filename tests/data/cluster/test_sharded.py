"""map_shards on the two-node test cluster: order, a lost worker, a failing function.

Needs the cluster of tests/ray_cluster.py (skips without it, fails without it in CI).
"""

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from mammography.data.cluster import ClusterError, ShardFailed, map_shards
from mammography.data.cluster.nodes import requirements
from mammography.data.cluster.sharded import ShardLost
from mammography.errors import ExplainedFailure
from mammography.record.reporter import CollectingReporter

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def by_value():
    """The shard functions below travel by value: the nodes need not import this file."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@dataclass
class DieOnce:
    """Doubles each item; the worker that first gets ``victim`` dies (SIGKILL-like exit)
    before answering, once (the marker file says it happened)."""

    marker: str
    victim: int

    def __call__(self, items):
        if self.victim in items and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)
        return [2 * item for item in items]


def ages_the_import(items):
    """As if this worker had imported mammography before its sources last changed."""
    import mammography

    mammography.IMPORTED_AT_NS = 0
    return items


def always_dies(items):
    os._exit(1)


def broken(items):
    raise ZeroDivisionError("a bug in the shard function")


def test_results_in_list_order_and_a_lost_worker_costs_one_retry(ray_cluster, tmp_path):
    out = CollectingReporter()
    run = map_shards(DieOnce(str(tmp_path / "died"), victim=7), list(range(20)),
                     address=ray_cluster, label="Doubling", out=out, unit="items",
                     shard_size=3, progress=False)
    assert run.results == [2 * i for i in range(20)]  # in order, every item once
    record = run.record.as_dict()
    assert record["shards"] == 7 and record["shard_size"] == 3 and record["images"] == 20
    assert record["retries"] == 1
    assert record["retried"][0]["shard"] == "shard 2 (items 7-9)"
    assert record["retried"][0]["reason"] == "WorkerCrashedError"
    assert record["nodes"] == 2 and sum(n["images"] for n in record["per_node"].values()) == 20
    assert any("shard 2 (items 7-9) lost its worker (WorkerCrashedError); submitted again "
               "(1 of 3)" in w for w in out.warnings)
    assert any(line.startswith("Ray: 20 items in 7 shards") for line in out.lines)


def test_an_exception_in_the_function_stops_the_run_naming_the_shard(ray_cluster):
    with pytest.raises(ShardFailed, match=r"Broken: shard 0 \(items 1-2\) failed on the "
                       r"cluster: ZeroDivisionError: a bug in the shard function"):
        map_shards(broken, [1, 2], address=ray_cluster, label="Broken", shard_size=2,
                   out=CollectingReporter(), progress=False)


def test_a_shard_lost_past_its_retries_is_one_explained_failure(ray_cluster):
    # the cluster's doing, not a bug: the command says it in one line (exit 1, no traceback)
    with pytest.raises(ShardLost, match=r"Dying: shard 0 \(items 1-2\) was lost 2 times "
                       r"\(WorkerCrashedError\); giving up after 1 retries") as caught:
        map_shards(always_dies, [1, 2], address=ray_cluster, label="Dying", shard_size=2,
                   out=CollectingReporter(), progress=False, max_retries=1)
    assert isinstance(caught.value, ExplainedFailure)


def test_a_worker_that_outlived_a_code_change_stops_the_run_exit_2(ray_cluster):
    # Ray reuses a node's worker from shard to shard: after the first shard there, the
    # worker's code is "older than its files", and its next shard refuses (this job's
    # workers end with it, so later tests get fresh ones).
    with pytest.raises(ClusterError, match=r"Ageing: node \S+: its Ray worker \(pid \d+\) "
                       r"imported mammography before .*restart Ray on every node"):
        map_shards(ages_the_import, list(range(12)), address=ray_cluster, label="Ageing",
                   shard_size=1, out=CollectingReporter(), progress=False)


def test_every_node_asked_before_any_shard_runs(ray_cluster, tmp_path):
    needs = requirements([("/nowhere/a.dcm", 5)], shared_folder=tmp_path / "cache",
                         writable=True)
    with pytest.raises(ClusterError) as caught:
        map_shards(broken, [1], address=ray_cluster, label="Never", progress=False,
                   out=CollectingReporter(), requirements=needs)
    problems = caught.value.problems
    assert len(problems) == 2 and all("cannot see the image /nowhere/a.dcm" in p
                                      for p in problems)
    assert all(p.startswith("Ray node ") for p in problems)
    assert not any((tmp_path / "cache").iterdir())  # the check file is removed again
