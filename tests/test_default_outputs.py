"""Running a command with its defaults never dirties the working tree.

Every place a command writes without being told where (a run's --outdir, `data
preview`'s folder, `runs export --to mlflow`'s store, `make demo`'s data and
runs) is under a git-ignored folder of this repository, or outside it (the
cache). Otherwise the next run records ``git_dirty: true`` with the previous
command's files as untracked.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import subprocess
from pathlib import Path

import pytest
import yaml

import mammography.config
from mammography.config.core import field_types
from tests.helpers import REPO

#: Settings that name where a command writes.
OUTPUT_FIELDS = ("outdir", "out", "logdir", "to", "json", "cache_dir")
#: Output settings without a default, and why that is fine: the command writes
#: nothing there unless told (or fails with exit 2 asking for it).
NO_DEFAULT = {
    ("DataCheckConfig", "json"): "optional report: written only when given",
    ("DataCacheConfig", "json"): "optional report: written only when given",
    ("RunsArchiveConfig", "to"): "required",
    ("RunsExportConfig", "logdir"): "required for --to tensorboard",
}


def _config_classes() -> list[type]:
    found = []
    for info in pkgutil.iter_modules(mammography.config.__path__):
        module = importlib.import_module(f"mammography.config.{info.name}")
        found += [obj for obj in vars(module).values()
                  if isinstance(obj, type) and dataclasses.is_dataclass(obj)
                  and obj.__module__ == module.__name__]
    return found


def _is_ignored(path: Path) -> bool:
    """Would git ignore a file written at ``path`` (relative to the repository)?"""
    probe = path / "probe.txt"
    proc = subprocess.run(["git", "check-ignore", "-q", str(probe)], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode == 0


@pytest.fixture(scope="module")
def git_checkout():
    if subprocess.run(["git", "rev-parse", "--git-dir"], cwd=REPO,
                      capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")


def _default_locations(monkeypatch, tmp_path) -> dict[str, Path]:
    """Where each command writes by default: a path relative to the repository root,
    or an absolute one outside it."""
    from mammography.config.datacmd import DEFAULT_PREVIEW_ROOT, PREVIEW_FOLDER_PREFIX
    from mammography.config.embed import EmbedConfig
    from mammography.record.contract import cache_root

    monkeypatch.delenv("MAMMOGRAPHY_CACHE_DIR", raising=False)
    locations: dict[str, Path] = {}
    unexplained = []
    for cls in _config_classes():
        types = field_types(cls)
        for f in dataclasses.fields(cls):
            if f.name not in OUTPUT_FIELDS or "Path" not in str(types[f.name]):
                continue
            where = f"{cls.__name__}.{f.name}"
            if f.default not in (None, dataclasses.MISSING):
                locations[where] = Path(f.default)
            elif f.name == "cache_dir":
                locations[where] = cache_root()
            elif (cls.__name__, f.name) == ("DataPreviewConfig", "out"):
                locations[where] = DEFAULT_PREVIEW_ROOT / f"{PREVIEW_FOLDER_PREFIX}1"
            elif (cls.__name__, f.name) == ("EmbedConfig", "outdir"):
                locations[where] = EmbedConfig().outdir
            elif (cls.__name__, f.name) not in NO_DEFAULT:
                unexplained.append(where)
    assert not unexplained, f"say where these write by default: {unexplained}"

    from mammography.runs.export.to_mlflow import artifact_location, default_tracking_uri

    monkeypatch.chdir(tmp_path)  # the store's folder is created under the current folder
    database = Path(default_tracking_uri().removeprefix("sqlite:///"))
    locations["runs export --to mlflow (store)"] = database.parent.relative_to(tmp_path)
    artifacts = Path(artifact_location(default_tracking_uri()).removeprefix("file://"))
    locations["runs export --to mlflow (artifacts)"] = artifacts.relative_to(tmp_path)
    demo = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    locations["make demo (runs)"] = Path(demo["outdir"])
    locations["make demo (data)"] = Path(demo["csv"]).parent
    return locations


def test_every_default_output_is_git_ignored_or_outside_the_repository(
        git_checkout, monkeypatch, tmp_path):
    locations = _default_locations(monkeypatch, tmp_path)
    assert len(locations) >= 12  # every run command, preview, export, demo, the caches
    for what, path in locations.items():
        if path.is_absolute():
            assert not path.resolve().is_relative_to(REPO), f"{what}: {path} is in the repo"
        else:
            assert _is_ignored(path), f"{what}: {path} is not git-ignored"


def test_the_ignore_rules_do_not_hide_the_project_itself(git_checkout):
    for tracked in ("mammography/cli/app.py", "configs/demo.yaml", "tests", "docs"):
        assert not _is_ignored(Path(tracked).parent if "." in tracked else Path(tracked))
