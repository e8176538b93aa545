"""Fixtures of the reliability suite; helpers and budgets live in common.py."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """16 exams (63 images, 128x96, 12 patients): enough to split and train on in
    seconds. Read-only: copy it (``copy_dataset``) before changing anything."""
    from mammography.config.synth import SynthConfig
    from mammography.data.synthetic import generate_dataset

    out = tmp_path_factory.mktemp("reliability") / "small"
    generate_dataset(SynthConfig(out=out, exams=16, seed=3, size="128x96"),
                     log=lambda message: None)
    return out
