"""Tee at the file-descriptor level, through real processes."""

import os
import pty
import re
import subprocess
import sys
import textwrap
import time

from tests.helpers import SCRIPTS, child_env

STAMP = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] ")


def run_script(code: str, log, *, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw):
    script = textwrap.dedent(f"""
        import os, sys, subprocess, warnings
        from mammography.record.tee import Tee
        tee = Tee({str(log)!r})
        tee.start()
    """) + textwrap.dedent(code) + "\ntee.stop()\n"
    return subprocess.run([sys.executable, "-c", script], stdout=stdout, stderr=stderr,
                          env=child_env(), timeout=60, **kw)


def test_every_line_is_timestamped_and_all_sources_are_captured(tmp_path):
    log = tmp_path / "run.log"
    proc = run_script("""
        print("from print")
        os.write(1, b"from os.write\\n")
        os.write(2, b"from fd 2\\n")
        subprocess.run([sys.executable, "-c", "print('from a subprocess')"])
        warnings.warn("a python warning")
    """, log)
    assert proc.returncode == 0
    text = log.read_text()
    for expected in ("from print", "from os.write", "from fd 2", "from a subprocess",
                     "UserWarning: a python warning"):
        assert expected in text
    assert all(STAMP.match(line) for line in text.splitlines() if line)
    # the terminal still gets the untouched output
    assert "from print\nfrom os.write\n" in proc.stdout.decode()
    assert "from fd 2" in proc.stderr.decode()
    assert "[20" not in proc.stdout.decode()


def test_uncaught_traceback_reaches_the_log(tmp_path):
    log = tmp_path / "run.log"
    proc = run_script("raise KeyError('lost?')", log)
    assert proc.returncode == 1
    # the tee was not stopped by the script: the worker drains at process exit
    deadline = time.time() + 10
    while "KeyError" not in log.read_text() and time.time() < deadline:
        time.sleep(0.05)
    assert "KeyError: 'lost?'" in log.read_text()


def test_sigkill_loses_nothing_already_written(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPTS / "lifecycle_script.py"), "kill",
                           str(tmp_path)], capture_output=True, env=child_env(), timeout=60)
    assert proc.returncode == -9
    log = tmp_path / "results_1" / "run.log"
    deadline = time.time() + 10
    while "raw line before kill" not in log.read_text() and time.time() < deadline:
        time.sleep(0.05)
    text = log.read_text()
    for i in range(50):
        assert f"] line {i}\n" in text
    assert "raw line before kill" in text


def test_terminal_stays_a_terminal_and_keeps_progress_frames(tmp_path):
    """With a tty on fd 1/2 the tee hands the program a pty: isatty() stays true."""
    log = tmp_path / "run.log"
    master, slave = pty.openpty()
    proc = run_script("""
        print("isatty:", sys.stdout.isatty())
        for i in range(20):
            sys.stdout.write(f"\\rframe {i}")
            sys.stdout.flush()
        print()
    """, log, stdout=slave, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.returncode == 0
    assert b"isatty: True" in seen
    assert b"\rframe 5" in seen  # the terminal saw the animation
    text = log.read_text()
    assert "isatty: True" in text
    assert "frame 19" in text and "frame 5" not in text  # the log keeps the final state


def test_log_only_lines_reach_run_log_and_not_the_terminal(tmp_path):
    log = tmp_path / "run.log"
    proc = run_script("""
        from mammography.record.logonly import output_to_log_only, write_log_only
        print("shown")
        write_log_only("kept for the log")
        with output_to_log_only() as shown:
            print("chatter of a library")
            os.write(2, b"native chatter\\n")
            subprocess.run([sys.executable, "-c", "print('a child process chatters')"])
            print("the block's own line", file=shown)
        print("shown again")
    """, log)
    assert proc.returncode == 0, proc.stderr.decode()
    text = log.read_text()
    for line in ("shown", "kept for the log", "chatter of a library", "native chatter",
                 "a child process chatters", "the block's own line", "shown again"):
        assert f"] {line}\n" in text, line
    terminal = proc.stdout.decode() + proc.stderr.decode()
    assert "shown\n" in terminal and "the block's own line" in terminal
    assert "shown again" in terminal
    assert "chatter" not in terminal and "kept for the log" not in terminal


def test_a_nested_tee_passes_its_log_only_lines_to_the_outer_log(tmp_path):
    outer, inner = tmp_path / "outer.log", tmp_path / "inner.log"
    proc = run_script(f"""
        from mammography.record.logonly import write_log_only
        child = Tee({str(inner)!r}, prefix="[fold 1] ")
        child.start()
        write_log_only("quiet line of the fold")
        print("loud line of the fold")
        child.stop()
    """, outer)
    assert proc.returncode == 0, proc.stderr.decode()
    for log in (outer, inner):
        assert "quiet line of the fold" in log.read_text()
        assert "loud line of the fold" in log.read_text()
    assert "quiet line" not in proc.stdout.decode() + proc.stderr.decode()


def test_a_tee_without_terminal_writes_the_log_only(tmp_path):
    log = tmp_path / "run.log"
    script = textwrap.dedent(f"""
        import os
        from mammography.record.tee import Tee
        tee = Tee({str(log)!r}, prefix="[rank 1] ", terminal=False)
        tee.start()
        print("every line of rank 1")
        os.write(2, b"and its errors\\n")
        tee.stop()
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True,
                          env=child_env(), timeout=60)
    assert proc.returncode == 0 and proc.stdout == b"" and proc.stderr == b""
    assert "] [rank 1] every line of rank 1\n" in log.read_text()
    assert "] [rank 1] and its errors\n" in log.read_text()


def test_outside_a_teed_run_log_only_lines_are_not_lost(capsys):
    from mammography.record.logonly import write_log_only

    write_log_only("no run.log here")
    assert "no run.log here" in capsys.readouterr().err
