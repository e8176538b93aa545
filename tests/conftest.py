"""Shared fixtures."""

import pytest

from tests.helpers import run_cli


@pytest.fixture
def cli():
    return run_cli
