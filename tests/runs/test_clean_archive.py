"""`runs clean` (retention policy, dry run, --yes, --keep-logs) and `runs archive`."""

import datetime as dt
import os
import tarfile

import pytest

from mammography.runs.clean import plan, run_time
from mammography.runs.discover import find_runs

DAY = 86400.0


def ago(days: float) -> str:
    when = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)
    return when.isoformat(timespec="seconds")


@pytest.fixture
def tree(tmp_path, fake_run):
    """Runs of every kind, ages in days in the names' comments."""
    root = tmp_path / "outputs"
    old = dict(start=ago(40), end=ago(40))
    fake_run(root / "results_1", **old)                                  # exploratory, old
    fake_run(root / "results_2", start=ago(3), end=ago(3))               # exploratory, new
    fake_run(root / "results_3", status="failed", start=ago(9), end=ago(9))
    fake_run(root / "results_4", status="failed", start=ago(2), end=ago(2))
    fake_run(root / "results_5", **old)                                  # KEEP
    (root / "results_5" / "KEEP").touch()
    fake_run(root / "results_6", **old, results={"num_folds": 2, "cv_mean_kappa": 0.5})
    fake_run(root / "results_6" / "fold_1" / "results", **old, integration={"cv_fold": 1})
    fake_run(root / "results_7", **old)                                  # resumed by 8
    fake_run(root / "results_8", start=ago(1), end=ago(1), based_on=[
        {"run_dir": str((root / "results_7").resolve()), "run_id": "results_7",
         "relation": "resume"}])
    fake_run(root / "results_9", status="running", start=ago(60), end=None,
             heartbeat=ago(0), pid=os.getpid())                          # alive, old start
    fake_run(root / "results_10", status="running", start=ago(20), end=None,
             heartbeat=ago(20), pid=os.getpid())                         # crashed: stale
    # An HPO search whose summary names its best trial; trials are new.
    fake_run(root / "results_11", start=ago(1), end=ago(1), experiment_type=
             "hyperparameter_search", command="tune", results={"best_trial": "trial_2"})
    for n in (1, 2, 3):
        fake_run(root / "results_11" / f"trial_{n}" / "results", start=ago(1), end=ago(1),
                 integration={"optuna_trial_id": n})
    # A search that has not selected a best trial yet: its trials stay.
    fake_run(root / "results_12", start=ago(1), end=ago(1), command="tune", results={})
    fake_run(root / "results_12" / "trial_1" / "results", start=ago(1), end=ago(1),
             integration={"optuna_trial_id": 1})
    return root


def decided(root, **kw):
    records = find_runs([root])
    decisions, kept = plan(records, failed_after=7 * DAY, older_than=30 * DAY,
                           keep_logs=kw.get("keep_logs", False))
    reasons = {str(d.record.dir.relative_to(root)): d.reason for d in decisions}
    keeps = {str(r.dir.relative_to(root)): kept[id(r)] for r in records if id(r) in kept}
    return reasons, keeps, decisions


def test_policy(tree):
    reasons, keeps, _ = decided(tree)
    assert set(reasons) == {"results_1", "results_3", "results_10",
                            "results_11/trial_1/results", "results_11/trial_3/results"}
    assert reasons["results_1"].startswith("exploratory (completed), 40d")
    assert reasons["results_3"].startswith("failed, 9d")
    assert reasons["results_10"].startswith("crashed, 20d")   # age from its last heartbeat
    assert reasons["results_11/trial_1/results"] == "HPO trial, not the best (trial_2/results)"
    assert keeps["results_5"] == "KEEP file"
    assert keeps["results_6"] == "cross-validation run"
    assert keeps["results_6/fold_1/results"] == "cross-validation fold"
    assert keeps["results_7"].startswith("based on: resume by")
    assert keeps["results_9"] == "running"
    assert keeps["results_11/trial_2/results"] == "best HPO trial"
    assert keeps["results_11"].startswith("holds a run that stays")


def test_best_trial_by_number_path_or_object(tree):
    import json

    from mammography.runs.clean import best_trial

    summary_path = tree / "results_11" / "summary.json"
    for value in (2, str((tree / "results_11" / "trial_2" / "results").resolve()),
                  {"number": 2, "value": 0.7}, "2"):
        doc = json.loads(summary_path.read_text())
        doc["results"] = {"best_trial": value}
        summary_path.write_text(json.dumps(doc))
        parent = next(r for r in find_runs([tree]) if r.dir.name == "results_11")
        best = best_trial(parent)
        assert best is not None and best.dir.parent.name == "trial_2", value


def test_age_falls_back_to_start_then_mtime(tmp_path, fake_run):
    run = fake_run(tmp_path / "results_1", status="running", start=ago(5), end=None,
                   heartbeat=ago(2))
    assert run_time(find_runs([run])[0]).date() == dt.datetime.fromisoformat(ago(2)).date()
    import json

    doc = json.loads((run / "summary.json").read_text())
    doc["execution"] = {}
    (run / "summary.json").write_text(json.dumps(doc))
    stamp = (dt.datetime.now() - dt.timedelta(days=50)).timestamp()
    os.utime(run / "summary.json", (stamp, stamp))
    assert (dt.datetime.now(dt.timezone.utc) - run_time(find_runs([run])[0])).days == 50


def test_dry_run_deletes_nothing_and_yes_deletes_only_the_plan(cli, tree):
    before = sorted(p for p in tree.rglob("*"))
    proc = cli("runs", "clean", tree)
    assert proc.returncode == 0, proc.stderr
    assert "Dry run: nothing was changed" in proc.stdout
    assert "Would delete 5 runs" in proc.stdout
    assert sorted(p for p in tree.rglob("*")) == before
    proc = cli("runs", "clean", tree, "--yes")
    assert proc.returncode == 0 and "Deleted 5 runs" in proc.stdout
    left = sorted(p.name for p in tree.iterdir())
    assert left == sorted(f"results_{n}" for n in (2, 4, 5, 6, 7, 8, 9, 11, 12))
    assert sorted(p.name for p in (tree / "results_11").glob("trial_*")) == ["trial_2"]
    assert (tree / "results_9" / "summary.json").exists()      # running: untouched
    assert "Nothing to clean" in cli("runs", "clean", tree).stdout


def test_keep_logs_thins_instead(cli, tree):
    proc = cli("runs", "clean", tree, "--keep-logs", "--yes")
    assert proc.returncode == 0, proc.stderr
    thinned = tree / "results_1"
    assert sorted(p.name for p in thinned.rglob("*") if p.is_file()) == [
        "CLEANED.json", "data_manifest.json", "run.log", "summary.json", "train_history.csv",
        "val_metrics.json", "val_predictions.csv"]
    assert (tree / "results_11" / "trial_1" / "results" / "summary.json").exists()
    assert cli("runs", "validate", thinned).returncode == 0   # CLEANED.json explains
    assert "Nothing to clean" in cli("runs", "clean", tree, "--keep-logs").stdout


def test_clean_thresholds_are_options(cli, tree):
    out = cli("runs", "clean", tree, "--older-than", "2d", "--failed-older-than", "1d").stdout
    assert "results_2 " in out and "results_4 " in out and "Would delete 7 runs" in out


def test_archive(cli, tree, tmp_path):
    target = tmp_path / "runs.tar.gz"
    proc = cli("runs", "archive", tree / "results_1", tree / "results_6",
               tree / "results_6" / "fold_1" / "results", "--to", target)
    assert proc.returncode == 0, proc.stderr
    assert "Archived 2 runs" in proc.stdout
    with tarfile.open(target) as tar:
        names = set(tar.getnames())
    assert {"results_1/summary.json", "results_1/best_model.pt",
            "results_6/fold_1/results/summary.json"} <= names
    assert not any(name.startswith(("/", "..", "outputs")) for name in names)
    size = target.stat().st_size
    again = cli("runs", "archive", tree / "results_2", "--to", target)
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr
    assert target.stat().st_size == size
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    bad = cli("runs", "archive", tree / "results_2", "--to", tmp_path / "x.zip")
    assert bad.returncode == 2 and "must end with .tar.gz" in bad.stderr
    nothing = cli("runs", "archive", tree / "results_2")
    assert nothing.returncode == 2 and "--to FILE.tar.gz is required" in nothing.stderr


def test_clean_given_a_link_to_a_run(cli, tmp_path, fake_run):
    """Issue 23 (6): a root that is a symbolic link to an old run; before, `--yes` was a
    traceback (rmtree refuses a link). The run it names goes, and the link with it."""
    run = tmp_path / "runs" / "results_1"
    fake_run(run, start=ago(40), end=ago(40))
    link = tmp_path / "latest"
    link.symlink_to(run)
    listed = cli("runs", "clean", link)
    assert listed.returncode == 0 and "Would delete 1 runs" in listed.stdout, listed.stderr
    done = cli("runs", "clean", link, "--yes")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "Deleted 1 runs" in done.stdout
    assert not run.exists() and not link.is_symlink()
