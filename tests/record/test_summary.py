import json
import math

from mammography.record.jsonio import write_json_atomic
from mammography.record.summary import SummaryWriter, deep_merge


def test_deep_merge_merges_dicts_and_replaces_values():
    base = {"a": {"x": 1, "y": 2}, "b": [1]}
    deep_merge(base, {"a": {"y": 3, "z": 4}, "b": [2]})
    assert base == {"a": {"x": 1, "y": 3, "z": 4}, "b": [2]}


def test_writer_rewrites_the_whole_document(tmp_path):
    writer = SummaryWriter(tmp_path / "summary.json", {"status": "running", "results": {}})
    writer.update(results={"kappa": 0.5})
    writer.update(status="completed")
    assert json.loads((tmp_path / "summary.json").read_text()) == {
        "status": "completed", "results": {"kappa": 0.5}}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temp files left


def test_non_json_values_are_written_as_plain_json(tmp_path):
    import numpy as np

    write_json_atomic(tmp_path / "x.json", {"nan": math.nan, "np": np.float32(0.5),
                                            "arr": np.arange(3), "path": tmp_path})
    data = json.loads((tmp_path / "x.json").read_text())
    assert data == {"nan": None, "np": 0.5, "arr": [0, 1, 2], "path": str(tmp_path)}
