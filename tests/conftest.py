"""Shared fixtures."""

import pytest

from tests.helpers import run_cli


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


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """Isolated image cache and checksum memo for one test."""
    path = tmp_path / "cache"
    monkeypatch.setenv("MAMMOGRAPHY_CACHE_DIR", str(path))
    return path
