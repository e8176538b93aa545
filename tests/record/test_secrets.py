"""Issue 23 (3): a secret never reaches the record - summary.json (argv, command_line,
config, execution.error), config.yaml, run.log and the error messages - whatever
form SQLAlchemy accepts it in."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from mammography.config.core import to_dict
from mammography.config.storage import parse_storage
from mammography.record import secrets
from mammography.record.secrets import MASK, mask_argv, mask_secrets, secret_name
from tests.helpers import SCRIPTS, child_env, run_cli

#: The forms of the issue: "/" and a space in the password, a query parameter.
FORMS = [
    ("postgresql://u:pa/SecretB@127.0.0.1:5432/db", "SecretB",
     "postgresql://u:***@127.0.0.1:5432/db"),
    ("postgresql://u:pa SecretS@127.0.0.1:5432/db", "SecretS",
     "postgresql://u:***@127.0.0.1:5432/db"),
    ("postgresql://u@127.0.0.1:5432/db?password=SecretC", "SecretC",
     "postgresql://u@127.0.0.1:5432/db?password=***"),
    ("mysql+pymysql://bob:p@ss:wordSecretD@db/optuna", "SecretD",
     "mysql+pymysql://bob:***@db/optuna"),
    ("postgresql://u:x@h/db?sslmode=require&token=SecretE&token=SecretF", "SecretE",
     "postgresql://u:***@h/db?sslmode=require&token=***&token=***"),
    ("postgresql+psycopg2://u:Secret%2FG@h/db", "Secret%2FG", "postgresql+psycopg2://u:***@h/db"),
]


@pytest.fixture(params=["sqlalchemy", "fallback"])
def parser(request, monkeypatch):
    """Each form with SQLAlchemy's make_url and with the grammar used without it."""
    if request.param == "fallback":
        monkeypatch.setitem(sys.modules, "sqlalchemy", None)
        monkeypatch.setitem(sys.modules, "sqlalchemy.engine", None)
    return request.param


@pytest.mark.parametrize(("url", "secret", "masked"), FORMS)
def test_every_form_is_masked(parser, url, secret, masked):
    assert mask_secrets(url) == masked
    assert secret not in mask_secrets(f"cannot connect: {url} refused")
    assert mask_argv(["mammography", "tune", "--storage", url]) == [
        "mammography", "tune", "--storage", masked]
    assert mask_argv(["tune", f"--storage={url}"]) == ["tune", f"--storage={masked}"]


def test_a_url_without_a_secret_keeps_its_spelling():
    for url in ("sqlite:////shared/study.db", "postgresql://bob@db:5432/optuna?sslmode=require",
                "journal:/mnt/a@b/study.log", "ray://head:10001"):
        assert mask_secrets(url) == url


def test_secret_named_options_and_settings():
    assert secret_name("--db-password") and secret_name("api_token") and \
        secret_name("AWS_SECRET_ACCESS_KEY") and not secret_name("--storage")
    assert mask_argv(["x", "--db-password", "hunter2", "--api-token=abcd1234", "--lr", "3"]) \
        == ["x", "--db-password", MASK, "--api-token=***", "--lr", "3"]

    @dataclasses.dataclass
    class Settings:
        storage: str = "postgresql://u:pa/SecretB@h/db"
        db_password: str = "hunter2"
        extra: dict = dataclasses.field(default_factory=lambda: {"auth_token": "t0k3n"})
        lr: float = 0.1

    recorded = to_dict(Settings())
    assert recorded == {"storage": "postgresql://u:***@h/db", "db_password": MASK,
                        "extra": {"auth_token": MASK}, "lr": 0.1}


def test_free_text_masks_every_secret_seen_so_far():
    """A password with a space cannot be delimited inside free text; once seen (argv,
    a setting) it is masked wherever it appears, also percent-encoded."""
    mask_secrets("postgresql://u:pa Secret H@h/db")
    text = mask_secrets("auth failed for 'pa Secret H' (pa%20Secret%20H)")
    assert "Secret H" not in text and "Secret%20H" not in text


def test_storage_messages_never_show_it():
    for url, secret, _ in FORMS[:3]:
        assert secret not in parse_storage(url).shown
    with pytest.raises(ValueError, match="not recorded"):
        parse_storage("postgresql://u@h/db?password=***")


def test_the_run_record_and_run_log_never_show_it(tmp_path):
    """argv, command_line, config, config.yaml, run.log (the tee masks what the body
    prints) and execution.error, for each form."""
    for number, (url, secret, masked) in enumerate(FORMS[:3]):
        out = tmp_path / f"out{number}"
        proc = subprocess.run([sys.executable, str(SCRIPTS / "secret_run.py"), str(out), url,
                               "hunter2-secret"], capture_output=True, text=True,
                              env=child_env(), timeout=120)
        assert proc.returncode == 1, proc.stderr
        run = out / "results_1"
        for name in ("summary.json", "config.yaml", "run.log"):
            text = (run / name).read_text()
            assert secret not in text and "hunter2-secret" not in text, (name, text[-2000:])
        summary = (run / "summary.json").read_text()
        assert masked in summary and "cannot reach" in summary
        assert f"connecting to {masked}" in (run / "run.log").read_text()


def test_unreachable_server_message_hides_it(tmp_path):
    """The exit-2 message when the server cannot be reached (stderr, before any run)."""
    pytest.importorskip("sqlalchemy")
    if not any(_installed(m) for m in ("psycopg2", "psycopg")):
        pytest.skip("no PostgreSQL driver installed")
    for url, secret, _ in FORMS[:3]:
        proc = run_cli("tune", "--csv", tmp_path / "none.csv", "--n-trials", "1",
                       "--outdir", tmp_path / "out", "--storage", url, timeout=120)
        assert proc.returncode == 2
        assert "cannot be reached" in proc.stderr and secret not in proc.stderr + proc.stdout


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.slow
def test_tune_records_no_query_password(synthetic_dataset, tmp_path):
    """`tune --storage sqlite:///…?password=SecretC` runs (SQLite ignores it) and no file
    of the run - summary.json, config.yaml, run.log, the trial's - holds the secret."""
    storage = f"sqlite:///{tmp_path / 'study.db'}?password=SecretC"
    proc = run_cli("tune", "--csv", synthetic_dataset / "classificacao.csv", "--dicom-root",
                   synthetic_dataset / "archive", "--arch", "test_efficientnet",
                   "--no-pretrained", "--img-size", "64", "--epochs", "1", "--n-trials", "1",
                   "--num-workers", "0", "--outdir", tmp_path / "out", "--storage", storage,
                   env=child_env(MAMMOGRAPHY_CACHE_DIR=str(tmp_path / "cache")))
    assert proc.returncode == 0, proc.stderr[-3000:]
    leaked = [str(p) for p in (tmp_path / "out").rglob("*") if p.is_file()
              and b"SecretC" in p.read_bytes()]
    assert leaked == []
    assert "password=***" in (tmp_path / "out" / "results_1" / "summary.json").read_text()


def test_secrets_module_needs_only_the_standard_library():
    """The tee worker loads it by path, without the package or site-packages."""
    source = Path(secrets.__file__).read_text()
    assert "from mammography" not in source and "import mammography" not in source


@pytest.mark.slow
def test_a_real_server_with_a_slash_and_a_space_in_the_password(synthetic_dataset, tmp_path):
    """Against the PostgreSQL of MAMMOGRAPHY_TEST_POSTGRES_URL (`.ci/postgres start DIR`;
    skipped without one): a role whose password holds "/" and a space runs a study,
    and no file of the run holds the password."""
    import os

    admin = os.environ.get("MAMMOGRAPHY_TEST_POSTGRES_URL")
    if not admin:
        pytest.skip("no PostgreSQL server: set MAMMOGRAPHY_TEST_POSTGRES_URL")
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from sqlalchemy.engine import make_url

    server = parse_storage(admin)
    engine = sqlalchemy.create_engine(server.url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql("DROP ROLE IF EXISTS mammography_secret_test")
        conn.exec_driver_sql("CREATE ROLE mammography_secret_test LOGIN SUPERUSER "
                             "PASSWORD 'pa/Secret Z9'")
    engine.dispose()
    url = make_url(admin)
    storage = (f"postgresql://mammography_secret_test:pa/Secret Z9@{url.host}:{url.port}/"
               f"{url.database}")
    proc = run_cli("tune", "--csv", synthetic_dataset / "classificacao.csv", "--dicom-root",
                   synthetic_dataset / "archive", "--arch", "test_efficientnet",
                   "--no-pretrained", "--img-size", "64", "--epochs", "1", "--n-trials", "1",
                   "--num-workers", "0", "--outdir", tmp_path / "out", "--storage", storage,
                   "--study-name", f"secret-{os.getpid()}",
                   env=child_env(MAMMOGRAPHY_CACHE_DIR=str(tmp_path / "cache")))
    assert proc.returncode == 0, proc.stderr[-3000:]
    leaked = [str(p) for p in (tmp_path / "out").rglob("*") if p.is_file()
              and b"Secret Z9" in p.read_bytes()]
    assert leaked == []
