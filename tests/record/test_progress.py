"""Progress of long loops: plain lines with rate and time left, at most one per interval."""

import pytest

from mammography.record.progress import ProgressLines, eta_line, progress_bar


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_at_most_one_line_per_interval_with_rate_and_time_left():
    clock, written = Clock(), []
    lines = ProgressLines(100, "epoch 2 train", "batches", interval=30, write=written.append,
                          clock=clock)
    for _ in range(100):
        clock.now += 1.0  # one batch a second
        lines.advance()
    assert len(written) == 3  # after 30, 60 and 90 s; nothing at the end
    assert written[0] == ("epoch 2 train: 30/100 batches (30%), 1 batches/s, 30.0s so far, "
                          "about 1m10s left")


def test_a_loop_shorter_than_the_interval_says_nothing():
    clock, written = Clock(), []
    lines = ProgressLines(10, "x", "images", interval=30, write=written.append, clock=clock)
    for _ in range(10):
        clock.now += 2.0
        lines.advance()
    assert written == []


def test_without_a_terminal_the_lines_go_to_stdout(capsys, monkeypatch):
    monkeypatch.setenv("MAMMOGRAPHY_PROGRESS_SECONDS", "0")
    with progress_bar(3, "Caching 3 images", unit="images") as advance:
        for _ in range(3):
            advance()
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Caching 3 images: 1/3 images (33%), ")
    assert "images/s" in out[0] and "left" in out[0] and len(out) == 2


def test_whole_run_eta_from_the_items_done():
    assert eta_line("folds", 2, 5, 120.0, clock=lambda: 0.0).startswith(
        "2/5 folds done in 2m00s; about 3m00s left (until ")
    # a resumed run: 3 epochs done, only the last one timed here
    assert "about 2m00s left" in eta_line("epochs", 3, 5, 60.0, timed=1)
    assert eta_line("trials", 4, 4, 10.0) == "4/4 trials done in 10.0s"


@pytest.mark.parametrize("enabled, total", [(False, 5), (True, 0)])
def test_disabled_or_empty_progress_is_silent(capsys, enabled, total):
    with progress_bar(total, "x", enabled=enabled) as advance:
        advance()
    assert capsys.readouterr().out == ""
