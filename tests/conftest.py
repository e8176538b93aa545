"""Shared fixtures, and how `make test` splits the suite between two workers."""

import importlib.util

import pytest

from tests.helpers import run_cli
from tests.ray_cluster import cluster_address

#: Modules that use one shared resource run on one worker, one after another
#: (`make test`: ``pytest -n 2 --dist loadscope``): CI's PostgreSQL server, and Ray (the
#: local instances `tune --engine ray` and `--cv-engine ray` start, and CI's two-node
#: cluster, whose workers some tests kill).
SHARED_RESOURCE = {
    "postgres": ("tests/hpo/test_shared_study.py", "tests/record/test_secrets.py"),
    "ray": ("tests/hpo/test_tune.py", "tests/engine/cv/test_resume.py",
            "tests/data/cluster/", "tests/engine/cluster/"),
}
#: The longest units, handed out first (`make test` keeps the collection order with
#: --no-loadscope-reorder): a worker that started one of them last would finish alone.
#: The README test is one test of about 6 minutes; the Ray group about 5.
FIRST = ("tests/test_readme.py", "ray")


def unit_of(nodeid: str) -> str:
    """The unit of work a test belongs to under pytest-xdist: its shared resource's name,
    else its module (whose module-scoped fixtures are then built once)."""
    path = nodeid.split("::")[0]
    return next((name for name, prefixes in SHARED_RESOURCE.items()
                 if path.startswith(prefixes)), path)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """On a pytest-xdist worker, whose collection the scheduler hands out in order:
    ``FIRST`` first."""
    if not hasattr(config, "workerinput"):
        return
    rank = {unit: i for i, unit in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(unit_of(item.nodeid), len(FIRST)))  # stable


if importlib.util.find_spec("xdist") is not None:  # a dev dependency; hooks need it
    def pytest_xdist_make_scheduler(config, log):
        """xdist's scope scheduling with ``unit_of`` as the scope. (Not --dist loadgroup:
        with pytest 9.2 the xdist_group marks no longer reach xdist 3.8's scheduler, which
        rewrites ``item._nodeid``, an attribute pytest stopped reading.)"""
        if config.getvalue("dist") != "loadscope":
            return None
        from xdist.scheduler import LoadScopeScheduling

        class ModuleOrSharedResource(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                return unit_of(nodeid)

        return ModuleOrSharedResource(config, log)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """A small synthetic screening dataset shared by the end-to-end tests (read-only!)."""
    from mammography.config.synth import SynthConfig
    from mammography.data.synthetic import generate_dataset

    out = tmp_path_factory.mktemp("synthetic") / "data"
    generate_dataset(SynthConfig(out=out, exams=48, seed=7, size="192x160", class5=2),
                     log=lambda message: None)
    return out


@pytest.fixture(scope="session")
def ray_cluster():
    """The address of the two-node Ray test cluster (tests/ray_cluster.py); skips without
    one, fails without one in CI."""
    return cluster_address()


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """Isolated image cache and checksum memo for one test."""
    path = tmp_path / "cache"
    monkeypatch.setenv("MAMMOGRAPHY_CACHE_DIR", str(path))
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread, so a busy machine does not stall the spin-waits.

    Modules of torch tests take it with ``pytestmark = pytest.mark.usefixtures("one_thread")``
    (torch is imported here only when one asks for it)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
