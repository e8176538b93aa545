"""--where / --sort parsing and evaluation, and durations (unit tests, no runs needed)."""

from pathlib import Path

import pytest

from mammography.durations import format_duration, parse_duration
from mammography.runs.discover import RunRecord
from mammography.runs.query import (
    QueryError,
    compare,
    parse_sort,
    parse_value,
    parse_where,
    record_value,
    sort_records,
)


def record(summary, status=None, path="r"):
    rec = RunRecord(dir=Path(path), root=Path("."), summary=summary)
    rec.status = status or summary.get("status", "completed")
    return rec


@pytest.mark.parametrize("text, key, op, value", [
    ("hyperparameters.lr<1e-3", "hyperparameters.lr", "<", 0.001),
    ("  seed >= 42 ", "seed", ">=", 42),
    ("status==completed", "status", "==", "completed"),
    ("status=completed", "status", "==", "completed"),
    ("git_dirty!=true", "git_dirty", "!=", True),
    ("based_on==null", "based_on", "==", None),
    ("hyperparameters.arch~efficient", "hyperparameters.arch", "~", "efficient"),
    ("command!~eval", "command", "!~", "eval"),
    ("git_commit=='0123456'", "git_commit", "==", "0123456"),
    ("execution.start_time>2026-01-01", "execution.start_time", ">", "2026-01-01"),
    ("data_config.class_distribution.1>=2", "data_config.class_distribution.1", ">=", 2),
])
def test_parse_where(text, key, op, value):
    condition = parse_where(text)
    assert (condition.key, condition.op, condition.value) == (key, op, value)


@pytest.mark.parametrize("text, message", [
    ("lr", "expected KEY OP VALUE"),
    ("<3", "expected KEY OP VALUE"),
    ("lr<", "no value after '<'"),
    ("lr==", "no value after '=='"),
    ("git_dirty<true", "needs a number or text"),
    ("x>null", "needs a number or text"),
    ("a..b==1", "not a dotted key"),
])
def test_parse_where_errors(text, message):
    with pytest.raises(QueryError, match=message):
        parse_where(text)


def test_parse_value_types():
    assert parse_value("3") == 3 and isinstance(parse_value("3"), int)
    assert parse_value("3.5") == 3.5
    assert parse_value("NULL") is None and parse_value("None") is None
    assert parse_value("False") is False
    assert parse_value('"42"') == "42"
    assert parse_value("nan") == "nan"  # not a usable number: compared as text


@pytest.mark.parametrize("field, op, value, expected", [
    (0.0001, "<", 0.001, True),
    (0.001, "<", 0.001, False),
    (0.001, "<=", 0.001, True),
    ("0.0005", "<", 0.001, True),       # numeric text in a summary counts as a number
    (42, "==", 42.0, True),
    (42, "!=", 43, True),
    ("abc", "==", "abc", True),
    ("abc", "<", "abd", True),
    ("2026-03-01T10:00:00+00:00", ">", "2026-01-01", True),
    (True, "==", True, True),
    (True, "==", 1, False),             # booleans are not numbers
    (None, "==", None, True),
    (None, "!=", 3, True),
    (None, "<", 3, False),
    ("text", "<", 3, False),
    ("EfficientNet_b0", "~", "efficientnet", True),
    ("resnet50", "!~", "efficientnet", True),
    ({"a": 1}, "~", '"a"', True),
    ([1, 2], "==", "[1, 2]", True),
])
def test_compare(field, op, value, expected):
    assert compare(field, op, value) is expected


def test_missing_key_matches_only_null_and_not_equal():
    rec = record({"hyperparameters": {}})
    for text, expected in (("hyperparameters.lr==null", True), ("hyperparameters.lr!=1", True),
                           ("hyperparameters.lr<1", False), ("hyperparameters.lr>1", False),
                           ("hyperparameters.lr==1", False), ("hyperparameters.lr~1", False),
                           ("hyperparameters.lr!~1", True)):
        assert parse_where(text)(rec) is expected, text


def test_record_value_virtual_fields_and_fallbacks():
    rec = record({"status": "running", "results": {"best_val_kappa": 0.7},
                  "hyperparameters": {"lr": 0.01}, "based_on": [{"run_dir": "/x"}]},
                 status="crashed", path="out/results_3")
    assert record_value(rec, "status") == "crashed"          # effective status
    assert record_value(rec, "recorded_status") == "running"
    assert record_value(rec, "path") == "out/results_3"
    assert record_value(rec, "lr") == 0.01                   # hyperparameters.lr
    assert record_value(rec, "best_val_kappa") == 0.7        # results.best_val_kappa
    assert record_value(rec, "based_on.0.run_dir") == "/x"   # list index
    assert parse_where("lr>=0.01")(rec) and parse_where("status==crashed")(rec)


def test_parse_sort():
    assert parse_sort("-best_val_kappa") == ("best_val_kappa", True)
    assert parse_sort("best_val_kappa", desc=True) == ("best_val_kappa", True)
    assert parse_sort("seed") == ("seed", False)
    assert parse_sort(None) == (None, False)


def test_sort_puts_missing_values_last_in_both_directions():
    recs = [record({"best_val_kappa": k}, path=f"r{i}")
            for i, k in enumerate([0.2, None, 0.9, 0.5])] + [record({}, path="r9")]
    up = [r.path for r in sort_records(recs, "best_val_kappa")]
    down = [r.path for r in sort_records(recs, "best_val_kappa", desc=True)]
    assert up == ["r0", "r3", "r2", "r1", "r9"]
    assert down == ["r2", "r3", "r0", "r1", "r9"]


def test_sort_mixed_types_numbers_before_text():
    recs = [record({"v": v}, path=str(v)) for v in ("b", 3, "a", 1.5)]
    assert [r.path for r in sort_records(recs, "v")] == ["1.5", "3", "a", "b"]


@pytest.mark.parametrize("text, seconds", [("7d", 7 * 86400), ("12h", 43200), ("30m", 1800),
                                           ("90s", 90), ("2w", 14 * 86400), ("1.5h", 5400),
                                           (" 3D ", 3 * 86400)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "7 days", "d", "-1d", ""])
def test_parse_duration_requires_a_unit(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_format_duration():
    assert format_duration(9.64) == "9.6s"
    assert format_duration(192) == "3m12s"
    assert format_duration(3900) == "1h05m"
    assert format_duration(3 * 86400 + 7200) == "3d02h"
    assert format_duration(None) == ""
