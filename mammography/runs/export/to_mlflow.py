"""Runs → an MLflow tracking store (`runs export --to mlflow`).

Each run directory becomes one MLflow run named after its path: params are
the hyperparameters, metrics the per-epoch history (``step=epoch``) plus the
final results, tags the git state, status, lineage and environment versions,
artifacts the run directory's files (model files only with ``--with-models``).
CV folds and HPO trials are nested under their parent (``mlflow.parentRunId``).

The default store is ``sqlite:///outputs/mlflow/mlflow.db`` under the current
folder, with artifacts in ``outputs/mlflow/mlartifacts`` (git-ignored) -- what
``mlflow ui --backend-store-uri sqlite:///outputs/mlflow/mlflow.db`` shows.
Exporting needs only mlflow-skinny (plus SQLAlchemy and alembic for a SQLite
store); ``mlflow ui`` needs the full ``mlflow`` package (its web server and the
UI's built pages), which the ``export`` extra installs.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from mammography.config.runs import DEFAULT_MLFLOW_DIR
from mammography.durations import parse_time
from mammography.runs.discover import RunRecord
from mammography.runs.export.source import (
    artifact_files,
    epoch_metrics,
    final_metrics,
    flat_params,
    missing_package,
    summary_digest,
)

TAG_RUN_DIR = "mammography.run_dir"
TAG_DIGEST = "mammography.summary_sha256"
STATUS = {"completed": "FINISHED", "failed": "FAILED", "crashed": "FAILED",
          "interrupted": "KILLED", "running": "RUNNING"}
ENV_KEYS = ("python_version", "platform", "hostname", "cuda_available", "cuda_version",
            "gpu_name")
# MLflow's limits (3.x): param values 6000 characters, tag values 8000; batch sizes.
MAX_PARAM, MAX_TAG = 6000, 8000
BATCH_PARAMS, BATCH_METRICS = 100, 1000


def default_tracking_uri() -> str:
    """``sqlite:///<cwd>/outputs/mlflow/mlflow.db``, its folder created."""
    folder = Path.cwd() / DEFAULT_MLFLOW_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def artifact_location(uri: str) -> str | None:
    """Next to a SQLite database (``mlartifacts/``); the store's own default otherwise."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        return (db.resolve().parent / "mlartifacts").as_uri()
    return None


def _ms(stamp: Any) -> int | None:
    parsed = parse_time(stamp)
    return int(parsed.timestamp() * 1000) if parsed else None


def tags_for(record: RunRecord, digest: str) -> dict[str, str]:
    summary = record.summary or {}
    execution = summary.get("execution") or {}
    environment = summary.get("environment") or {}
    tags: dict[str, Any] = {
        TAG_RUN_DIR: os.path.realpath(record.dir),
        TAG_DIGEST: digest,
        "mammography.run_id": summary.get("run_id"),
        "mammography.status": record.status,
        "mammography.experiment_type": summary.get("experiment_type"),
        "mammography.command": summary.get("command"),
        "mammography.command_line": execution.get("command_line"),
        "mammography.data_digest": (summary.get("data_config") or {}).get("manifest_digest"),
        "git_commit": summary.get("git_commit"),
        "git_branch": summary.get("git_branch"),
        "git_dirty": str(bool(summary.get("git_dirty"))).lower(),
        "mlflow.source.git.commit": summary.get("git_commit_full"),
        "mlflow.source.git.branch": summary.get("git_branch"),
        "mlflow.source.name": f"mammography {summary.get('command', '')}".strip(),
        "mlflow.source.type": "LOCAL",
        "mlflow.note.content": f"`{execution.get('command_line', '')}`\n\n"
                               f"Run directory: {os.path.realpath(record.dir)}",
    }
    if record.crash_reason:
        tags["mammography.crash_reason"] = record.crash_reason
    for key, value in (summary.get("integration") or {}).items():
        if value is not None:
            tags[f"mammography.{key}"] = value
    if summary.get("based_on"):
        tags["mammography.based_on"] = json.dumps(summary["based_on"])
    for key, value in environment.items():
        if value is not None and (key.endswith("_version") or key in ENV_KEYS) and \
                not isinstance(value, dict | list):
            tags[f"env.{key}"] = value
    return {k: str(v)[:MAX_TAG] for k, v in tags.items() if v is not None}


def metrics_for(record: RunRecord) -> list[tuple[str, float, int, int]]:
    """(key, value, timestamp ms, step): per-epoch history, then final results."""
    summary = record.summary or {}
    execution = summary.get("execution") or {}
    start = _ms(execution.get("start_time")) or 0
    end = _ms(execution.get("end_time")) or start
    found = []
    for epoch, elapsed, metrics in epoch_metrics(record):
        stamp = start + int(elapsed * 1000)
        found += [(key, value, stamp, epoch) for key, value in metrics.items()]
    found += [(key, value, end, 0) for key, value in final_metrics(summary).items()]
    return found


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _quiet() -> None:
    # The SQLite store logs its table creation and migrations at INFO on every
    # first use; the export's own summary line says what happened.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _client(tracking_uri: str | None) -> tuple[Any, str]:
    try:
        from mlflow import MlflowClient
    except ImportError as exc:
        raise missing_package("MLflow", exc) from None
    _quiet()
    uri = tracking_uri or default_tracking_uri()
    try:
        return MlflowClient(tracking_uri=uri), uri
    except ImportError as exc:  # e.g. SQLAlchemy/alembic missing for a SQLite store
        raise missing_package("MLflow", exc) from None


def _experiment_id(client: Any, name: str, uri: str) -> str:
    try:
        experiment = client.get_experiment_by_name(name)
    except ImportError as exc:  # e.g. SQLAlchemy/alembic missing for a SQLite store
        raise missing_package("MLflow", exc) from None
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location(uri))


def existing_runs(client: Any, experiment_id: str) -> dict[str, Any]:
    """run_dir tag → MLflow run, for the active runs of the experiment."""
    found: dict[str, Any] = {}
    token = None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        for run in page:
            path = run.data.tags.get(TAG_RUN_DIR)
            if path:
                found[path] = run
        token = page.token
        if not token:
            return found


def export_mlflow(records: list[RunRecord], *, tracking_uri: str | None, experiment: str,
                  with_models: bool) -> tuple[dict[str, int], str]:
    """Export ``records`` (parents first); ({new, replaced, unchanged: n}, store)."""
    client, uri = _client(tracking_uri)  # first: a missing package is an exit-2 message
    from mlflow.entities import Metric, Param

    experiment_id = _experiment_id(client, experiment, uri)
    existing = existing_runs(client, experiment_id)
    counts = {"new": 0, "replaced": 0, "unchanged": 0}
    run_ids: dict[int, str] = {}
    for record in records:
        digest = summary_digest(record)
        old = existing.get(os.path.realpath(record.dir))
        parent_id = run_ids.get(id(record.parent)) if record.parent is not None else None
        if old is not None and old.data.tags.get(TAG_DIGEST) == digest:
            run_ids[id(record)] = old.info.run_id
            if parent_id and old.data.tags.get("mlflow.parentRunId") != parent_id:
                client.set_tag(old.info.run_id, "mlflow.parentRunId", parent_id)
            counts["unchanged"] += 1
            continue
        if old is not None:
            client.delete_run(old.info.run_id)
            counts["replaced"] += 1
        else:
            counts["new"] += 1
        tags = tags_for(record, digest)
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        summary = record.summary or {}
        execution = summary.get("execution") or {}
        run = client.create_run(experiment_id, start_time=_ms(execution.get("start_time")),
                                tags=tags, run_name=record.path)
        run_id = run.info.run_id
        run_ids[id(record)] = run_id
        params = [Param(k[:250], v[:MAX_PARAM]) for k, v in flat_params(summary).items()]
        for chunk in _chunks(params, BATCH_PARAMS):
            client.log_batch(run_id, params=chunk)
        metrics = [Metric(k, v, t, s) for k, v, t, s in metrics_for(record)]
        for chunk in _chunks(metrics, BATCH_METRICS):
            client.log_batch(run_id, metrics=chunk)
        for rel in artifact_files(record, with_models):
            folder = os.path.dirname(rel)
            client.log_artifact(run_id, str(record.dir / rel), artifact_path=folder or None)
        status = STATUS.get(record.status, "FAILED")
        if status != "RUNNING":
            client.set_terminated(run_id, status=status,
                                  end_time=_ms(execution.get("end_time")))
    return counts, f"MLflow {uri} (experiment {experiment!r})"
