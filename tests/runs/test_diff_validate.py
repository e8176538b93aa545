"""`runs diff` (flattening, sections, noise) and `runs validate` on fake runs."""

import json

from mammography.runs.diff import differences, flatten, section_of
from mammography.runs.discover import find_runs
from tests.runs.conftest import make_summary


def test_flatten_dots_nested_keys_and_indexes_lists_of_objects():
    flat = flatten({"a": {"b": 1, "c": {}}, "l": [1, 2], "o": [{"x": 1}], "n": None})
    assert flat == {"a.b": 1, "a.c": {}, "l": [1, 2], "o.0.x": 1, "n": None}


def test_sections():
    assert section_of("hyperparameters.lr") == "settings"
    assert section_of("data_config.manifest_digest") == "data"
    assert section_of("git_commit") == "code (git)"
    assert section_of("environment.packages.torch") == "environment"
    assert section_of("results.best_val_kappa") == "results"
    assert section_of("execution.command_line") == "execution"


def test_differences_skip_noise_unless_all(tmp_path):
    a = make_summary(tmp_path / "results_1", hyperparameters={"lr": 1e-4, "arch": "x"})
    b = make_summary(tmp_path / "results_2", hyperparameters={"lr": 3e-4, "arch": "x"},
                     results={"best_val_kappa": 0.7}, pid=1, git_commit="e4f5a6b",
                     start="2026-02-01T00:00:00+00:00")
    b["environment"]["packages"]["torch"] = "2.14.1"
    b["config"] = {"lr": 3e-4}
    found, hidden = differences(a, b)
    keys = {d["key"]: d for d in found}
    assert keys["hyperparameters.lr"]["a"] == 1e-4 and keys["hyperparameters.lr"]["b"] == 3e-4
    assert "hyperparameters.arch" not in keys
    assert keys["environment.packages.torch"]["in_a"] is False
    assert keys["results.best_val_acc"]["in_b"] is False
    assert "git_commit" in keys
    for noise in ("run_id", "run_dir", "execution.pid", "execution.start_time",
                  "best_val_kappa", "config.lr"):
        assert noise not in keys
    assert hidden >= 5
    sections = [d["section"] for d in found]
    assert sections == sorted(sections, key=["settings", "data", "code (git)", "environment",
                                             "results", "execution", "other"].index)
    everything, none_hidden = differences(a, b, show_all=True)
    assert none_hidden == 0 and {"execution.pid", "run_id"} <= {d["key"] for d in everything}


def test_validate_reports_each_problem(tmp_path, fake_run, cli):
    root = tmp_path / "outputs"
    good = fake_run(root / "results_1")
    fake_run(root / "results_2")
    (root / "results_2" / "best_model.pt").unlink()
    broken = fake_run(root / "results_3")
    doc = json.loads((broken / "summary.json").read_text())
    doc["git_commit"] = "not-a-commit"
    del doc["seed"]
    (broken / "summary.json").write_text(json.dumps(doc))
    (root / "results_4").mkdir()
    (root / "results_4" / "summary.json").write_text("{oops")
    recorded = fake_run(root / "results_5")
    doc = json.loads((recorded / "summary.json").read_text())
    doc["artifacts"] = [{"path": "plots/x.png", "bytes": 3}]
    (recorded / "summary.json").write_text(json.dumps(doc))
    # A run that failed before reading data has no manifest; that is not a problem.
    early = fake_run(root / "results_6", status="failed", artifacts=False)
    (early / "data_manifest.json").unlink()
    doc = json.loads((early / "summary.json").read_text())
    doc["data_config"] = {}
    (early / "summary.json").write_text(json.dumps(doc))

    proc = cli("runs", "validate", root)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert not [line for line in lines if line.startswith(str(good) + ":")]
    assert f"{root / 'results_2'}: required best_model.pt missing" in lines
    assert any(line.startswith(f"{broken}: summary.schema.json: git_commit") for line in lines)
    assert any(line.startswith(f"{broken}: seed_summary.schema.json") and "'seed'" in line
               for line in lines)
    assert any(line.startswith(f"{root / 'results_4'}: summary.json is not valid JSON")
               for line in lines)
    assert f"{recorded}: recorded artifact plots/x.png missing" in lines
    assert not [line for line in lines if line.startswith(str(early) + ":")]
    assert lines[-1].startswith("6 runs checked: 4 with problems")

    proc = cli("runs", "validate", root / "results_1")
    assert proc.returncode == 0 and "1 runs checked: all valid." in proc.stdout


def test_validate_accepts_files_removed_by_clean(tmp_path, fake_run):
    from mammography.runs.validate import run_problems

    run = fake_run(tmp_path / "results_1")
    (run / "best_model.pt").unlink()
    assert run_problems(find_runs([run])[0]) == ["required best_model.pt missing"]
    (run / "CLEANED.json").write_text(json.dumps({"removed": ["best_model.pt"]}))
    assert run_problems(find_runs([run])[0]) == []


def test_validate_remembers_only_what_an_unchanged_summary_says(tmp_path, fake_run,
                                                               monkeypatch, capsys):
    """The second call reads no summary and checks no schema, yet a file that went
    missing, a JSON file that broke and a summary that changed are all seen."""
    import os
    import time

    import mammography.record.schema as schema
    from mammography.config.runs import RunsValidateConfig
    from mammography.runs.validate import run_validate

    root = tmp_path / "outputs"
    runs = [fake_run(root / f"results_{i}") for i in (1, 2, 3)]
    old = time.time() - 60  # older than the index's racy window, as real runs are
    for folder, dirs, files in os.walk(root):
        for name in files + dirs:
            os.utime(os.path.join(folder, name), (old, old))
    checked = []
    real = schema.schema_problems
    monkeypatch.setattr(schema, "schema_problems", lambda d: checked.append(1) or real(d))

    def validate():
        checked.clear()
        code = run_validate(RunsValidateConfig(roots=[root]))
        return code, capsys.readouterr().out.splitlines()

    assert validate() == (0, ["3 runs checked: all valid."]) and len(checked) == 3
    assert validate()[0] == 0 and checked == []  # all three remembered
    (runs[0] / "best_model.pt").unlink()
    (runs[1] / "data_manifest.json").write_text("{broken")
    doc = json.loads((runs[2] / "summary.json").read_text())
    doc["status"] = "finished"
    (runs[2] / "summary.json").write_text(json.dumps(doc))
    code, lines = validate()
    assert code == 1 and len(checked) == 1  # only the changed summary was checked again
    assert f"{runs[0]}: required best_model.pt missing" in lines
    assert any(line.startswith(f"{runs[1]}: data_manifest.json is not readable JSON")
               for line in lines)
    assert any(line.startswith(f"{runs[2]}: summary.schema.json: status") for line in lines)
    no_index = run_validate(RunsValidateConfig(roots=[root], index=False))
    assert no_index == 1 and capsys.readouterr().out.splitlines() == lines


def test_validate_checks_recorded_digests_and_hashes_a_file_only_when_it_changed(
        tmp_path, fake_run, monkeypatch, capsys):
    """A model copied over the run's own with ``cp -p`` (same size, same mtime) is seen:
    the remembered digest is keyed on size, mtime, ctime and inode, like git's index."""
    import hashlib
    import os
    import shutil
    import time

    import mammography.runs.validate as validate_module
    from mammography.config.runs import RunsValidateConfig
    from mammography.runs.validate import run_validate

    root = tmp_path / "outputs"
    run = fake_run(root / "results_1")
    other = tmp_path / "other_best_model.pt"
    other.write_bytes(b"\1" * 4096)  # another run's model, the same size
    mine = hashlib.sha256((run / "best_model.pt").read_bytes()).hexdigest()
    doc = json.loads((run / "summary.json").read_text())
    doc["run_uid"] = "0" * 32
    doc["artifacts"] = [{"path": "best_model.pt", "bytes": 4096, "sha256": mine}]
    (run / "summary.json").write_text(json.dumps(doc))
    old = time.time() - 60  # older than the index's racy window, as real runs are
    for folder, dirs, files in os.walk(tmp_path):
        for name in files + dirs:
            os.utime(os.path.join(folder, name), (old, old))
    hashed = []
    real = validate_module.sha256_file
    monkeypatch.setattr(validate_module, "sha256_file", lambda p: hashed.append(p) or real(p))

    def validate(**options):
        hashed.clear()
        code = run_validate(RunsValidateConfig(roots=[root], **options))
        return code, capsys.readouterr().out.splitlines()

    assert validate() == (0, ["1 runs checked: all valid."]) and len(hashed) == 1
    assert validate()[0] == 0 and hashed == []  # remembered
    shutil.copy2(other, run / "best_model.pt")  # cp -p: size and mtime unchanged
    theirs = hashlib.sha256(other.read_bytes()).hexdigest()
    code, lines = validate()
    assert code == 1 and len(hashed) == 1
    assert lines[0] == (f"{run}: best_model.pt: sha256 {theirs} is not the {mine} the run "
                        "recorded when it wrote it (replaced or changed since)")
    assert validate(digests=False) == (0, ["1 runs checked: all valid."]) and hashed == []
    # a run that records digests and holds a model file it never recorded
    doc["artifacts"] = []
    (run / "summary.json").write_text(json.dumps(doc))
    code, lines = validate()
    assert code == 1 and lines[0].startswith(f"{run}: best_model.pt: not recorded")
