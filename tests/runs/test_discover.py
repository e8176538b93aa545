"""Finding run directories, grouping children, and telling crashed runs apart."""

import datetime as dt
import os
import subprocess
import sys

import pytest

from mammography.errors import InputError
from mammography.runs.discover import find_runs, open_run, pid_alive, sort_natural


def iso(seconds_ago: float) -> str:
    when = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds_ago)
    return when.isoformat(timespec="seconds")


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def by_name(records):
    return {str(r.dir.relative_to(r.root)): r for r in sort_natural(records)}


def test_finds_runs_children_and_broken_ones(tmp_path, fake_run):
    root = tmp_path / "outputs"
    fake_run(root / "density" / "results_1")
    fake_run(root / "density" / "results_10")
    fake_run(root / "density" / "results_2", results={"cv_mean_kappa": 0.4, "num_folds": 2})
    for fold in (1, 2):
        fake_run(root / "density" / "results_2" / f"fold_{fold}" / "results",
                 integration={"cv_fold": fold})
    (root / "bad" / "results_1").mkdir(parents=True)
    (root / "bad" / "results_1" / "summary.json").write_text("{not json")
    (root / "bad" / "results_2").mkdir()                  # allocated, never written
    (root / "bad" / "results_3").mkdir()
    (root / "bad" / "results_3" / "summary.json").write_text("[1, 2]")
    fake_run(root / ".hidden" / "results_1")              # not searched
    fake_run(root / "mlartifacts" / "0" / "abc" / "artifacts")  # exported copies
    records = find_runs([root])
    for index, record in enumerate(records):   # parents always come before children
        assert record.parent is None or records.index(record.parent) < index
    found = by_name(records)
    assert list(found) == [
        "bad/results_1", "bad/results_2", "bad/results_3", "density/results_1",
        "density/results_2", "density/results_2/fold_1/results",
        "density/results_2/fold_2/results", "density/results_10"]
    parent = found["density/results_2"]
    assert [c.dir.name for c in parent.children] == ["results", "results"]
    assert found["density/results_2/fold_1/results"].parent is parent
    assert found["density/results_2/fold_2/results"].depth == 1
    assert found["bad/results_1"].status == "invalid"
    assert "not valid JSON" in found["bad/results_1"].problem
    assert found["bad/results_2"].problem == "summary.json missing"
    assert "not a JSON object" in found["bad/results_3"].problem
    assert found["density/results_1"].status == "completed"


def test_root_may_be_a_run_itself_or_its_summary(tmp_path, fake_run):
    run = fake_run(tmp_path / "results_4")
    fake_run(run / "fold_1" / "results", integration={"cv_fold": 1})
    assert len(find_runs([run])) == 2
    assert len(find_runs([run / "summary.json"])) == 2


def test_missing_root_is_a_clear_input_error(tmp_path):
    with pytest.raises(InputError, match="is not a folder"):
        find_runs([tmp_path / "nowhere"])


def test_open_run_errors(tmp_path, fake_run):
    with pytest.raises(InputError, match="does not exist"):
        open_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no summary.json"):
        open_run(tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        open_run(tmp_path / "broken")
    assert open_run(tmp_path / "broken", need_summary=False).status == "invalid"


def test_pid_alive():
    assert pid_alive(os.getpid())
    assert not pid_alive(dead_pid())
    assert not pid_alive(0)


@pytest.mark.parametrize("pid, host, beat_age, stale, expected", [
    ("dead", "here", 5, None, "crashed"),          # process gone on this host
    ("self", "here", 5, None, "running"),          # alive, fresh heartbeat
    ("self", "here", 600, None, "crashed"),        # alive pid (reused?) but no heartbeat
    ("self", "here", 600, 3600.0, "running"),      # ... within a longer --stale-after
    ("dead", "elsewhere", 5, None, "running"),     # another host: only the heartbeat counts
    ("dead", "elsewhere", 600, None, "crashed"),
])
def test_crashed_detection(tmp_path, fake_run, pid, host, beat_age, stale, expected):
    import socket

    run = fake_run(tmp_path / "results_1", status="running", start=iso(beat_age + 60),
                   end=None, heartbeat=iso(beat_age),
                   pid=os.getpid() if pid == "self" else dead_pid(),
                   hostname=socket.gethostname() if host == "here" else "some-other-host")
    (record,) = find_runs([run], stale_after=stale)
    assert record.status == expected
    assert record.recorded_status == "running"
    if expected == "crashed":
        assert ("is gone" in record.crash_reason) == (pid == "dead" and host == "here")
        assert ("no heartbeat" in record.crash_reason) == (beat_age == 600)


def test_finished_runs_are_never_crashed(tmp_path, fake_run):
    run = fake_run(tmp_path / "results_1", status="failed", pid=dead_pid())
    assert find_runs([run])[0].status == "failed"
