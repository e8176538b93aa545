"""Every `mammography runs` subcommand on real run directories made by the CLI.

The tree (see conftest.py) is built once per session; tests that change runs
use ``tree_copy``. The real re-run of `runs reproduce` adds a run to the
shared tree, so it comes last and nothing here counts the whole tree.
"""

from __future__ import annotations

import json
import shutil
import tarfile

import pytest

from tests.helpers import read_summary, run_cli
from tests.runs.conftest import backdate

pytestmark = pytest.mark.slow


def cli(env, *args, **kw):
    return run_cli(*args, env=env, **kw)


def listing(env, *args):
    proc = cli(env, "runs", "list", *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return {row["path"]: row for row in json.loads(proc.stdout)}


def test_list_shows_every_kind_of_run_and_the_crashed_one(runs_tree, runs_env):
    rows = listing(runs_env, runs_tree)
    status = {path[len(str(runs_tree)) + 1:]: row["status"] for path, row in rows.items()}
    assert status["density/results_1"] == "completed"
    assert status["resumed/results_1"] == "completed"
    assert status["cv/results_1"] == "completed"
    assert status["cv/results_1/fold_1/results"] == "completed"
    assert status["cv/results_1/fold_2/results"] == "completed"
    assert status["failed/results_1"] == "failed"
    assert status["interrupted/results_1"] == "interrupted"
    assert status["killed/results_1"] == "crashed"
    killed = rows[str(runs_tree / "killed" / "results_1")]
    assert killed["recorded_status"] == "running"
    assert "is gone" in killed["crash_reason"]
    fold = rows[str(runs_tree / "cv" / "results_1" / "fold_2" / "results")]
    assert fold["parent"] == str(runs_tree / "cv" / "results_1") and fold["depth"] == 1
    assert rows[str(runs_tree / "cv" / "results_1")]["cv_mean_kappa"] is not None

    table = cli(runs_env, "runs", "list", runs_tree)
    assert table.returncode == 0
    killed_line = next(line for line in table.stdout.splitlines() if "killed" in line)
    assert " crashed " in killed_line
    assert "└ fold_1/results" in table.stdout
    assert "1 crashed" in table.stdout.splitlines()[-1]


def test_list_where_sort_limit_on_real_runs(runs_tree, runs_env):
    cv = runs_tree / "cv" / "results_1"
    only_cv = listing(runs_env, runs_tree, "--where", "hyperparameters.lr>2e-4")
    assert list(only_cv) == [str(cv), str(cv / "fold_1" / "results"),
                             str(cv / "fold_2" / "results")]
    done = listing(runs_env, runs_tree, "--where", "status==completed", "--where",
                   "integration.cv_fold==null", "--flat", "--sort", "-seed")
    assert str(runs_tree / "failed" / "results_1") not in done
    assert next(iter(done.values()))["seed"] == 43
    top = listing(runs_env, runs_tree, "--sort", "execution.start_time", "--limit", "1")
    assert len([row for row in top.values() if row["depth"] == 0]) == 1  # one group


def test_show(runs_tree, runs_env):
    proc = cli(runs_env, "runs", "show", runs_tree / "density" / "results_1", "--lines", "3")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for text in ("completed, exit 0", "command", "train-density", "git", "seed", "42",
                 "digest ", "Hyperparameters", "test_efficientnet", "Results",
                 "best_val_kappa", "Artifacts (", "best_model.pt", "KB",
                 "run.log (last 3 lines"):
        assert text in out, text
    cv = cli(runs_env, "runs", "show", runs_tree / "cv" / "results_1").stdout
    assert "fold_1/results/ (child run, completed" in cv and "cv_summary.json" in cv
    failed = cli(runs_env, "runs", "show", runs_tree / "failed" / "results_1").stdout
    assert "failed, exit 1" in failed and "RuntimeError: CUDA error" in failed
    killed = cli(runs_env, "runs", "show", runs_tree / "killed" / "results_1").stdout
    assert "crashed" in killed and "is gone" in killed


def test_diff(runs_tree, runs_env):
    a, b = runs_tree / "density" / "results_1", runs_tree / "cv" / "results_1"
    proc = cli(runs_env, "runs", "diff", a, b)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    lr = next(line for line in lines if line.strip().startswith("hyperparameters.lr "))
    assert "0.0001" in lr and "0.0003" in lr
    assert any(line.strip().startswith("seed ") for line in lines)
    assert "settings" in proc.stdout and "results" in proc.stdout
    assert "execution.pid" not in proc.stdout and "--all shows them" in lines[-1]
    assert "execution.pid" in cli(runs_env, "runs", "diff", a, b, "--all").stdout
    data = json.loads(cli(runs_env, "runs", "diff", a, b, "--json").stdout)
    keys = {d["key"]: d for d in data["differences"]}
    assert keys["seed"]["a"] == 42 and keys["seed"]["b"] == 43
    assert "data_config.manifest_digest" not in keys      # same data
    resumed = cli(runs_env, "runs", "diff", a, runs_tree / "resumed" / "results_1", "--json")
    keys = {d["key"]: d for d in json.loads(resumed.stdout)["differences"]}
    assert (keys["hyperparameters.epochs"]["a"], keys["hyperparameters.epochs"]["b"]) == (1, 2)
    assert keys["based_on.0.relation"] == {"section": "settings", "key": "based_on.0.relation",
                                           "a": None, "b": "resume", "in_a": False,
                                           "in_b": True}


def test_lineage_of_a_resumed_run(runs_tree, runs_env):
    a, resumed = runs_tree / "density" / "results_1", runs_tree / "resumed" / "results_1"
    up = cli(runs_env, "runs", "lineage", resumed)
    assert up.returncode == 0, up.stderr
    assert f"resume ← {a}" in up.stdout
    down = cli(runs_env, "runs", "lineage", a, "--root", runs_tree)
    assert f"resume → {resumed}" in down.stdout
    alone = cli(runs_env, "runs", "lineage", a, cwd=runs_tree.parent)  # outputs/ is the root
    assert "resume → outputs/resumed/results_1" in alone.stdout


def test_log(runs_tree, runs_env):
    run = runs_tree / "density" / "results_1"
    proc = cli(runs_env, "runs", "log", run, "--grep", "Epoch \\d+/", "--tail", "1")
    assert proc.returncode == 0
    assert proc.stdout.count("\n") == 1 and "Epoch 1/1" in proc.stdout
    assert "Training Complete" in cli(runs_env, "runs", "log", run, "--grep",
                                      "(?i)training complete").stdout
    everything = cli(runs_env, "runs", "log", run).stdout
    assert everything == (run / "run.log").read_text()
    bad = cli(runs_env, "runs", "log", run, "--grep", "(")
    assert bad.returncode == 2 and "not a valid regular expression" in bad.stderr


def test_validate_real_runs_then_break_two(tree_copy, runs_env):
    proc = cli(runs_env, "runs", "validate", tree_copy)
    assert proc.returncode == 0, proc.stdout
    assert "all valid" in proc.stdout
    (tree_copy / "density" / "results_1" / "best_model.pt").unlink()
    (tree_copy / "cv" / "results_1" / "fold_1" / "results" / "summary.json").write_text("{")
    proc = cli(runs_env, "runs", "validate", tree_copy)
    assert proc.returncode == 1
    assert f"{tree_copy / 'density' / 'results_1'}: required best_model.pt missing" in \
        proc.stdout
    assert f"{tree_copy / 'cv' / 'results_1' / 'fold_1' / 'results'}: summary.json is not " \
           "valid JSON" in proc.stdout


def test_clean_real_runs(tree_copy, runs_env):
    assert "Nothing to clean" in cli(runs_env, "runs", "clean", tree_copy).stdout
    for rel, days in (("density/results_1", 40), ("interrupted/results_1", 40),
                      ("cv/results_1", 40), ("failed/results_1", 10),
                      ("killed/results_1", 10)):
        backdate(tree_copy / rel, days)
    dry = cli(runs_env, "runs", "clean", tree_copy)
    assert dry.returncode == 0, dry.stderr
    listed = [line.split()[0] for line in dry.stdout.splitlines()[1:]
              if line.startswith(str(tree_copy))]
    assert sorted(listed) == sorted(str(tree_copy / rel) for rel in (
        "interrupted/results_1", "failed/results_1", "killed/results_1"))
    assert "kept:" in dry.stdout and "based on" in dry.stdout
    assert (tree_copy / "interrupted" / "results_1").exists()
    done = cli(runs_env, "runs", "clean", tree_copy, "--yes")
    assert "Deleted 3 runs" in done.stdout
    assert not (tree_copy / "interrupted" / "results_1").exists()
    for kept in ("density/results_1", "cv/results_1", "cv/results_1/fold_1/results",
                 "resumed/results_1"):
        assert (tree_copy / kept / "summary.json").exists(), kept


def test_archive_real_cv_run(runs_tree, runs_env, tmp_path):
    target = tmp_path / "cv.tar.gz"
    proc = cli(runs_env, "runs", "archive", runs_tree / "cv" / "results_1", "--to", target)
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(target) as tar:
        names = set(tar.getnames())
    assert {"results_1/cv_summary.json", "results_1/fold_1/results/best_model.pt",
            "results_1/fold_2/results/run.log"} <= names


def test_reproduce_dry_run_warns_on_each_difference(tree_copy, runs_env, runs_data, tmp_path):
    run = tree_copy / "density" / "results_1"
    ok = cli(runs_env, "runs", "reproduce", run, "--dry-run")
    assert ok.returncode == 0, ok.stderr
    assert "data matches: digest" in ok.stdout
    assert "-m mammography train-density" in ok.stdout
    assert f"MAMMOGRAPHY_BASED_ON={run}::reproduce" in ok.stdout
    assert "Dry run: nothing was run" in ok.stdout

    summary = json.loads((run / "summary.json").read_text())
    summary.update(git_commit="a1b2c3d", git_commit_full="a1b2c3d" + "0" * 33,
                   git_dirty=True)
    summary["environment"]["torch_version"] = "1.0.0"
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "git_diff.patch").write_text("diff --git a/x b/x\n")
    data = tmp_path / "data"
    shutil.copytree(runs_data, data)
    with open(data / "classificacao.csv", "a") as handle:
        handle.write("\n")
    manifest = json.loads((run / "data_manifest.json").read_text())
    manifest["csv"]["path"] = str(data / "classificacao.csv")
    manifest["dicom_root"] = str(data / "archive")
    first = manifest["images"][0]["path"]
    (data / "archive" / first).unlink()
    (run / "data_manifest.json").write_text(json.dumps(manifest))

    proc = cli(runs_env, "runs", "reproduce", run, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "WARNING: code differs: recorded a1b2c3d (dirty), checkout " in out
    assert f"git apply {run / 'git_diff.patch'}" in out
    assert "WARNING: data differs: recorded digest" in out
    assert "the CSV changed" in out and "1 images missing or unreadable" in out
    assert "WARNING: environment differs: torch 1.0.0 recorded" in out
    strict = cli(runs_env, "runs", "reproduce", run, "--strict")
    assert strict.returncode == 1 and "Not re-running" in strict.stdout


def test_export_mlflow_readable_and_idempotent(tree_copy, runs_env, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    roots = [tree_copy / "density", tree_copy / "cv"]
    proc = cli(runs_env, "runs", "export", *roots, "--to", "mlflow", "--tracking-uri", uri)
    assert proc.returncode == 0, proc.stderr
    assert "4 new" in proc.stdout
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("mammography")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    a_path = str(tree_copy / "density" / "results_1")
    assert len(runs) == 4 and a_path in runs
    a = runs[a_path]
    assert a.info.status == "FINISHED"
    assert a.data.params["lr"] == "0.0001" and a.data.params["arch"] == "test_efficientnet"
    assert a.data.params["weights"] == "null"
    assert "best_val_kappa" in a.data.metrics and "val_kappa" in a.data.metrics
    history = client.get_metric_history(a.info.run_id, "val_kappa")
    assert [m.step for m in history] == [1]
    summary = read_summary(a_path)
    assert a.data.tags["git_commit"] == summary["git_commit"]
    assert a.data.tags["mlflow.source.git.commit"] == summary["git_commit_full"]
    assert a.data.tags["git_dirty"] in ("true", "false")
    assert a.data.tags["env.torch_version"].startswith("2.")
    artifacts = {f.path for f in client.list_artifacts(a.info.run_id)}
    assert {"summary.json", "run.log", "train_history.json"} <= artifacts
    assert "best_model.pt" not in artifacts                 # no models without --with-models
    fold = runs[str(tree_copy / "cv" / "results_1" / "fold_1" / "results")]
    parent = runs[str(tree_copy / "cv" / "results_1")]
    assert fold.data.tags["mlflow.parentRunId"] == parent.info.run_id

    # Again, one run changed since: it is replaced, the others are skipped.
    doc = json.loads((tree_copy / "cv" / "results_1" / "summary.json").read_text())
    doc["notes"] = "changed"
    (tree_copy / "cv" / "results_1" / "summary.json").write_text(json.dumps(doc))
    third = cli(runs_env, "runs", "export", *roots, "--to", "mlflow", "--tracking-uri", uri)
    assert "1 replaced" in third.stdout and "3 unchanged" in third.stdout
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert len(runs) == 4                                   # no duplicates
    parent = runs[str(tree_copy / "cv" / "results_1")]       # folds follow the new parent
    assert fold.info.run_id == runs[fold.info.run_name].info.run_id
    assert runs[fold.info.run_name].data.tags["mlflow.parentRunId"] == parent.info.run_id


def test_export_tensorboard_readable(runs_tree, runs_env, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = tmp_path / "tb"
    proc = cli(runs_env, "runs", "export", runs_tree, "--to", "tensorboard", "--logdir",
               logdir, "--where", "status==completed")
    assert proc.returncode == 0, proc.stderr
    accumulator = EventAccumulator(str(logdir / "density" / "results_1"))
    accumulator.Reload()
    scalars = accumulator.Tags()["scalars"]
    assert {"val/kappa", "train/loss", "val_exam/kappa", "lr",
            "results/best_val_kappa"} <= set(scalars)
    assert [e.step for e in accumulator.Scalars("val/kappa")] == [1]
    assert "_hparams_/session_start_info" in accumulator.PluginTagToContent("hparams")
    fold = logdir / "cv" / "results_1" / "fold_1" / "results"
    assert any(p.name.startswith("events.out.tfevents.") for p in fold.iterdir())
    again = cli(runs_env, "runs", "export", runs_tree, "--to", "tensorboard", "--logdir",
                logdir, "--where", "status==completed")
    assert "unchanged" in again.stdout and "new" not in again.stdout


def test_reproduce_reruns_into_a_new_run_based_on_the_old(runs_tree, runs_env):
    """Last: it adds density/results_2 to the shared tree."""
    source = runs_tree / "density" / "results_1"
    before = set((runs_tree / "density").iterdir())
    proc = cli(runs_env, "runs", "reproduce", source)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (new,) = set((runs_tree / "density").iterdir()) - before
    summary, old = read_summary(new), read_summary(source)
    assert summary["status"] == "completed"
    assert summary["based_on"] == [{"run_dir": str(source.resolve()), "run_id": "results_1",
                                    "relation": "reproduce"}]
    assert summary["hyperparameters"] == old["hyperparameters"]
    assert summary["best_val_kappa"] == pytest.approx(old["best_val_kappa"])  # same on CPU
    lineage = cli(runs_env, "runs", "lineage", source).stdout
    assert f"reproduce → {new}" in lineage
