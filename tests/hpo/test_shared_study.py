"""One Optuna study, several `tune` workers: on a real PostgreSQL server, and in a journal file.

The server tests need a PostgreSQL server: ``MAMMOGRAPHY_TEST_POSTGRES_URL``
names it (``.ci/postgres start DIR`` starts a private one on loopback and
prints the URL; `.ci/run` does so for CI). Without one they skip, saying so —
unless ``MAMMOGRAPHY_TEST_REQUIRE_POSTGRES=1`` (CI), where a missing server fails.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from mammography.config.storage import parse_storage, reachable_problem
from mammography.hpo.trial_owners import OWNER_RUN
from mammography.record.reporter import CollectingReporter
from tests.helpers import child_env, read_summary, run_cli

pytestmark = pytest.mark.slow

ENV_URL = "MAMMOGRAPHY_TEST_POSTGRES_URL"
ENV_REQUIRED = "MAMMOGRAPHY_TEST_REQUIRE_POSTGRES"
TINY = ["--arch", "test_efficientnet", "--no-pretrained", "--img-size", "64",
        "--num-workers", "0", "--batch-size", "32", "--epochs", "1", "--pruner", "none"]


@pytest.fixture(scope="module")
def postgres():
    url = os.environ.get(ENV_URL)
    if not url:
        reason = (f"no PostgreSQL server: set {ENV_URL} (`.ci/postgres start DIR` starts one "
                  "on loopback and prints its URL)")
    else:
        reason = reachable_problem(parse_storage(url))
    if reason:
        if os.environ.get(ENV_REQUIRED) == "1":
            pytest.fail(f"{ENV_REQUIRED}=1 but {reason}")
        pytest.skip(reason)
    return url


@pytest.fixture
def env(cache_dir):
    return child_env(MAMMOGRAPHY_CACHE_DIR=str(cache_dir), OMP_NUM_THREADS="1")


def tune_args(dataset, storage, study, n_trials, outdir):
    return [sys.executable, "-m", "mammography", "tune", "--csv",
            str(dataset / "classificacao.csv"), "--dicom-root", str(dataset / "archive"),
            *TINY, "--n-trials", str(n_trials), "--storage", storage, "--study-name", study,
            "--outdir", str(outdir)]


def load(storage, study):
    """The study as Optuna itself reads it from the storage."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = parse_storage(storage)
    backend = optuna.storages.JournalStorage(JournalFileBackend(spec.url)) \
        if spec.kind == "journal" else spec.url
    return optuna.load_study(study_name=study, storage=backend)


def states(study):
    return {t.number: t.state.name for t in study.get_trials(deepcopy=False)}


def wait_for_training(run_dir, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        for log in run_dir.glob("trial_*/results/run.log"):
            if "Epoch 1/" in log.read_text(errors="replace"):
                return log.parent
        time.sleep(0.05)
    raise AssertionError(f"no trial of {run_dir} started training")


def test_two_workers_share_a_study_on_postgresql_and_a_killed_one_resumes(
        postgres, synthetic_dataset, env, tmp_path):
    study_name = f"ci-{uuid.uuid4().hex[:10]}"
    # Two workers at once: the study gets exactly --n-trials trials, each run once.
    workers = [subprocess.Popen(tune_args(synthetic_dataset, postgres, study_name, 3,
                                          tmp_path / name), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    for proc in workers:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    study = load(postgres, study_name)
    finished = [t for t in study.get_trials(deepcopy=False)
                if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 3
    for trial in finished:  # each trial ran in exactly one worker, which recorded it
        homes = [w for w in ("a", "b")
                 if (tmp_path / w / "results_1" / f"trial_{trial.number}" / "results").is_dir()]
        assert len(homes) == 1, (trial.number, homes)
        assert trial.user_attrs[OWNER_RUN] == str((tmp_path / homes[0] / "results_1").resolve())
        summary = read_summary(tmp_path / homes[0] / "results_1" / f"trial_{trial.number}"
                               / "results")
        assert summary["integration"]["optuna_trial_id"] == f"{study_name}-{trial.number}"
    summaries = [read_summary(tmp_path / w / "results_1") for w in ("a", "b")]
    for summary in summaries:
        assert summary["search"]["storage"].startswith("postgresql://")
        # Each worker's trials.csv lists the whole study as it was when that worker ended.
        rows = (tmp_path / summary["run_dir"] / "trials.csv").read_text().splitlines()
        assert len(rows) - 1 == summary["results"]["trials"]["COMPLETE"] + sum(
            summary["results"]["trials"].get(s, 0) for s in ("FAIL", "SKIPPED", "RUNNING"))
    # The worker that ended last saw every trial: its best is the study's.
    assert study.best_trial.number in [s["results"]["best_trial"]["number"] for s in summaries]
    # Distinct samplers: two workers started together do not draw the same trials.
    assert summaries[0]["search"]["sampler_seed"] != summaries[1]["search"]["sampler_seed"]
    password = parse_storage(postgres).url.split("@")[0].rpartition(":")[2]
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".yaml", ".log", ".csv"):
            assert password not in path.read_text(errors="replace"), path

    # A third worker, killed mid-trial: its trial stays RUNNING until it is resumed.
    proc = subprocess.Popen(tune_args(synthetic_dataset, postgres, study_name, 5,
                                      tmp_path / "c"), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    killed_dir = wait_for_training(tmp_path / "c" / "results_1", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    killed = json.loads((killed_dir / "optuna_trial.json").read_text())["trial_number"]
    assert states(load(postgres, study_name))[killed] == "RUNNING"
    # The recorded URL has no password: resuming asks for it, then continues the study.
    refused = run_cli("tune", "--resume", tmp_path / "c" / "results_1", env=env)
    assert refused.returncode == 2 and "password is not recorded" in refused.stderr
    resumed = run_cli("tune", "--resume", tmp_path / "c" / "results_1", "--storage", postgres,
                      env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = states(load(postgres, study_name))
    assert final[killed] == "FAIL"
    assert sum(s in ("COMPLETE", "PRUNED") for s in final.values()) == 5
    assert sorted(final) == list(range(len(final)))  # no trial lost, none counted twice
    log = (tmp_path / "c" / "results_2" / "run.log").read_text()
    assert f"trial {killed} was left running" in log and "marked failed" in log
    second = read_summary(tmp_path / "c" / "results_2")
    assert second["based_on"][0]["relation"] == "resume"
    assert second["search"]["trials_before"] == 3


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_workers_opening_one_storage_share_its_study(tmp_path, kind):
    """Two storage objects (two workers) on one journal file or SQLite file, in process."""
    import optuna

    from mammography.config.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    text = f"journal:{tmp_path / 'study.log'}" if kind == "journal" else \
        f"sqlite:///{tmp_path / 'study.db'}"
    reporter = CollectingReporter()
    first, second = (optuna.create_study(study_name="s", load_if_exists=True,
                                         storage=open_storage(parse_storage(text), reporter))
                     for _ in range(2))
    one = first.ask()
    two = second.ask()
    assert (one.number, two.number) == (0, 1)  # numbers are the study's, not the worker's
    first.tell(two.number, 0.5)
    second.tell(one.number, 0.25)
    assert [t.value for t in load(text, "s").trials] == [0.25, 0.5]
    assert reporter.warnings == []  # a local file system: no NFS warning


def test_sqlite_on_a_network_file_system_is_a_warning(tmp_path, monkeypatch):
    import mammography.config.storage as storage

    monkeypatch.setattr(storage, "network_filesystem", lambda path: "nfs4")
    reporter = CollectingReporter()
    storage.open_storage(parse_storage(f"sqlite:///{tmp_path / 'study.db'}"), reporter)
    assert len(reporter.warnings) == 1 and "network file system (nfs4)" in \
        reporter.warnings[0] and "journal:PATH" in reporter.warnings[0]


OPEN_STORAGE = """
import sys
from mammography.config.storage import open_storage, parse_storage
from mammography.record.reporter import CollectingReporter

open_storage(parse_storage(sys.argv[1]), CollectingReporter())
"""


def test_workers_opening_a_new_database_at_once_all_get_the_study(postgres, tmp_path):
    """Optuna creates its tables on first use without a lock (optuna/optuna#1092): six
    workers started together on an empty database must all open it, none fail."""
    import sqlalchemy

    name = f"fresh_{uuid.uuid4().hex[:10]}"
    server = parse_storage(postgres)
    admin = sqlalchemy.create_engine(server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    fresh = postgres.rsplit("/", 1)[0] + "/" + name
    try:
        workers = [subprocess.Popen([sys.executable, "-c", OPEN_STORAGE, fresh],
                                    env=child_env(), stderr=subprocess.PIPE, text=True)
                   for _ in range(6)]
        for proc in workers:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err[-2000:]
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def test_losing_the_race_to_create_the_tables_opens_the_storage_again(tmp_path, monkeypatch):
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    import mammography.config.storage as storage

    attempts = []

    def rdb(url, **kwargs):
        attempts.append(url)
        if len(attempts) == 1:
            raise ProgrammingError("CREATE TABLE studies", {},
                                   Exception('relation "studies" already exists'))
        if len(attempts) == 2:
            raise IntegrityError("CREATE TABLE alembic_version", {}, Exception(
                'duplicate key value violates unique constraint "pg_type_typname_nsp_index"'
                "\nDETAIL:  Key (typname, typnamespace)=(alembic_version, 2200) already "
                "exists."))
        return "storage"

    monkeypatch.setattr(optuna.storages, "RDBStorage", rdb)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    reporter = CollectingReporter()
    spec = parse_storage(f"sqlite:///{tmp_path / 'study.db'}")
    assert storage.open_storage(spec, reporter) == "storage"
    assert len(attempts) == 3
    assert sum("another worker is creating the study tables" in line
               for line in reporter.lines) == 2

    def refused(url, **kwargs):  # anything else is not retried
        attempts.append(url)
        raise ProgrammingError("SELECT 1", {}, Exception("permission denied for schema"))

    monkeypatch.setattr(optuna.storages, "RDBStorage", refused)
    attempts.clear()
    with pytest.raises(ProgrammingError):
        storage.open_storage(spec, reporter)
    assert len(attempts) == 1
