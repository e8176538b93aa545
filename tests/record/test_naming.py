"""Labels of runs used together stay distinct, and say where each run is."""

from pathlib import Path

from mammography.record.naming import distinct_labels


def test_unique_labels_are_kept_as_they_are():
    assert distinct_labels([("results_1", Path("/o/a")), ("results_2", Path("/o/a"))]) == [
        "results_1", "results_2"]


def test_same_named_runs_get_the_nearest_folders_that_tell_them_apart():
    named = [("results_1", Path("/x/a/density")), ("results_1", Path("/x/b/density")),
             ("results_4", Path("/x/a/density")), ("results_1-fold_2", Path("/x/c"))]
    assert distinct_labels(named) == ["a-density-results_1", "b-density-results_1",
                                      "results_4", "results_1-fold_2"]
    assert distinct_labels([("results_1", Path("/o/density")),
                            ("results_1", Path("/o/tuned"))]) == [
        "density-results_1", "tuned-results_1"]


def test_the_same_run_twice_is_numbered_and_relative_paths_count_as_absolute(tmp_path,
                                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    named = [("results_1", Path("out")), ("results_1", tmp_path / "out"),
             ("results_1", Path("other"))]
    assert distinct_labels(named) == ["out-results_1", "out-results_1-2",
                                      "other-results_1"]
