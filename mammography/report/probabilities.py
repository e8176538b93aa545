"""How every prediction table spells its probabilities: the columns and the number format.

Both writers (``predictions.py``: labelled, for training and eval-export;
``predict_tables.py``: unlabelled, for predict) use these, so a ``prob_B``
column means the same thing, to the same precision, in every file.
9 significant digits give back the float32 a model produced exactly, so every
metric (and an ensemble's mean) can be recomputed from the files alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from mammography.domain import CLASS_NAMES

PROB_COLUMNS = tuple(f"prob_{name}" for name in CLASS_NAMES)


def probability_text(value: float) -> str:
    """One probability as written in a table (``0.123456791``)."""
    return f"{float(value):.9g}"


def probability_cells(probs: Iterable[float]) -> list[str]:
    """A row's ``prob_A..prob_D`` cells."""
    return [probability_text(v) for v in probs]
