"""Both prediction-table writers spell probabilities alike, and exactly enough to recompute."""

import csv
from pathlib import Path

import numpy as np

from mammography.report.predict_tables import write_prediction_tables
from mammography.report.predictions import write_predictions
from mammography.report.probabilities import PROB_COLUMNS, probability_text
from tests.report.test_predict_tables import _records


def _image_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_a_float32_probability_comes_back_exactly():
    values = np.random.default_rng(1).dirichlet(np.ones(4), size=2000).astype(np.float32)
    written = np.array([[float(probability_text(v)) for v in row] for row in values])
    assert np.array_equal(written.astype(np.float32), values)


def test_labelled_and_unlabelled_tables_write_the_same_cells(tmp_path):
    records = _records()
    probs = np.random.default_rng(2).dirichlet(np.ones(4), size=len(records)).astype(np.float32)
    labels = probs.argmax(axis=1)
    (tmp_path / "eval").mkdir()
    (tmp_path / "predict").mkdir()
    write_predictions(tmp_path / "eval", records, labels, probs)
    write_prediction_tables(tmp_path / "predict", records, probs, 1,
                            ("img.csv", "breast.csv", "exam.csv"))
    evaluated = _image_rows(tmp_path / "eval" / "val_predictions.csv")
    predicted = _image_rows(tmp_path / "predict" / "img.csv")
    for left, right, p, y in zip(evaluated, predicted, probs, labels, strict=True):
        assert [left[c] for c in PROB_COLUMNS] == [right[c] for c in PROB_COLUMNS]
        assert np.array_equal(np.array([left[c] for c in PROB_COLUMNS], np.float32), p)
        # labels 1-4 on both sides (domain.to_label)
        assert int(left["true_label"]) == int(left["pred_label"]) == int(right["pred_label"]) \
            == y + 1
