"""Parallel CV plumbing: items shared out among worker processes, output prefixed per item."""

from mammography.engine.cv_executor import ITEM_MARKER, ItemLog, worker_groups


def test_folds_are_shared_round_robin_and_no_worker_is_idle_or_empty():
    assert worker_groups([1, 2, 3, 4, 5], 2) == [[1, 3, 5], [2, 4]]
    assert worker_groups([1, 2], 4) == [[1], [2]]
    assert worker_groups([1, 2, 3], 1) == [[1, 2, 3]]


def test_a_workers_lines_carry_the_fold_it_announced():
    lines = []
    out = ItemLog(1, lines.append)
    for text in ("Epoch 1/1\n", f"{ITEM_MARKER}3\n", "Epoch 1/1\n", "done"):
        out.line(text)
    assert lines == ["[fold 1] Epoch 1/1", "[fold 3] Epoch 1/1", "[fold 3] done"]
