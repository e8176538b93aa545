"""`tune --storage`: the kinds, drivers, masked passwords, unreachable servers, NFS."""

import importlib.util
import socket

import pytest

from mammography.config.storage import (
    StorageError,
    network_filesystem,
    parse_storage,
    sqlite_path,
    storage_problems,
    study_storage,
)
from mammography.record.secrets import mask_secrets
from tests.helpers import child_env, run_cli


@pytest.mark.parametrize(("text", "masked"), [
    ("postgresql://bob:hunter2@db.lan:5432/optuna", "postgresql://bob:***@db.lan:5432/optuna"),
    ("mysql+pymysql://bob:p@ss:word@db/optuna", "mysql+pymysql://bob:***@db/optuna"),
    ("--storage=postgresql://u:x@h/d", "--storage=postgresql://u:***@h/d"),
    ("postgresql://bob@db/optuna", "postgresql://bob@db/optuna"),      # no password
    ("postgresql://db:5432/optuna", "postgresql://db:5432/optuna"),    # a port, no user
    ("sqlite:////shared/study.db", "sqlite:////shared/study.db"),
    ("journal:/mnt/a@b/study.log", "journal:/mnt/a@b/study.log"),
    ("see https://a:b@x.org/p and ftp://c:d@y/q", "see https://a:***@x.org/p and "
                                                  "ftp://c:***@y/q"),
])
def test_mask_secrets(text, masked):
    assert mask_secrets(text) == masked


def _installed(module):
    return importlib.util.find_spec(module) is not None


def test_kinds_and_drivers(tmp_path):
    assert parse_storage(f"sqlite:///{tmp_path}/s.db").kind == "sqlite"
    journal = parse_storage(f"journal:{tmp_path}/study.log")
    assert journal.kind == "journal" and journal.url == str(tmp_path / "study.log")
    if _installed("psycopg2") or _installed("psycopg"):
        pg = parse_storage("postgres://bob:pw@db/optuna")  # the Heroku spelling too
        assert pg.kind == "postgresql" and pg.is_server
        assert pg.url.startswith(("postgresql+psycopg2://", "postgresql+psycopg://"))
        assert pg.url.endswith("bob:pw@db/optuna") and pg.shown == "postgres://bob:***@db/optuna"
    if _installed("pymysql") and not _installed("MySQLdb"):
        assert parse_storage("mysql://u@db/o").url == "mysql+pymysql://u@db/o"
    explicit = parse_storage("postgresql+pg8000://u@db/o") if _installed("pg8000") else None
    assert explicit is None or explicit.url == "postgresql+pg8000://u@db/o"


@pytest.mark.parametrize(("text", "expected"), [
    ("study.db", "not a storage URL"),
    ("redis://localhost/0", "unknown kind 'redis'"),
    ("journal:", "needs a file"),
    ("journal:/no/such/folder/study.log", "folder /no/such/folder does not exist"),
    ("postgresql://bob:***@db/optuna", "password is not recorded"),
])
def test_unusable_storage_is_explained(text, expected):
    with pytest.raises(StorageError, match=expected.replace("(", r"\(")):
        parse_storage(text)


def test_a_journal_naming_a_folder_is_refused(tmp_path):
    with pytest.raises(StorageError, match="is a folder"):
        parse_storage(f"journal:{tmp_path}")


def test_a_missing_driver_names_the_extra(monkeypatch):
    import mammography.config.storage as storage

    monkeypatch.setattr(storage.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(StorageError, match=r"no postgresql driver.*mammography\[storage\]"):
        parse_storage("postgresql://u:pw@db/o")
    with pytest.raises(StorageError, match="needs the pymysql module"):
        parse_storage("mysql+pymysql://u@db/o")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
def test_an_unreachable_server_is_one_problem_with_the_url_masked(scheme):
    driver = {"postgresql": ("psycopg", "psycopg2"), "mysql": ("pymysql", "MySQLdb")}[scheme]
    if not any(map(_installed, driver)):
        pytest.skip(f"no {scheme} driver installed")
    problems = storage_problems(f"{scheme}://bob:hunter2@127.0.0.1:{_closed_port()}/optuna")
    assert len(problems) == 1
    assert f"{scheme}://bob:***@127.0.0.1:" in problems[0] and "hunter2" not in problems[0]
    assert "cannot be reached" in problems[0] and "Fix: start the server" in problems[0]


def test_tune_refuses_an_unreachable_storage_before_making_a_run(tmp_path, synthetic_dataset):
    if not (_installed("psycopg") or _installed("psycopg2")):
        pytest.skip("no PostgreSQL driver installed")
    url = f"postgresql://bob:hunter2@127.0.0.1:{_closed_port()}/optuna"
    proc = run_cli("tune", "--csv", synthetic_dataset / "classificacao.csv", "--storage", url,
                   "--outdir", tmp_path / "hpo", env=child_env(MAMMOGRAPHY_CACHE_DIR=str(
                       tmp_path / "cache")))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "postgresql://bob:***@127.0.0.1:" in proc.stderr and "hunter2" not in proc.stderr
    assert "Fix:" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "hpo").exists()  # refused before any run directory


def test_storage_is_for_optuna_only():
    from mammography.config.tune import TuneConfig

    problems = TuneConfig(csv=None, engine="ray", storage="journal:/tmp/x.log").problems()
    assert any("--storage is for --engine optuna" in p for p in problems)


def test_network_filesystem_from_the_mount_table(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/vda / ext4 rw 0 0\n"
                      "server:/export /shared nfs4 rw,relatime 0 0\n"
                      "//nas/lab /mnt/lab\\040data cifs rw 0 0\n")
    assert network_filesystem(tmp_path, str(mounts)) is None
    assert network_filesystem("/shared/studies", str(mounts)) == "nfs4"
    assert network_filesystem("/mnt/lab data/x", str(mounts)) == "cifs"
    assert network_filesystem("/sharedness", str(mounts)) is None  # a prefix, not a parent
    assert network_filesystem("/x", str(tmp_path / "absent")) is None


def test_sqlite_path():
    assert str(sqlite_path(parse_storage("sqlite:////shared/s.db"))) == "/shared/s.db"
    assert str(sqlite_path(parse_storage("sqlite:///rel/s.db?timeout=5"))) == "rel/s.db"
    assert sqlite_path(parse_storage("sqlite://")) is None


def test_what_a_run_records_never_holds_the_password():
    from mammography.config.core import run_settings
    from mammography.config.tune import TuneConfig
    from mammography.record.document import command_line, recorded_argv

    url = "postgresql://bob:hunter2@db/optuna"
    settings = run_settings(TuneConfig(csv=None, storage=url))
    assert settings["config_record"]["storage"] == "postgresql://bob:***@db/optuna"
    assert "storage" not in settings["hyperparameters"]  # it does not change results
    argv = ["mammography", "tune", "--storage", url, f"--storage={url}"]
    assert "hunter2" not in " ".join(recorded_argv(argv)) + command_line(argv)
    assert recorded_argv(argv)[3] == "postgresql://bob:***@db/optuna"


def test_the_storage_a_tune_run_uses(tmp_path):
    """--storage, else the resumed run's (as its summary.json recorded it), else study.db in
    the new run."""
    import json

    run_dir, resumed = tmp_path / "results_2", tmp_path / "results_1"
    resumed.mkdir()
    (resumed / "summary.json").write_text(json.dumps(
        {"search": {"storage": f"journal:{tmp_path / 'big.log'}"}}))
    given = study_storage(f"sqlite:///{tmp_path / 'mine.db'}", resumed, run_dir)
    assert sqlite_path(given) == tmp_path / "mine.db"
    again = study_storage(None, resumed, run_dir)
    assert (again.kind, again.url) == ("journal", str(tmp_path / "big.log"))
    fresh = study_storage(None, None, run_dir)
    assert sqlite_path(fresh) == (run_dir / "study.db").resolve()

