"""`tune --storage`: where an Optuna study lives, checked before any run directory exists.

Three kinds, one option:

* ``sqlite:///PATH`` — one machine (the default is ``study.db`` in the tune
  run). SQLite's file locking is unreliable on network file systems, so it is
  no way to share a study between machines.
* ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB`` or ``mysql://…`` — any
  SQLAlchemy URL of a database server: several machines, one study. Without a
  driver in the URL the installed one is used (psycopg 3 or psycopg2;
  mysqlclient or PyMySQL: ``pip install 'mammography[storage]'``).
* ``journal:PATH`` — Optuna's journal file, an append-only log whose lock
  (a symlink) Optuna documents as safe on NFS: a shared file system, no server.

The form (kind, driver, the journal's folder) is checked first; then a server
is asked for a connection with a short timeout, so a URL that cannot be reached
is exit 2 with the URL (password masked) and the fix, not a traceback minutes
into a study.

This module is the whole of the storage: its forms, the check above (run by the
settings, before any run directory exists), which one a tune run uses
(:func:`study_storage`) and the Optuna storage object it opens
(:func:`open_storage`; optuna and SQLAlchemy are imported inside the functions
that need them). Who runs which trial of a study is hpo/trial_owners.py's.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mammography.record.contract import STUDY_DB, read_summary
from mammography.record.reporter import Reporter
from mammography.record.secrets import has_masked_password, mask_secrets

JOURNAL_PREFIX = "journal:"
CONNECT_TIMEOUT_SECONDS = 10
INSTALL_HINT = "pip install 'mammography[storage]'"
# SQLAlchemy dialect → (drivers tried in order when the URL names none, as
# (SQLAlchemy driver name, module)); the first is SQLAlchemy's own default.
_DRIVERS = {
    "postgresql": (("psycopg2", "psycopg2"), ("psycopg", "psycopg")),
    "mysql": (("mysqldb", "MySQLdb"), ("pymysql", "pymysql")),
}
_DRIVER_MODULES = {"psycopg": "psycopg", "psycopg2": "psycopg2", "pg8000": "pg8000",
                   "mysqldb": "MySQLdb", "pymysql": "pymysql",
                   "mysqlconnector": "mysql.connector"}
_SERVER_FIX = {
    "postgresql": "start the server (Debian: `pg_ctlcluster <version> main start`) or "
                  "correct the host, port, user, password or database in the URL (the "
                  "database must exist: `createdb NAME`; a password can also come from "
                  "PGPASSWORD or ~/.pgpass instead of the URL)",
    "mysql": "start the server or correct the host, port, user, password or database in "
             "the URL (the database must exist: `CREATE DATABASE name`)",
}


@dataclass(frozen=True)
class Storage:
    """A parsed ``--storage``: what Optuna is given, and how it is shown."""

    kind: str            # "sqlite", "journal" or a server dialect ("postgresql", "mysql")
    url: str             # for SQLAlchemy (driver filled in) or the journal file's path
    shown: str           # the option as given, password masked: for messages and records

    @property
    def is_server(self) -> bool:
        return self.kind in _DRIVERS


class StorageError(ValueError):
    """A ``--storage`` that cannot be used; the message names it (masked) and the fix."""


def parse_storage(text: str) -> Storage:
    """``--storage TEXT`` as a Storage (StorageError saying what is wrong and the fix)."""
    text = text.strip()
    shown = mask_secrets(text)
    if has_masked_password(text):
        raise StorageError(
            f"--storage {shown}: the password is not recorded in a run (it shows as ***); "
            "give the URL again with it (`mammography tune --resume RUN --storage "
            "'postgresql://USER:PASSWORD@HOST/DB'`), or keep it out of the URL "
            "(PostgreSQL reads PGPASSWORD or ~/.pgpass)")
    if text.startswith(JOURNAL_PREFIX):
        path = Path(text[len(JOURNAL_PREFIX):]).expanduser()
        if not str(path) or str(path) == ".":
            raise StorageError("--storage journal: needs a file, e.g. "
                               "--storage journal:/shared/studies/density.log")
        path = Path(os.path.abspath(path))
        if not path.parent.is_dir():
            raise StorageError(f"--storage {shown}: folder {path.parent} does not exist; "
                               "create it (on the shared file system every worker sees)")
        if path.is_dir():
            raise StorageError(f"--storage {shown}: {path} is a folder; name a file in it, "
                               f"e.g. journal:{path / 'study.log'}")
        return Storage("journal", str(path), f"{JOURNAL_PREFIX}{path}")
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise StorageError(f"--storage {shown} is not a storage URL: use sqlite:///PATH, "
                           "postgresql://USER@HOST/DB, mysql://USER@HOST/DB or journal:PATH")
    dialect, _, driver = scheme.lower().partition("+")
    if dialect == "postgres":  # Heroku-style spelling; SQLAlchemy knows only "postgresql"
        dialect = "postgresql"
    if dialect == "sqlite":
        return Storage("sqlite", text, shown)
    if dialect not in _DRIVERS:
        raise StorageError(f"--storage {shown}: unknown kind {scheme!r}; use sqlite:///PATH, "
                           "postgresql://…, mysql://… or journal:PATH")
    if driver:
        module = _DRIVER_MODULES.get(driver)
        if module is not None and importlib.util.find_spec(module.split(".")[0]) is None:
            raise StorageError(f"--storage {shown} needs the {module} module: "
                               f"pip install {module.split('.')[0]}, or drop '+{driver}' to "
                               f"use the driver of {INSTALL_HINT}")
        return Storage(dialect, f"{dialect}+{driver}://{rest}", shown)
    for name, module in _DRIVERS[dialect]:
        if importlib.util.find_spec(module) is not None:
            return Storage(dialect, f"{dialect}+{name}://{rest}", shown)
    raise StorageError(f"--storage {shown}: no {dialect} driver is installed: {INSTALL_HINT}")


def connect_args(storage: Storage) -> dict[str, int]:
    """Driver options that keep an unreachable server from hanging a study's start."""
    return {"connect_timeout": CONNECT_TIMEOUT_SECONDS} if storage.is_server else {}


def reachable_problem(storage: Storage) -> str | None:
    """Why a server ``storage`` cannot be used now (None when it answers, or not a server)."""
    if not storage.is_server:
        return None
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = None
    try:
        engine = sqlalchemy.create_engine(storage.url, connect_args=connect_args(storage),
                                          poolclass=NullPool)
        with engine.connect():
            pass
    except Exception as exc:  # any driver's error: refused, unknown host, auth, no db
        reason = mask_secrets(" ".join(str(getattr(exc, "orig", None) or exc).split()))[:300]
        stop = "" if reason.endswith((".", "?", "!")) else "."
        return (f"--storage {storage.shown} cannot be reached: {reason}{stop} "
                f"Fix: {_SERVER_FIX[storage.kind]}")
    finally:
        if engine is not None:
            engine.dispose()
    return None


def storage_problems(text: str | None) -> list[str]:
    """Everything wrong with ``--storage`` (empty for the default and for a usable one)."""
    if text is None:
        return []
    try:
        storage = parse_storage(text)
    except StorageError as exc:
        return [str(exc)]
    problem = reachable_problem(storage)
    return [problem] if problem else []


# ------------------------------------------------------------ network file systems
NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs",
                                 "ceph", "glusterfs", "lustre", "gpfs", "beegfs",
                                 "fuse.sshfs", "fuse.glusterfs", "fuse.ceph", "fuse.s3fs",
                                 "fuse.gcsfuse", "fuse.juicefs"})


def network_filesystem(path: Path, mounts: str = "/proc/self/mounts") -> str | None:
    """The type of the network file system ``path`` is on (None if local or unknown)."""
    try:
        with open(mounts, encoding="utf-8", errors="replace") as handle:
            table = [line.split() for line in handle]
    except OSError:
        return None
    target = os.path.realpath(path)
    best, kind = "", None
    for fields in table:
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind if kind in NETWORK_FILESYSTEMS else None


def sqlite_path(storage: Storage) -> Path | None:
    """The database file of a ``sqlite:///PATH`` storage (None for memory or others)."""
    if storage.kind != "sqlite":
        return None
    path = storage.url.split("://", 1)[1]
    path = path[1:] if path.startswith("/") else path  # sqlite:///rel, sqlite:////abs
    path = path.split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


# ------------------------------------------------------------ the storage a tune run opens
#: Optuna's heartbeat on a database server, and how old one may get before its
#: trial counts as dead (hpo/trial_owners.py).
HEARTBEAT_SECONDS = 60
GRACE_SECONDS = 180
#: Attempts at opening a storage whose tables another worker is creating.
SCHEMA_ATTEMPTS = 8


def study_storage(option: str | None, resume: Path | None, run_dir: Path) -> Storage:
    """``--storage``, else the storage of the tune run being resumed, else ``study.db``
    in this run (``run_dir``)."""
    if option:
        return parse_storage(option)
    if resume is not None:
        previous = read_summary(resume).get("search", {})
        if previous.get("storage"):
            return parse_storage(previous["storage"])
    return parse_storage(f"sqlite:///{(Path(run_dir) / STUDY_DB).resolve()}")


def open_storage(storage: Storage, reporter: Reporter) -> Any:
    """The Optuna storage object for ``storage`` (warning when SQLite is on NFS)."""
    import optuna
    from optuna.exceptions import ExperimentalWarning

    if storage.kind == "journal":
        try:
            from optuna.storages.journal import JournalFileBackend
        except ImportError:  # optuna < 4.0
            from optuna.storages import JournalFileStorage as JournalFileBackend
        return optuna.storages.JournalStorage(JournalFileBackend(storage.url))
    database = sqlite_path(storage)
    filesystem = network_filesystem(database.parent) if database is not None else None
    if filesystem:
        reporter.warn(f"--storage {storage.shown} is on a network file system ({filesystem}): "
                      "SQLite's locking is unreliable there and workers on several machines "
                      "can corrupt the study; use --storage journal:PATH or a database server "
                      "(postgresql://…)")
    if not storage.is_server:
        return _created_once_by_someone(lambda: optuna.storages.RDBStorage(storage.url),
                                        storage, reporter)

    def rdb() -> Any:
        with warnings.catch_warnings():
            # The heartbeat is "experimental" since optuna 2.9 and stable in use.
            warnings.simplefilter("ignore", ExperimentalWarning)
            return optuna.storages.RDBStorage(
                storage.url, engine_kwargs={"connect_args": connect_args(storage),
                                            "pool_pre_ping": True},
                heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS)

    return _created_once_by_someone(rdb, storage, reporter)


def _created_once_by_someone(open_rdb: Any, storage: Storage, reporter: Reporter) -> Any:
    """``open_rdb()``, again when it lost the race to create the study tables.

    Optuna creates its tables (and stamps their alembic version) when it first opens
    an empty database, with no lock: workers started together on a new database
    collide ("relation/table ... already exists", a duplicate key in PostgreSQL's
    catalogue; optuna/optuna#1092, whose advice is to create the tables first).
    The loser only has to open the storage again once the winner is done, which
    then finds the tables and their version. Any other error is raised at once.
    """
    import random
    import time

    from sqlalchemy.exc import DBAPIError

    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            return open_rdb()
        except DBAPIError as exc:
            if "already exists" not in str(exc) or attempt == SCHEMA_ATTEMPTS - 1:
                raise
            delay = min(2.0, 0.2 * 2 ** attempt) * (0.5 + random.random())
            reporter.log(f"--storage {storage.shown}: another worker is creating the study "
                         f"tables; opening it again in {delay:.1f}s")
            time.sleep(delay)
    raise AssertionError("unreachable")  # the last attempt returns or raises
