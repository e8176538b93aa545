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
