"""Parallel CV plumbing: items shared out among worker processes, output prefixed per item."""

import subprocess
import sys
import time

from mammography.engine.cv.executor import ITEM_MARKER, ItemLog, worker_groups
from tests.helpers import child_env


def test_folds_are_shared_round_robin_and_no_worker_is_idle_or_empty():
    assert worker_groups([1, 2, 3, 4, 5], 2) == [[1, 3, 5], [2, 4]]
    assert worker_groups([1, 2], 4) == [[1], [2]]
    assert worker_groups([1, 2, 3], 1) == [[1, 2, 3]]


def test_a_workers_lines_carry_the_fold_it_announced():
    lines = []
    out = ItemLog(1, lines.append)
    for text in ("Epoch 1/1\n", f"{ITEM_MARKER}3\n", "Epoch 1/1\n", "done"):
        out.line(text)
    assert lines == ["[fold 1] Epoch 1/1", "[fold 3] Epoch 1/1", "[fold 3] done"]


WORKER = """
import pathlib, signal, sys, time
def stop(signum, frame):
    pathlib.Path(sys.argv[1]).write_text(signal.Signals(signum).name)
    sys.exit(130)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
time.sleep(60)
"""

PARENT = """
import sys
from mammography.engine.cv.executor import LocalExecutor
worker = [sys.executable, "-c", sys.argv[1], sys.argv[2]]
LocalExecutor(lambda items: worker, 1, lambda line: print(line, flush=True)).run([1])
"""


def test_a_killed_parent_s_workers_get_sigterm_and_stop(tmp_path):
    """SIGKILL of the parent (the executor cannot react) still stops its workers: the
    kernel sends them SIGTERM, on which a CV worker checkpoints and exits."""
    marker = tmp_path / "worker_got"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, WORKER, str(marker)],
                              stdout=subprocess.PIPE, text=True, env=child_env())
    for line in parent.stdout:
        if line.strip() == "[fold 1] ready":
            break
    parent.kill()
    parent.wait(timeout=30)
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline, "the worker outlived its killed parent"
        time.sleep(0.02)
    assert marker.read_text() == "SIGTERM"
