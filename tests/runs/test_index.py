"""The run index: a cache that never changes an answer, only how fast it comes.

Every test compares what the commands see through the index -- cold, warm,
after changes on disk -- with what they see reading every summary.json
(``find_runs``, the full documents), which is the reference.
"""

import json
import os
import sqlite3
import time

import pytest

from mammography.runs import index as index_module
from mammography.runs import projection
from mammography.runs.discover import MISSING, find_runs, lookup
from mammography.runs.index import RunIndex, index_path
from mammography.runs.projection import CLEAN_PATHS, LIST_PATHS, VALIDATE_PATHS, keys_paths
from mammography.runs.scan import scan_runs


@pytest.fixture
def tree(tmp_path, fake_run):
    root = tmp_path / "outputs"
    fake_run(root / "density" / "results_1", seed=1,
             hyperparameters={"lr": 1e-4, "arch": "resnet50"},
             results={"best_val_kappa": 0.3, "best_val_acc": 0.5, "history_last": {"e": 1}})
    fake_run(root / "density" / "results_2", seed=2, status="failed", results={},
             hyperparameters={"lr": 3e-3})
    fake_run(root / "cv" / "results_1", seed=3, results={"cv_mean_kappa": 0.55,
                                                         "cv_std_kappa": 0.05, "num_folds": 2})
    for fold in (1, 2):
        fake_run(root / "cv" / "results_1" / f"fold_{fold}" / "results", seed=3,
                 integration={"cv_fold": fold}, results={"best_val_kappa": 0.1 * fold})
    (root / "density" / "results_3").mkdir()  # a run that never wrote its summary
    (root / "density" / "results_1" / "plots").mkdir()
    _age(root)
    return root


def _age(root):
    """Files written more than the racy window ago, as real runs' are."""
    old = time.time() - 60
    for folder, dirs, files in os.walk(root):
        for name in files + dirs:
            os.utime(os.path.join(folder, name), (old, old))
    os.utime(root, (old, old))


KEYS = ("hyperparameters.lr", "lr", "best_val_kappa", "results.history_last.e",
        "environment.packages.numpy", "environment.hostname", "data_config.manifest_digest",
        "schema_version", "config", "artifacts", "no.such.key", "integration.cv_fold",
        "based_on", "results", "hyperparameters")


def reference(root, paths):
    """{path: {summary path: value}} read from every full summary."""
    return {r.path: ({p: lookup(r.summary, p) for p in paths} if r.summary is not None
                     else r.problem) for r in find_runs([root])}


def seen(records, paths):
    return {r.path: ({p: lookup(r.summary, p) for p in paths} if r.summary is not None
                     else r.problem) for r in records}


@pytest.mark.parametrize("paths", [LIST_PATHS, CLEAN_PATHS, VALIDATE_PATHS,
                                   (*LIST_PATHS, *keys_paths(KEYS))])
def test_cold_warm_and_no_index_see_what_the_files_say(tree, paths, monkeypatch):
    import mammography.runs.scan as scan

    expected = reference(tree, paths)
    cold = scan_runs([tree], paths)
    assert index_path(tree).is_file()
    read = []
    real = scan.read_summary
    monkeypatch.setattr(scan, "read_summary", lambda d: read.append(d) or real(d))
    warm = scan_runs([tree], paths)
    # Warm: no summary is read, unless a path is in what the index leaves out.
    uses_bulk = any(projection.Plan((p,)).parts(tuple(projection.BULKY + ("config",
                                                                         "artifacts")))
                    is None for p in paths)
    assert bool(read) == uses_bulk
    plain = scan_runs([tree], paths, use_index=False)
    for records in (cold, warm, plain):
        assert seen(records, paths) == expected
        assert sorted(r.path for r in records) == sorted(r.path for r in find_runs([tree]))
        order = [r.path for r in records]
        assert all(order.index(r.parent.path) < order.index(r.path) for r in records
                   if r.parent is not None)  # parents before their children
        by_path = {r.path: r for r in records}
        for record in records:  # the same parents, hence the same grouping
            reference_parent = next(x for x in find_runs([tree]) if x.path == record.path).parent
            assert (record.parent.path if record.parent else None) == \
                (reference_parent.path if reference_parent else None)
            assert record.parent is None or by_path[record.parent.path] is record.parent
    assert sum(r.summary is None for r in warm) == 1  # results_3: summary.json missing


def test_a_pruned_summary_has_exactly_the_paths_asked_for(tree):
    records = scan_runs([tree], ("hyperparameters.lr", "execution.pid"))
    summary = next(r for r in records if r.path.endswith("density/results_1")).summary
    assert summary == {"hyperparameters": {"lr": 1e-4}, "execution": {"pid": 999_999}}


def test_a_summary_changed_in_place_is_read_again(tree):
    path = tree / "density" / "results_1" / "summary.json"
    scan_runs([tree], LIST_PATHS)
    before = path.stat()
    document = json.loads(path.read_text())
    document["seed"] = 7  # one digit for another: the same size
    path.write_text(json.dumps(document, indent=2))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same mtime
    assert path.stat().st_size == before.st_size
    records = scan_runs([tree], LIST_PATHS)
    assert next(r for r in records if r.path == str(path.parent)).summary["seed"] == 7


def test_a_summary_rewritten_within_the_racy_window_is_not_trusted(tree, monkeypatch):
    import mammography.runs.scan as scan

    def coarse(st):  # a file system with one-second timestamps (FAT, some NFS servers)
        return (st.st_size, st.st_mtime_ns // 10**9 * 10**9, st.st_ctime_ns // 10**9 * 10**9,
                st.st_ino)

    monkeypatch.setattr(scan, "file_key", coarse)
    monkeypatch.setattr(index_module, "file_key", coarse)
    path = tree / "density" / "results_2" / "summary.json"
    document = json.loads(path.read_text())
    for seed in (4, 5):  # twice within the same instant, same size
        document["seed"] = seed
        path.write_text(json.dumps(document, indent=2))
        records = scan_runs([tree], LIST_PATHS)
        assert next(r for r in records if r.path == str(path.parent)).summary["seed"] == seed


def test_runs_that_appear_or_vanish_are_seen(tree, fake_run):
    import shutil

    scan_runs([tree], LIST_PATHS)
    fake_run(tree / "density" / "results_4", seed=4)
    fake_run(tree / "cv" / "results_1" / "fold_3" / "results", seed=3,
             integration={"cv_fold": 3})
    # A run inside a folder that held no folder (a "leaf", only stat'ed when unchanged).
    fake_run(tree / "density" / "results_1" / "plots" / "results", seed=9)
    shutil.rmtree(tree / "density" / "results_2")
    records = scan_runs([tree], LIST_PATHS)
    assert seen(records, LIST_PATHS) == reference(tree, LIST_PATHS)
    paths = {os.path.relpath(r.path, tree) for r in records}
    assert {"density/results_4", "cv/results_1/fold_3/results",
            "density/results_1/plots/results"} <= paths
    assert "density/results_2" not in paths
    db = sqlite3.connect(index_path(tree))
    rels = {rel for (rel,) in db.execute("SELECT rel FROM runs")}
    assert not any(rel.startswith("density/results_2") for rel in rels)  # forgotten


def test_a_damaged_or_unwritable_index_changes_nothing(tree, monkeypatch, tmp_path):
    expected = reference(tree, LIST_PATHS)
    scan_runs([tree], LIST_PATHS)
    target = index_path(tree)
    for suffix in ("-wal", "-shm"):
        target.with_name(target.name + suffix).unlink(missing_ok=True)
    target.write_bytes(b"not a database at all" * 100)
    assert seen(scan_runs([tree], LIST_PATHS), LIST_PATHS) == expected
    # A cache folder that cannot be written: no index, the same answer.
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv("MAMMOGRAPHY_CACHE_DIR", str(blocked))
    assert RunIndex.open(tree) is None
    assert seen(scan_runs([tree], LIST_PATHS), LIST_PATHS) == expected


def test_a_damaged_row_is_read_from_the_files(tree):
    scan_runs([tree], LIST_PATHS)
    db = sqlite3.connect(index_path(tree))
    db.execute("UPDATE runs SET listing = 'garbage', p_head = '{' WHERE rel LIKE 'density%'")
    db.commit()
    db.close()
    assert seen(scan_runs([tree], LIST_PATHS), LIST_PATHS) == reference(tree, LIST_PATHS)


def test_what_the_index_keeps_changing_rebuilds_it(tree, monkeypatch):
    scan_runs([tree], LIST_PATHS)
    db = sqlite3.connect(index_path(tree))
    db.execute("UPDATE runs SET p_head = ? WHERE rel = 'density/results_1'",
               (json.dumps({"seed": 12345}),))  # what an older layout might have kept
    db.commit()
    db.close()
    monkeypatch.setattr(index_module, "LAYOUT", index_module.LAYOUT + 1)
    records = scan_runs([tree], LIST_PATHS)
    assert next(r for r in records if r.path.endswith("density/results_1")).summary[
        "seed"] == 1


def test_the_index_is_small_and_leaves_out_the_bulk(tree):
    document = json.loads((tree / "density" / "results_1" / "summary.json").read_text())
    document["environment"]["packages"] = {f"package-{i}": "1.0" for i in range(2000)}
    parts, omitted = projection.parts_of(document)
    assert "environment.packages" in omitted and "artifacts" in omitted
    assert sum(len(p) for p in parts.values()) < 4000
    assert "package-1999" not in json.dumps(
        projection.assemble({k: v for k, v in parts.items() if k != "head"},
                            ("environment",)))


def test_prune_keeps_lists_whole_and_ignores_paths_into_scalars():
    document = {"a": {"b": 1, "c": [{"d": 2}]}, "e": 3}
    assert projection.prune(document, ("a.c.0.d", "e.f", "a.x")) == {"a": {"c": [{"d": 2}]}}
    assert projection.prune(document, ("a", "a.b")) == {"a": document["a"]}
    assert lookup(projection.prune(document, ("a.c.0.d",)), "a.c.0.d") == 2
    assert lookup(projection.prune(document, ("e.f",)), "e.f") is MISSING


def _listing(root, capsys, *args):
    from mammography.config.runs import RunsListConfig
    from mammography.runs.listing import run_list

    where = [args[i + 1] for i, a in enumerate(args) if a == "--where"]
    config = RunsListConfig(roots=[root], index="--no-index" not in args,
                            json="--json" in args, where=where)
    assert run_list(config) == 0
    return capsys.readouterr().out


def test_rows_kept_in_the_index_are_the_rows_rendered_from_the_summaries(
        tree, fake_run, capsys, monkeypatch):
    import mammography.runs.rows as rows

    fake_run(tree / "live" / "results_1", status="running", end=None,
             heartbeat="2099-01-01T00:00:00+00:00", pid=os.getpid())  # alive: not crashed
    _age(tree)
    reference = {fmt: _listing(tree, capsys, "--no-index", *fmt) for fmt in ((), ("--json",))}
    for _ in range(2):  # the first call keeps the rows, the second uses them
        for fmt, text in reference.items():
            assert _listing(tree, capsys, *fmt) == text
    db = sqlite3.connect(index_path(tree))
    views = dict(db.execute("SELECT rel, p_view FROM runs WHERE s_size IS NOT NULL"))
    assert views["live/results_1"] is None  # a running run's row changes: never kept
    assert views["density/results_1"] is not None
    # The summary changes: its row is rendered again.
    path = tree / "density" / "results_1" / "summary.json"
    document = json.loads(path.read_text())
    document["seed"] = 4242
    path.write_text(json.dumps(document, indent=2))
    assert "4242" in _listing(tree, capsys)
    # The code that renders rows changes: every kept row is forgotten.
    monkeypatch.setattr(rows, "view_fingerprint", lambda: "other code")
    _listing(tree, capsys, "--where", "seed>0")  # not a plain listing: keeps no row
    db = sqlite3.connect(index_path(tree))
    assert db.execute("SELECT count(p_view) FROM runs").fetchone()[0] > 0  # untouched
    _listing(tree, capsys)
    assert db.execute("SELECT value FROM meta WHERE key = 'view_fingerprint'").fetchone() \
        == ("other code",)
