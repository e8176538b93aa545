"""A Ray worker that imported mammography before its sources changed is refused.

Ray reuses a worker process with the modules it imported first: after an edit or an
upgrade, the node's files (and their digest) match this machine while the worker runs
the old code, and would write other bytes under the same cache keys. The node check
and every shard task ask ``loaded_code_problem``; here the import is made older than
the package's files, as a worker that outlived an edit sees it (no cluster needed).
"""

import pickle

import pytest

import mammography
from mammography.data.cluster.nodes import (
    ClusterError,
    loaded_code_problem,
    node_problems,
    requirements,
)
from mammography.data.cluster.sharded import run_shard


@pytest.fixture
def worker_older_than_the_code(monkeypatch):
    monkeypatch.setattr(mammography, "IMPORTED_AT_NS", 0)


def test_a_process_that_imported_the_current_code_is_fine():
    assert loaded_code_problem() is None
    assert node_problems(requirements([])) == []


def test_the_node_check_names_the_changed_file_and_the_fix(worker_older_than_the_code):
    problem = loaded_code_problem()
    assert problem is not None and "imported mammography before" in problem
    assert ".py changed" in problem and "restart Ray on every node" in problem
    assert problem in node_problems(requirements([]))


def test_a_shard_task_refuses_before_doing_anything(worker_older_than_the_code):
    ran = []
    with pytest.raises(ClusterError, match="imported mammography before") as caught:
        run_shard(ran.extend, 0, [1, 2])
    assert ran == []
    # It reaches the driver through Ray's pickling whole (there: exit 2, no traceback).
    assert str(pickle.loads(pickle.dumps(caught.value))) == str(caught.value)
