"""A filtered `runs list` (--where, --sort, --column) through the run index's kept fields.

The index keeps, per finished run, the values a filtered listing asked of it
(``p_fields``); the next such listing matches and sorts that run from them and
renders only the rows it shows. Every test compares the output with the same
listing reading every summary.json (``--no-index``), which is the reference.
"""

import json
import os
import sqlite3
import time

import pytest

from mammography.runs import index as index_module
from mammography.runs.index import index_path

FILTERS = [
    (("--where", "seed>0"), ()),
    (("--where", "lr<1e-3", "--sort", "-best_val_kappa"), ()),
    (("--sort", "hyperparameters.arch", "--column", "no.such.key"), ()),
    (("--where", "status==completed", "--where", "path~density"), ()),
    (("--where", "recorded_status!=running", "--sort", "seed"), ("--limit", "1")),
    (("--sort", "lr"), ("--flat",)),
]


@pytest.fixture
def tree(tmp_path, fake_run):
    root = tmp_path / "outputs"
    fake_run(root / "density" / "results_1", seed=1,
             hyperparameters={"lr": 1e-4, "arch": "resnet50"},
             results={"best_val_kappa": 0.3, "best_val_acc": 0.5})
    fake_run(root / "density" / "results_2", seed=2, status="failed", results={},
             hyperparameters={"lr": 3e-3, "arch": "efficientnet_b0"})
    fake_run(root / "cv" / "results_1", seed=3, status="interrupted",
             results={"cv_mean_kappa": 0.55, "cv_std_kappa": 0.05, "num_folds": 2})
    for fold in (1, 2):
        fake_run(root / "cv" / "results_1" / f"fold_{fold}" / "results", seed=3,
                 integration={"cv_fold": fold}, results={"best_val_kappa": 0.1 * fold})
    fake_run(root / "live" / "results_1", seed=5, status="running", end=None,
             heartbeat="2099-01-01T00:00:00+00:00", pid=os.getpid())  # alive
    fake_run(root / "dead" / "results_1", seed=6, status="running", end=None)  # crashed
    (root / "density" / "results_3").mkdir()  # a run that never wrote its summary
    (root / "broken" / "results_1").mkdir(parents=True)
    (root / "broken" / "results_1" / "summary.json").write_text("{ not json")
    _age(root)
    return root


def _age(root):
    """Files written more than the racy window ago, as real runs' are."""
    old = time.time() - 60
    for folder, dirs, files in os.walk(root):
        for name in files + dirs:
            os.utime(os.path.join(folder, name), (old, old))
    os.utime(root, (old, old))


def _listing(root, capsys, *args):
    from mammography.config.runs import RunsListConfig
    from mammography.runs.listing import run_list

    def values(option):
        return [args[i + 1] for i, a in enumerate(args) if a == option]

    sort = values("--sort")
    limit = values("--limit")
    config = RunsListConfig(roots=[root], index="--no-index" not in args,
                            json="--json" in args, csv="--csv" in args,
                            where=values("--where"), column=values("--column"),
                            sort=sort[0] if sort else None, flat="--flat" in args,
                            limit=int(limit[0]) if limit else 0)
    assert run_list(config) == 0
    return capsys.readouterr().out


def _kept(root):
    db = sqlite3.connect(index_path(root))
    try:
        return dict(db.execute("SELECT rel, p_fields FROM runs WHERE s_size IS NOT NULL"))
    finally:
        db.close()


@pytest.mark.parametrize("query,more", FILTERS)
@pytest.mark.parametrize("fmt", [(), ("--json",), ("--csv",)])
def test_filtered_listings_through_kept_fields_are_what_the_files_say(tree, capsys, query,
                                                                      more, fmt):
    args = (*query, *more, *fmt)
    reference = _listing(tree, capsys, "--no-index", *args)
    for _ in range(3):  # builds the index, keeps the fields, lists from them
        assert _listing(tree, capsys, *args) == reference
    kept = _kept(tree)
    assert kept["density/results_1"] is not None and kept["cv/results_1"] is not None
    # a running run changes, an unreadable summary has nothing to keep
    assert kept["live/results_1"] is None and kept["dead/results_1"] is None
    assert kept["broken/results_1"] is None
    assert "path" not in json.loads(kept["density/results_1"])[2]  # named anew each call


def test_a_listing_from_kept_fields_reads_only_the_rows_it_shows(tree, capsys, monkeypatch):
    import mammography.runs.scan as scan

    args = ("--where", "seed>0", "--sort", "-seed", "--limit", "1", "--flat")
    reference = _listing(tree, capsys, "--no-index", *args)
    _listing(tree, capsys, *args)
    reads = []
    real = scan._Walker._summary_from_index
    monkeypatch.setattr(scan._Walker, "_summary_from_index",
                        lambda self, rel, *a: reads.append(rel) or real(self, rel, *a))
    monkeypatch.setattr(scan, "read_summary", lambda d: pytest.fail(f"read {d}"))
    assert _listing(tree, capsys, *args) == reference
    # The running ones (nothing kept) are read to match them; the one shown (seed 6, a
    # crashed run) again to render it: no finished run's parts are decompressed.
    assert sorted(reads) == ["dead/results_1", "dead/results_1", "live/results_1"]


def test_a_key_asked_for_the_first_time_reads_the_summaries_again(tree, capsys):
    _listing(tree, capsys, "--where", "seed>0")
    _listing(tree, capsys, "--where", "seed>0")
    args = ("--where", "seed>0", "--sort", "best_val_kappa")  # a key not kept yet
    reference = _listing(tree, capsys, "--no-index", *args)
    assert _listing(tree, capsys, *args) == reference
    values = json.loads(_kept(tree)["density/results_1"])[2]
    assert values == {"seed": 1, "best_val_kappa": 0.3}  # the old and the new key
    assert _listing(tree, capsys, *args) == reference


def test_the_path_is_matched_as_named_on_each_call(tree, capsys, monkeypatch):
    args = ("--where", "path~outputs/density", "--json")
    _listing(tree, capsys, *args)
    _listing(tree, capsys, *args)
    monkeypatch.chdir(tree.parent)
    from pathlib import Path

    relative = Path("outputs")
    assert _listing(relative, capsys, *args) == _listing(relative, capsys, "--no-index", *args)
    assert '"path": "outputs/density/results_1"' in _listing(relative, capsys, *args)


def test_a_summary_changed_in_place_is_not_listed_from_kept_fields(tree, capsys):
    args = ("--where", "seed==7", "--json")
    assert _listing(tree, capsys, *args) == "[\n]\n"
    assert _listing(tree, capsys, *args) == "[\n]\n"
    path = tree / "density" / "results_1" / "summary.json"
    before = path.stat()
    document = json.loads(path.read_text())
    document["seed"] = 7  # one digit for another: the same size
    path.write_text(json.dumps(document, indent=2))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same mtime
    assert path.stat().st_size == before.st_size
    out = json.loads(_listing(tree, capsys, *args))
    assert [row["seed"] for row in out] == [7]


def test_fields_of_a_summary_within_the_racy_window_are_not_kept(tree, capsys, monkeypatch):
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
        for _ in range(2):
            out = json.loads(_listing(tree, capsys, "--where", "seed>3", "--json"))
            assert seed in [row["seed"] for row in out]
            assert _kept(tree)["density/results_2"] is None


@pytest.mark.parametrize("damage", [
    ("p_fields", "{"), ("p_fields", "[1, 2]"), ("p_fields", '["completed", false, [], []]'),
    ("p_fields", '["running", false, {"seed": 99}, []]'), ("p_fields", b"\x00garbage"),
    ("p_view", "{"), ("p_head", b"\x78\x9cnot zlib")])
def test_a_damaged_index_row_falls_back_to_the_summary(tree, capsys, damage):
    column, value = damage
    for args in (("--where", "seed>0", "--json"), ("--json",), ()):
        reference = _listing(tree, capsys, "--no-index", *args)
        _listing(tree, capsys, *args)
        _listing(tree, capsys, *args)
        db = sqlite3.connect(index_path(tree))
        db.execute(f"UPDATE runs SET {column} = ? WHERE s_size IS NOT NULL", (value,))
        db.commit()
        db.close()
        assert _listing(tree, capsys, *args) == reference
        assert _listing(tree, capsys, *args) == reference


def test_an_index_of_the_previous_layout_is_rebuilt_not_misread(tree, capsys, monkeypatch):
    args = ("--where", "seed>0", "--sort", "seed", "--json")
    reference = _listing(tree, capsys, "--no-index", *args)
    _listing(tree, capsys, *args)
    # What layout 4 wrote: no p_fields column, its own fingerprint, and (made up here)
    # a head part that differs from the files: it must not be read.
    with monkeypatch.context() as patch:
        patch.setattr(index_module, "LAYOUT", 4)
        old_fingerprint = index_module.fingerprint()
    db = sqlite3.connect(index_path(tree))
    db.execute("ALTER TABLE runs DROP COLUMN p_fields")
    db.execute("UPDATE runs SET p_head = ? WHERE rel = 'density/results_1'",
               (json.dumps({"seed": 12345}),))
    db.execute("UPDATE meta SET value = ? WHERE key = 'fingerprint'", (old_fingerprint,))
    db.commit()
    db.close()
    assert _listing(tree, capsys, *args) == reference
    assert _listing(tree, capsys, *args) == reference
    assert _kept(tree)["density/results_1"] is not None
    # The same layout without the column (an index from before it was added): upgraded.
    db = sqlite3.connect(index_path(tree))
    db.execute("ALTER TABLE runs DROP COLUMN p_fields")
    db.commit()
    db.close()
    assert _listing(tree, capsys, *args) == reference
    assert _listing(tree, capsys, *args) == reference
    assert _kept(tree)["density/results_1"] is not None


def test_kept_fields_are_forgotten_when_the_code_that_reads_them_changes(tree, capsys,
                                                                          monkeypatch):
    import mammography.runs.rows as rows

    args = ("--where", "seed>0")
    _listing(tree, capsys, *args)
    _listing(tree, capsys, *args)
    assert _kept(tree)["density/results_1"] is not None
    monkeypatch.setattr(rows, "fields_fingerprint", lambda: "other code")
    db = sqlite3.connect(index_path(tree))
    db.execute("UPDATE runs SET p_fields = '[\"completed\", false, {\"seed\": -1}, []]'")
    db.commit()
    db.close()
    assert _listing(tree, capsys, *args) == _listing(tree, capsys, "--no-index", *args)
