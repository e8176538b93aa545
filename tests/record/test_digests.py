"""The record of model files: written so that it never lies, checked before use.

A kill can land between any two steps of a recorded write; whichever file is
on disk afterwards, the record must vouch for it (``pending_sha256`` before the
rename, ``sha256`` after), and anything else must be refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mammography.errors import InputError
from mammography.record import digests
from mammography.record.digests import (
    MISMATCH,
    UNRECORDED,
    UNVERIFIED,
    VERIFIED,
    adoption,
    check_digest,
    owner_problem,
    read_verified,
    write_bytes_recorded,
    write_recorded,
)
from mammography.record.document import artifact_list
from mammography.record.reporter import CollectingReporter
from mammography.record.view import RunView
from tests.helpers import RecordingRun

UID_A, UID_B, UID_C = "a" * 32, "b" * 32, "c" * 32


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def view_of(run: RecordingRun) -> RunView:
    return RunView(run.dir, run.document)


def entry(run: RecordingRun, rel: str) -> dict:
    return next(e for e in run.document["artifacts"] if e["path"] == rel)


def test_a_recorded_file_has_the_digest_of_its_bytes(tmp_path):
    run = RecordingRun(tmp_path / "run")
    digest = write_bytes_recorded(run, run.dir / "best_model.pt", b"weights v1")
    assert entry(run, "best_model.pt") == {"path": "best_model.pt", "bytes": 10,
                                           "sha256": sha(b"weights v1")}
    assert digest == sha(b"weights v1") == hashlib.sha256(
        (run.dir / "best_model.pt").read_bytes()).hexdigest()
    write_bytes_recorded(run, run.dir / "models" / "m" / "export" / "model.onnx", b"onnx")
    assert entry(run, "models/m/export/model.onnx")["sha256"] == sha(b"onnx")
    assert sorted(p.name for p in run.dir.iterdir()) == ["best_model.pt", "models"]  # no temp


class Killed(BaseException):
    """What a SIGKILL leaves: nothing after this point ran."""


def test_a_kill_before_the_rename_leaves_the_old_file_and_a_record_that_vouches_for_it(
        tmp_path, monkeypatch):
    run = RecordingRun(tmp_path / "run")
    path = run.dir / "last_checkpoint.pt"
    write_bytes_recorded(run, path, b"epoch 1")

    def killed(*args):
        raise Killed

    monkeypatch.setattr(digests.os, "replace", killed)
    with pytest.raises(Killed):
        write_bytes_recorded(run, path, b"epoch 2")
    assert path.read_bytes() == b"epoch 1"
    assert entry(run, "last_checkpoint.pt") == {
        "path": "last_checkpoint.pt", "bytes": 7, "sha256": sha(b"epoch 1"),
        "pending_sha256": sha(b"epoch 2")}
    assert check_digest(view_of(run), path, sha(b"epoch 1")).state == VERIFIED
    assert not list(run.dir.glob(".*.tmp"))  # the temp file is cleaned up


def test_a_kill_after_the_rename_leaves_the_new_file_and_a_record_that_vouches_for_it(
        tmp_path, monkeypatch):
    run = RecordingRun(tmp_path / "run")
    path = run.dir / "best_model.pt"
    write_bytes_recorded(run, path, b"epoch 1")
    calls = []
    original = digests._record_entry

    def record(run_, found):
        calls.append(found)
        if len(calls) == 2:  # the settled record, after the rename
            raise Killed
        original(run_, found)

    monkeypatch.setattr(digests, "_record_entry", record)
    with pytest.raises(Killed):
        write_bytes_recorded(run, path, b"epoch 3")
    assert path.read_bytes() == b"epoch 3"
    check = check_digest(view_of(run), path, sha(b"epoch 3"))
    assert check.state == VERIFIED and entry(run, "best_model.pt")["sha256"] == sha(b"epoch 1")
    # a third content is neither version: refused
    assert check_digest(view_of(run), path, sha(b"other")).state == MISMATCH


def test_a_first_write_killed_before_its_rename_leaves_no_file(tmp_path, monkeypatch):
    run = RecordingRun(tmp_path / "run")
    monkeypatch.setattr(digests.os, "replace", lambda *a: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):
        write_recorded(run, run.dir / "features.npy", lambda temp: temp.write_bytes(b"x"))
    assert not (run.dir / "features.npy").exists()
    assert entry(run, "features.npy")["sha256"] is None


def test_refusals_name_the_file_and_both_digests_and_old_runs_only_warn(tmp_path):
    run = RecordingRun(tmp_path / "run")
    path = run.dir / "best_model.pt"
    write_bytes_recorded(run, path, b"mine")
    path.write_bytes(b"another run's")
    out = CollectingReporter()
    with pytest.raises(InputError) as refused:
        read_verified(view_of(run), path, out, "best model")
    message = str(refused.value)
    assert str(path) in message and sha(b"mine") in message and sha(b"another run's") in message

    stray = run.dir / "last_checkpoint.pt"
    stray.write_bytes(b"never recorded")
    assert check_digest(view_of(run), stray, sha(b"never recorded")).state == UNRECORDED
    with pytest.raises(InputError, match="never wrote this one"):
        read_verified(view_of(run), stray, out, "checkpoint")

    old = RecordingRun(tmp_path / "old", run_uid=None)  # a run from before digests
    (old.dir / "best_model.pt").write_bytes(b"old weights")
    assert read_verified(view_of(old), old.dir / "best_model.pt", out, "best model") == \
        b"old weights"
    (warning,) = out.warnings
    assert "unverified (recorded before digests)" in warning and "best_model.pt" in warning
    assert check_digest(view_of(old), old.dir / "best_model.pt", "x").state == UNVERIFIED


def test_the_end_of_run_artifact_list_keeps_the_recorded_digests(tmp_path):
    run = RecordingRun(tmp_path / "run")
    write_bytes_recorded(run, run.dir / "best_model.pt", b"weights")
    (run.dir / "run.log").write_text("log\n")
    listed = {e["path"]: e for e in artifact_list(run.dir, run.get("artifacts"))}
    assert listed["best_model.pt"] == {"path": "best_model.pt", "bytes": 7,
                                       "sha256": sha(b"weights")}
    assert listed["run.log"] == {"path": "run.log", "bytes": 4}


def test_a_checkpoint_belongs_to_its_run_or_to_the_run_that_took_it_over_by_resume(tmp_path):
    a = RecordingRun(tmp_path / "a", run_uid=UID_A)
    a.document.update(run_dir=str(a.dir.resolve()))
    b = RecordingRun(tmp_path / "b", run_uid=UID_B, run_id="results_2")
    path = b.dir / "best_model.pt"
    own = {"run_uid": UID_B, "run_id": "results_2"}
    from_a = {"run_uid": UID_A, "run_id": "results_1", "run_dir": str(a.dir)}
    assert owner_problem(view_of(b), path, own, "best model") is None
    assert owner_problem(view_of(b), path, {"state_dict": {}}, "best model") is None  # no id

    problem = owner_problem(view_of(b), path, from_a, "best model")
    assert UID_A in problem and UID_B in problem and "results_1" in problem and \
        str(a.dir) in problem and str(path) in problem

    # taken over by --resume: recorded as adopted, and a resume link to that run
    write_bytes_recorded(b, path, b"a's weights", adoption(view_of(a), from_a))
    assert owner_problem(view_of(b), path, from_a, "best model") is not None  # no link yet
    b.update(based_on=[view_of(a).link("resume")])
    assert owner_problem(view_of(b), path, from_a, "best model") is None
    # ... and through a chain: c resumes b and takes over a's checkpoint from it
    c = RecordingRun(tmp_path / "c", run_uid=UID_C)
    c.update(based_on=[view_of(b).link("resume")])
    write_bytes_recorded(c, c.dir / "best_model.pt", b"a's weights", adoption(view_of(b), from_a))
    assert owner_problem(view_of(c), c.dir / "best_model.pt", from_a, "best model") is None
    assert entry(c, "best_model.pt")["adopted_from"]["run_uid"] == UID_B
    # another checkpoint under the adopted record: not the one taken over
    other = {"run_uid": "d" * 32, "run_id": "results_9"}
    assert owner_problem(view_of(c), c.dir / "best_model.pt", other, "best model")


def test_an_old_run_refuses_a_checkpoint_that_carries_a_run_id(tmp_path):
    old = RecordingRun(tmp_path / "old", run_uid=None)
    problem = owner_problem(view_of(old), old.dir / "best_model.pt",
                            {"run_uid": UID_A, "run_id": "results_4"}, "best model")
    assert "results_4" in problem and "recorded before run ids" in problem


def test_the_schema_knows_the_new_fields(tmp_path):
    from mammography.record.schema import schema_problems

    run = RecordingRun(tmp_path / "run")
    write_bytes_recorded(run, run.dir / "best_model.pt", b"w")
    summary = json.loads(json.dumps(run.document))
    summary["artifacts"][0]["sha256"] = "not hex"
    assert any("sha256" in p for p in schema_problems(summary))


def test_relative_names_are_those_the_artifacts_use(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "models" / "x").mkdir(parents=True)
    assert digests.relative_to_run(run_dir, run_dir / "models" / "x" / "f") == "models/x/f"
    assert digests.relative_to_run(Path(str(run_dir) + "/"), run_dir / "f") == "f"
