"""predict's image, breast and exam tables, recomputed with pandas."""

from pathlib import Path

import numpy as np
import pandas as pd

from mammography.data.table.records import ImageRecord
from mammography.report.predict_tables import write_prediction_tables

PROBS = ["prob_A", "prob_B", "prob_C", "prob_D"]
FILES = ("img.csv", "breast.csv", "exam.csv")


def _records():
    layout = [("E1", "P1", "L", "CC"), ("E1", "P1", "L", "MLO"), ("E1", "P1", "R", "CC"),
              ("E2", "P1", "R", "CC"), ("E2", "P1", "", "MLO"), ("E3", "P2", "L", "CC")]
    return [ImageRecord(path=Path(f"/d/{e}/{i}.dcm"), accession=e, patient=p, view=v,
                        laterality=s, label=None, row=None)
            for i, (e, p, s, v) in enumerate(layout)]


def test_levels_are_the_mean_of_their_images(tmp_path):
    records = _records()
    probs = np.random.default_rng(0).dirichlet(np.ones(4), size=len(records)).astype(np.float32)
    counts = write_prediction_tables(tmp_path, records, probs, 3, FILES)
    image = pd.read_csv(tmp_path / "img.csv", dtype={"accession": str})
    breast = pd.read_csv(tmp_path / "breast.csv", dtype={"accession": str})
    exam = pd.read_csv(tmp_path / "exam.csv", dtype={"accession": str})

    assert list(image.columns) == ["image_path", "accession", "patient", "view", "laterality",
                                   "breast", *PROBS, "prob_dense", "pred_label",
                                   "pred_density", "dense", "members"]
    np.testing.assert_allclose(image[PROBS].to_numpy(), probs, atol=1e-6)
    assert image["breast"].tolist() == ["E1/L", "E1/L", "E1/R", "E2/R", "E2/?", "E3/L"]

    expected_breast = image.groupby("breast", sort=False)[PROBS].mean()
    np.testing.assert_allclose(breast.set_index("breast")[PROBS].to_numpy(),
                               expected_breast.to_numpy(), atol=2e-6)
    assert breast["num_images"].tolist() == [2, 1, 1, 1, 1]
    assert breast["laterality"].fillna("").tolist() == ["L", "R", "R", "?", "L"]

    expected_exam = image.groupby("accession", sort=False)[PROBS].mean()
    np.testing.assert_allclose(exam.set_index("accession")[PROBS].to_numpy(),
                               expected_exam.to_numpy(), atol=2e-6)
    assert exam["num_images"].tolist() == [3, 2, 1] and exam["patient"].tolist() == [
        "P1", "P1", "P2"]

    for table in (image, breast, exam):
        best = table[PROBS].to_numpy().argmax(axis=1)
        assert table["pred_label"].tolist() == (best + 1).tolist()
        assert table["pred_density"].tolist() == [("A", "B", "C", "D")[i] for i in best]
        assert table["dense"].tolist() == [int(i >= 2) for i in best]
        np.testing.assert_allclose(table["prob_dense"], table["prob_C"] + table["prob_D"],
                                   atol=2e-6)
        assert set(table["members"]) == {3}

    assert counts["num_images"] == 6 and counts["num_breasts"] == 5 and counts["num_exams"] == 3
    calls = exam["pred_density"].value_counts()
    assert counts["exam_density_counts"] == {k: int(calls.get(k, 0)) for k in "ABCD"}
    assert counts["dense_exams"] == int(exam["dense"].sum())
