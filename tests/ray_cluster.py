"""The Ray cluster the cluster tests run on, and what they do to it.

``.ci/ray-cluster start DIR`` starts two Ray nodes of one CPU each on 127.0.0.1 and
prints the head's address; `.ci/run` does so for CI and exports it as
``MAMMOGRAPHY_TEST_RAY_ADDRESS`` (and ``MAMMOGRAPHY_TEST_RAY_DIR``, the cluster's
folder). Without it the tests skip, saying so - unless
``MAMMOGRAPHY_TEST_REQUIRE_RAY=1`` (CI), where a missing cluster fails. The
``ray_cluster`` fixture (tests/conftest.py) gives the address; any command's
cluster test (``data cache``, ``data check``, and ``embed``/``predict`` when they
take ``--ray-address``) can use it with ``kill_a_shard_worker`` and
``folder_bytes``.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ENV_ADDRESS = "MAMMOGRAPHY_TEST_RAY_ADDRESS"
ENV_DIR = "MAMMOGRAPHY_TEST_RAY_DIR"
ENV_REQUIRED = "MAMMOGRAPHY_TEST_REQUIRE_RAY"
#: Ray says 127.0.0.1 for this machine only with this (see .ci/ray_cluster.py); a driver
#: connecting to the loopback cluster needs it before Ray is imported.
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
#: What a busy shard worker's process title says (data/cluster/sharded.py TASK_NAME).
SHARD_TITLE = b"ray::mammography_shard"


def cluster_address() -> str:
    """The test cluster's address; skips (fails under ``MAMMOGRAPHY_TEST_REQUIRE_RAY=1``)
    without one."""
    address = os.environ.get(ENV_ADDRESS)
    reason = None
    if not address:
        reason = (f"no Ray cluster: set {ENV_ADDRESS} (`.ci/ray-cluster start DIR` starts two "
                  "nodes on loopback and prints the address)")
    elif os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
        reason = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 must be set for the tests too, so the "
                  "driver says 127.0.0.1 like the loopback cluster (.ci/run exports it)")
    if reason:
        if os.environ.get(ENV_REQUIRED) == "1":
            pytest.fail(f"{ENV_REQUIRED}=1 but {reason}")
        pytest.skip(reason)
    return address


def shard_workers() -> list[int]:
    """Pids of the test cluster's Ray workers busy with a shard (their process title)."""
    root = os.environ.get(ENV_DIR)
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                if not handle.read().startswith(SHARD_TITLE):
                    continue
            # This cluster's worker, not one of another Ray on the machine.
            if root is not None and not _under(int(entry.name), root):
                continue
        except OSError:
            continue
        found.append(int(entry.name))
    return found


def _under(pid: int, root: str) -> bool:
    """Whether the parent (the raylet) of ``pid`` runs from the cluster's folder ``root``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            parent = int(handle.read().rsplit(b")", 1)[1].split()[1])
        with open(f"/proc/{parent}/cmdline", "rb") as handle:
            return root.encode() in handle.read()
    except (OSError, ValueError, IndexError):
        return False


def kill_a_shard_worker(ready: Callable[[], bool], timeout: float = 120.0) -> int:
    """Once ``ready()`` (e.g. the first cache entries exist), SIGKILL one worker busy with a
    shard of the test cluster; its pid. Fails the test when none was busy in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            workers = shard_workers()
            if workers:
                os.kill(workers[0], signal.SIGKILL)
                return workers[0]
        time.sleep(0.02)
    pytest.fail("no Ray worker was busy with a shard to kill")


def folder_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its bytes - temp files of a write
    that a killed worker never finished (``.tmp-*``, never read as entries) left out."""
    return {path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(Path(root).rglob("*"))
            if path.is_file() and not path.name.startswith(".tmp-")}
