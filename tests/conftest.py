"""Shared fixtures."""

import pytest

from tests.helpers import run_cli
from tests.ray_cluster import cluster_address


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
