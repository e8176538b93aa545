"""`runs list` on fake run directories: grouping, filters, sorting, formats, errors."""

import csv
import io
import json

import pytest

from mammography.runs.discover import find_runs
from mammography.runs.listing import select
from mammography.runs.query import parse_where


@pytest.fixture
def tree(tmp_path, fake_run):
    root = tmp_path / "outputs"
    fake_run(root / "results_1", seed=1, hyperparameters={"lr": 1e-4, "arch": "resnet50"},
             results={"best_val_kappa": 0.30, "best_val_acc": 0.5})
    fake_run(root / "results_2", seed=2, hyperparameters={"lr": 3e-3, "arch": "test_eff"},
             results={"best_val_kappa": 0.80, "best_val_acc": 0.7})
    fake_run(root / "results_3", seed=3, results={"cv_mean_kappa": 0.55, "cv_std_kappa": 0.05,
                                                  "num_folds": 2},
             hyperparameters={"lr": 5e-4, "arch": "test_eff"})
    fake_run(root / "results_3" / "fold_1" / "results", seed=3, integration={"cv_fold": 1},
             results={"best_val_kappa": 0.9}, hyperparameters={"lr": 5e-4})
    fake_run(root / "results_3" / "fold_2" / "results", seed=3, integration={"cv_fold": 2},
             results={"best_val_kappa": 0.2}, hyperparameters={"lr": 5e-4})
    fake_run(root / "results_4", seed=4, status="failed", results={},
             hyperparameters={"lr": 1e-2})
    return root


def paths(rows, root):
    return [str(r.record.dir.relative_to(root)) for r in rows]


def test_grouped_by_default_children_under_parent(tree):
    rows = select(find_runs([tree]), [], None, False, flat=False, limit=0)
    assert paths(rows, tree) == ["results_1", "results_2", "results_3",
                                 "results_3/fold_1/results", "results_3/fold_2/results",
                                 "results_4"]
    assert [r.depth for r in rows] == [0, 0, 0, 1, 1, 0]


def test_sort_desc_sorts_groups_and_children_missing_last(tree):
    rows = select(find_runs([tree]), [], "best_val_kappa", True, flat=False, limit=0)
    assert paths(rows, tree) == ["results_2", "results_1", "results_3",
                                 "results_3/fold_1/results", "results_3/fold_2/results",
                                 "results_4"]


def test_limit_counts_groups_and_flat_counts_rows(tree):
    records = find_runs([tree])
    grouped = select(records, [], "seed", True, flat=False, limit=2)
    assert paths(grouped, tree) == ["results_4", "results_3", "results_3/fold_1/results",
                                    "results_3/fold_2/results"]
    flat = select(records, [], "best_val_kappa", True, flat=True, limit=2)
    assert paths(flat, tree) == ["results_3/fold_1/results", "results_2"]


def test_where_and_combines_and_orphans_show_on_their_own(tree):
    records = find_runs([tree])
    where = [parse_where("hyperparameters.lr<1e-3"), parse_where("best_val_kappa>0.5")]
    assert paths(select(records, where, None, False, False, 0), tree) == [
        "results_3/fold_1/results"]  # its parent has no best_val_kappa: shown alone
    where = [parse_where("integration.cv_fold==null"), parse_where("status!=failed")]
    assert paths(select(records, where, None, False, False, 0), tree) == [
        "results_1", "results_2", "results_3"]


def test_cli_table_json_csv(cli, tree):
    table = cli("runs", "list", tree)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["run", "type", "status", "start", "duration", "git", "seed",
                                "kappa", "acc"]
    assert any("└ fold_1/results" in line for line in lines)
    assert any("0.55±0.05 cv" in line for line in lines)
    assert "6 runs" in lines[-1]
    assert not any(line != line.rstrip() for line in lines)

    data = json.loads(cli("runs", "list", tree, "--json", "--sort", "-best_val_kappa",
                          "--column", "hyperparameters.arch").stdout)
    assert [d["best_val_kappa"] for d in data[:2]] == [0.8, 0.3]
    assert data[0]["hyperparameters.arch"] == "test_eff"
    fold = next(d for d in data if d["path"].endswith("fold_1/results"))
    assert fold["parent"].endswith("results_3") and fold["depth"] == 1
    assert data[-1]["status"] == "failed"

    rows = list(csv.DictReader(io.StringIO(cli("runs", "list", tree, "--csv", "--where",
                                               "hyperparameters.lr<1e-3").stdout)))
    assert {r["path"].rsplit("/", 1)[-1] for r in rows} == {"results_1", "results_3",
                                                            "results"}
    assert "hyperparameters.lr" in rows[0]


@pytest.mark.parametrize("args, message", [
    (["--where", "lr<"], "no value after '<'"),
    (["--where", "just-a-word"], "expected KEY OP VALUE"),
    (["--json", "--csv"], "--json and --csv exclude each other"),
    (["--stale-after", "10"], "not a duration"),
    (["--limit", "-1"], "--limit must be 0"),
])
def test_cli_bad_options_exit_2(cli, tree, args, message):
    proc = cli("runs", "list", tree, *args)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_cli_default_root_and_missing_root(cli, tmp_path, fake_run):
    proc = cli("runs", "list", cwd=tmp_path)
    assert proc.returncode == 2 and "outputs is not a folder" in proc.stderr
    fake_run(tmp_path / "outputs" / "x" / "results_1")
    proc = cli("runs", "list", cwd=tmp_path)
    assert proc.returncode == 0 and "outputs/x/results_1" in proc.stdout


def test_list_imports_neither_torch_nor_heavy_modules(tree):
    import subprocess
    import sys

    from tests.helpers import child_env

    code = ("import sys, runpy\nsys.argv = ['mammography', 'runs', 'list', sys.argv[1]]\n"
            "try:\n    runpy.run_module('mammography', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'numpy', 'pydicom', 'timm', 'git', 'yaml', "
            "'jsonschema', 'mlflow') if m in sys.modules]\nprint('HEAVY', heavy)")
    proc = subprocess.run([sys.executable, "-c", code, str(tree)], capture_output=True,
                          text=True, env=child_env())
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr
