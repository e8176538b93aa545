"""The line assembler that turns a terminal byte stream into run.log lines."""

from mammography.record.tee_worker import LineAssembler


def lines(pairs):
    return [line for _, line in pairs]


def feed_all(chunks, t=100.0):
    asm = LineAssembler()
    out = []
    for chunk in chunks:
        out += asm.feed(chunk, t)
    return out + asm.close(t)


def test_plain_lines_pass_through_in_order():
    assert lines(feed_all([b"one\ntwo\n", b"thr", b"ee\n"])) == ["one", "two", "three"]


def test_partial_last_line_is_kept_at_close():
    assert lines(feed_all([b"a\nno newline"])) == ["a", "no newline"]


def test_carriage_return_frames_collapse_to_final_state():
    frames = b"".join(f"\rprogress {i}/100".encode() for i in range(101))
    assert lines(feed_all([frames, b"\n", b"done\n"])) == ["progress 100/100", "done"]


def test_utf8_split_across_chunks():
    data = "✓ New best model (kappa: 0.512)\n".encode()
    assert lines(feed_all([data[:1], data[1:3], data[3:]])) == ["✓ New best model (kappa: 0.512)"]


def test_ansi_styling_is_stripped():
    data = b"\x1b[1;32mgreen\x1b[0m text\n\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\\n"
    assert lines(feed_all([data])) == ["green text", "link"]


def test_live_display_redraws_are_replayed_not_appended():
    asm = LineAssembler()
    out = asm.feed(b"header\n", 0.0)  # committed: no live display yet
    t = 10.0
    out += asm.feed(b"task a 0%\ntask b 0%", t)
    for pct in range(10, 101, 10):
        t += 0.1
        out += asm.feed(f"\r\x1b[2K\x1b[1A\x1b[2Ktask a {pct}%\ntask b {pct}%".encode(), t)
    out += asm.feed(b"\n", t)
    out += asm.tick(t + 5)
    got = lines(out)
    assert got[0] == "header"
    assert got[-2:] == ["task a 100%", "task b 100%"]
    assert sum("task a" in line for line in got) <= 2  # first frame may stay, no flood


def test_long_running_bar_leaves_periodic_snapshots():
    asm = LineAssembler(snapshot_seconds=30)
    out = []
    for second in range(0, 125):
        out += asm.feed(f"\repoch 1: {second}/124".encode(), float(second))
    out += asm.feed(b"\n", 125.0)
    got = lines(out)
    assert got[-1] == "epoch 1: 124/124"
    assert 3 <= len(got) <= 6  # snapshots every ~30 s, then the final state


def test_backspace_and_erase_to_end_of_line():
    assert lines(feed_all([b"abcd\x08\x08\x1b[Kxy\n"])) == ["abxy"]


def test_a_line_between_two_transient_bars_is_written_once():
    """rich erases a transient bar with a cursor-up; the line printed next, then a new
    bar, used to be written by every snapshot and again when committed."""
    asm = LineAssembler(snapshot_seconds=0.5, live_quiet_seconds=1.0)
    out, t = [], 0.0
    out += asm.feed(b"Epoch 1/2\n", t)
    for i in range(1, 11):  # the train bar, then rich's transient erase
        t += 0.1
        out += asm.feed(f"\r\x1b[2Ktrain {i}/10".encode(), t) + asm.tick(t)
    out += asm.feed(b"\r\n\x1b[?25h\r\x1b[1A\x1b[2Ktrain_loss: 1.0\r\n", t)
    for i in range(1, 11):  # the val bar, within a second of the erase
        t += 0.1
        out += asm.feed(f"\r\x1b[2Kval {i}/10".encode(), t) + asm.tick(t)
    out += asm.feed(b"\r\n\x1b[1A\x1b[2Kval_loss: 2.0\n", t) + asm.tick(t + 5) + asm.close(t + 5)
    text = lines(out)
    assert text.count("train_loss: 1.0") == 1 and text.count("val_loss: 2.0") == 1
    assert text.index("Epoch 1/2") < text.index("train_loss: 1.0") < text.index("val_loss: 2.0")
    assert any(line.startswith("val ") for line in text)  # the snapshots are still there
