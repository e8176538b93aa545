"""Files a later command loads are part of the record: their sha256, written and checked.

Every file another command will load (``best_model.pt``, ``last_checkpoint.pt``,
``features.npy``, ``metadata.csv``, an exported ``model.onnx`` or
``model.torchscript.pt`` and its ``preprocessing.json``) is written through
:func:`write_recorded`: into a temp file, hashed, announced in summary.json's
``artifacts`` as ``pending_sha256``, renamed into place, then recorded as its
``sha256``. So at every instant the record is true of the file on disk: a kill
before the rename leaves the old file and its old digest (``sha256``); a kill
after it, the new file and its digest as ``pending_sha256``. Either one
verifies; any other content is a refusal.

Before a command uses such a file it asks :func:`read_verified` (the bytes it
will load, verified) or :func:`verify_file`:

* the digest matches the recorded ``sha256`` or ``pending_sha256``: verified;
* the run was recorded before digests existed (its summary has no ``run_uid``):
  a ``WARNING`` that the file is unverified, then it is used;
* anything else - another digest, or a file the run never recorded - is an
  :class:`~mammography.errors.InputError` (exit 2) naming the file, the recorded
  and the actual digest.

A checkpoint also carries the ``run_uid`` of the run that wrote it
(:func:`owner_problem`): it belongs to that run only, or to a run that
continued it with ``--resume`` and recorded that it adopted it
(``adopted_from``, one of its ``based_on`` resume links).

Standard library only (hashlib): ``runs validate`` checks the same digests.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from mammography.errors import InputError
from mammography.record.protocol import RunContext
from mammography.record.reporter import Reporter
from mammography.record.view import Artifact, RunView

VERIFIED, UNVERIFIED, MISMATCH, UNRECORDED = "verified", "unverified", "mismatch", "unrecorded"


def new_run_uid() -> str:
    """A run's unique id (``run_id`` is only unique within one outdir, and child runs
    share their parent's)."""
    return uuid.uuid4().hex


def sha256_file(path: Path) -> str:
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ writing


def relative_to_run(run_dir: Path, path: Path) -> str:
    """``path`` as the run's ``artifacts`` name it (relative, forward slashes)."""
    return Path(os.path.relpath(Path(path).resolve(), Path(run_dir).resolve())).as_posix()


def _record_entry(run: RunContext, entry: dict[str, Any]) -> None:
    """Put ``entry`` in the run's ``artifacts`` in place of the one with its path."""
    current = [dict(e) for e in (run.get("artifacts") or []) if isinstance(e, Mapping)]
    found = [i for i, e in enumerate(current) if e.get("path") == entry["path"]]
    if found:
        current[found[0]] = entry
    else:
        current.append(entry)
    run.update(artifacts=current)


def recorded_entry(run: RunContext, rel: str) -> dict[str, Any] | None:
    for entry in run.get("artifacts") or []:
        if isinstance(entry, Mapping) and entry.get("path") == rel:
            return dict(entry)
    return None


def write_recorded(run: RunContext, path: Path, write: Callable[[Path], None],
                   facts: Mapping[str, Any] | None = None) -> str:
    """Write ``path`` of ``run`` with ``write(temp_path)`` and record its sha256 (see the
    module doc for the order); returns the digest. ``facts`` are kept with the entry
    (a checkpoint adopted by ``--resume``: ``adopted_from``...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rel = relative_to_run(run.dir, path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    temp = Path(name)
    try:
        write(temp)
        digest, size = sha256_file(temp), temp.stat().st_size
        # The previous version keeps its entry (and what it says of the file) until the
        # rename: a kill in between leaves one of the two digests true.
        previous = recorded_entry(run, rel) or {"path": rel, "bytes": size, "sha256": None}
        _record_entry(run, {**previous, "pending_sha256": digest})
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    _record_entry(run, {"path": rel, "bytes": size, "sha256": digest, **(facts or {})})
    return digest


def write_bytes_recorded(run: RunContext, path: Path, data: bytes,
                         facts: Mapping[str, Any] | None = None) -> str:
    """``write_recorded`` of bytes already in memory (a JSON card, a CSV)."""
    def write(temp: Path) -> None:
        with temp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    return write_recorded(run, path, write, facts)


# ------------------------------------------------------------------ checking


class FileCheck(NamedTuple):
    """What the record says of one file of a run, and what is on disk."""

    path: Path
    state: str  # VERIFIED, UNVERIFIED, MISMATCH or UNRECORDED
    recorded: str | None  # the digest the run recorded (sha256, else pending_sha256)
    actual: str | None
    entry: Artifact | None

    @property
    def refused(self) -> bool:
        return self.state in (MISMATCH, UNRECORDED)

    def message(self, what: str, run_dir: Path) -> str:
        """One paragraph: what is wrong with the file, for the user."""
        if self.state == MISMATCH:
            return (f"Refusing {what} {self.path}: its sha256 is {self.actual}, but run "
                    f"{run_dir} recorded {self.recorded} when it wrote it. The file was "
                    "replaced or edited since (a copy from another run?): using it would "
                    "credit another model, or other settings, to this run. Restore the "
                    "run's own file, or use the run that wrote this one.")
        if self.state == UNRECORDED:
            return (f"Refusing {what} {self.path} (sha256 {self.actual}): run "
                    f"{run_dir} records digests of the files it writes, and it never wrote "
                    "this one. Use the run that wrote it.")
        if self.state == UNVERIFIED:
            return (f"{what} {self.path} is unverified (recorded before digests): run "
                    f"{run_dir} was written by a version that did not record file digests, "
                    "so nothing shows it is the file the run wrote.")
        return f"{what} {self.path}: verified (sha256 {self.actual})"


def check_digest(view: RunView, path: Path, actual: str) -> FileCheck:
    """``actual`` (the digest of ``path``, a file of the run ``view``) against the record."""
    entry = view.artifact(relative_to_run(view.dir, path))
    recorded = (entry.sha256 or entry.pending_sha256) if entry is not None else None
    if entry is not None and actual in (entry.sha256, entry.pending_sha256):
        return FileCheck(path, VERIFIED, actual, actual, entry)
    if not view.records_digests:
        return FileCheck(path, UNVERIFIED, recorded, actual, entry)
    return FileCheck(path, MISMATCH if recorded else UNRECORDED, recorded, actual, entry)


def verify_file(view: RunView, path: Path, out: Reporter, what: str) -> FileCheck:
    """``path``'s digest against ``view``'s record: an ``InputError`` when refused, a
    WARNING when unverified."""
    return _settle(check_digest(view, path, sha256_file(path)), view, out, what)


def read_verified(view: RunView, path: Path, out: Reporter, what: str) -> bytes:
    """The bytes of ``path`` (a file of the run ``view``), verified against the record:
    the very bytes that are then loaded, so the file cannot change in between."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"Cannot read {what} {path}: {exc.strerror or exc}.") from None
    _settle(check_digest(view, path, sha256_bytes(data)), view, out, what)
    return data


def _settle(check: FileCheck, view: RunView, out: Reporter, what: str) -> FileCheck:
    if check.refused:
        raise InputError(check.message(what, view.dir))
    if check.state == UNVERIFIED:
        out.warn(check.message(what, view.dir))
    return check


# ------------------------------------------------------------------ checkpoint owners


def checkpoint_owner(run: RunContext) -> dict[str, Any]:
    """What a checkpoint carries about the run that writes it."""
    return {"run_uid": run.get("run_uid"), "run_id": run.run_id,
            "run_dir": str(Path(run.dir).resolve())}


def adoption(source: RunView, checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The ``artifacts`` facts of a checkpoint a run takes over from ``source`` (the run
    it resumes): whose it is, and through which run it came."""
    return {"adopted_from": {"run_dir": str(source.dir.resolve()), "run_id": source.run_id,
                             "run_uid": source.run_uid},
            "checkpoint_run_uid": checkpoint.get("run_uid")}


def owner_problem(view: RunView, path: Path, checkpoint: Mapping[str, Any],
                  what: str) -> str | None:
    """Why the checkpoint at ``path`` (its payload ``checkpoint``) does not belong to the
    run ``view`` (None when it does; see docs/artifacts.md, "Whose checkpoint")."""
    carried = checkpoint.get("run_uid")
    own = view.run_uid
    if carried is None or carried == own:
        # No id: written before run ids (then the run is too, or the digest check has
        # refused it); the run's own id: its own.
        return None
    entry = view.artifact(relative_to_run(view.dir, path))
    adopted = entry.adopted_from if entry is not None else None
    if adopted and entry is not None and entry.checkpoint_run_uid == carried:
        resumed = {link.run_dir for link in view.based_on if link.relation == "resume"}
        if adopted.get("run_dir") in resumed:
            return None
    writer = checkpoint.get("run_id") or "another run"
    where = checkpoint.get("run_dir") or "elsewhere"
    mine = f"{view.run_id or view.dir.name} (id {own})" if own else \
        f"{view.run_id or view.dir.name}, which has no run id (recorded before run ids)"
    return (f"Refusing {what} {path}: it was written by run {writer} (id {carried}, "
            f"in {where}), not by this run {mine}, and this run did not take it over with "
            "--resume. A checkpoint copied from another run would credit that run's "
            "training to this one; use the run that wrote it.")
