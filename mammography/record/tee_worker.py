"""The tee process: copies a run's stdout/stderr to the terminal and to run.log.

It runs as a *separate process* (started by ``tee.py`` with only the standard
library, not the package) for one reason: SIGKILL. If the run process is
killed, everything it already wrote sits in the pipe/pty; this process still
holds the read end, drains it to EOF, commits the last lines and exits. An
in-process thread would die with the run and lose that tail.

Per source it does two things with each chunk read:

* write the bytes unchanged to the original destination (the terminal, a
  file, a parent run's tee), so the user sees exactly what they would without
  the tee — progress bars animate, colours stay;
* feed a small line assembler that turns the byte stream into readable log
  lines prefixed with ``[YYYY-MM-DD HH:MM:SS]``: carriage-return progress
  frames (tqdm, rich) collapse to their final state plus a periodic snapshot,
  rich's multi-line live displays (cursor-up redraws) are replayed instead of
  appended, and ANSI styling is stripped; secrets (passwords in URLs, the
  run's secret option values: ``secrets.py``) are masked in the log only.

Usage (internal): ``python tee_worker.py LOG_PATH [--prefix TEXT] SRC_FD:DEST_FD [...]``;
``--prefix TEXT`` before the pairs prefixes every logged line; a DEST_FD of -1
means "run.log only" (a log-only channel, or a rank whose terminal is rank 0's).
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import os
import re
import select
import signal
import sys
import time
from collections.abc import Callable

# How long a cursor-up ("live display") stream must stay quiet before its
# retractable lines are committed to the log.
LIVE_QUIET_SECONDS = 1.0
# While a progress bar keeps redrawing, write a snapshot this often so a long
# epoch still leaves a trace in run.log.
SNAPSHOT_SECONDS = 30.0
# Upper bound of retractable lines kept in memory per stream.
MAX_PENDING_LINES = 200

_CONTROL = re.compile(
    r"\x1b\[([0-9;?]*)([@-~])"  # CSI: cursor moves, erase, SGR colours
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: titles, hyperlinks
    r"|\x1b[@-Z\\-_]"  # other two-byte escapes
    r"|\r\n|\r|\n|\x08"
)
_SPECIAL = re.compile(r"[\x1b\r\x08]")


class LineAssembler:
    """Turns a terminal byte stream into log lines (one instance per stream).

    ``feed`` and ``tick`` return ``(timestamp, line)`` pairs ready to be
    written. Lines completed while a live display is active stay *pending*
    (retractable by a cursor-up) until the stream has been quiet for
    ``LIVE_QUIET_SECONDS``.
    """

    def __init__(self, snapshot_seconds: float = SNAPSHOT_SECONDS,
                 live_quiet_seconds: float = LIVE_QUIET_SECONDS) -> None:
        self.snapshot_seconds = snapshot_seconds
        self.live_quiet_seconds = live_quiet_seconds
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.cur = ""  # the line being written
        self.col = 0  # cursor column within ``cur``
        self.framed = False  # ``cur`` has been rewritten via \r (a progress frame)
        # (time, line, already written by a snapshot): a snapshot may write a
        # pending line early; it is not written again when committed.
        self.pending: list[tuple[float, str, bool]] = []
        self.live_seen = float("-inf")  # last cursor-up
        self.last_snapshot = float("-inf")

    # -- input ------------------------------------------------------------
    def feed(self, data: bytes, now: float) -> list[tuple[float, str]]:
        text = self._decoder.decode(data)
        if text:
            if _SPECIAL.search(text) is None:
                self._feed_plain(text, now)
            else:
                self._feed_terminal(text, now)
        return self._commit(now)

    def tick(self, now: float) -> list[tuple[float, str]]:
        """Called periodically: commits quiet live regions and snapshots."""
        return self._commit(now)

    def close(self, now: float) -> list[tuple[float, str]]:
        """End of stream: everything still held is final."""
        tail = self._decoder.decode(b"", final=True)
        if tail:
            self._feed_terminal(tail, now)
        out = [(t, line) for t, line, snapped in self.pending if not snapped]
        self.pending = []
        if self.cur.strip():
            out.append((now, self.cur))
        self.cur, self.col = "", 0
        return out

    # -- internals ----------------------------------------------------------
    def _feed_plain(self, text: str, now: float) -> None:
        # Fast path (no escapes or carriage returns): split into lines in bulk.
        parts = text.split("\n")
        if len(parts) == 1:
            self._put(parts[0])
            return
        self._put(parts[0])
        self._newline(now)
        for part in parts[1:-1]:
            self.pending.append((now, part, False))
        self.cur = parts[-1]
        self.col = len(self.cur)
        self.framed = False

    def _feed_terminal(self, text: str, now: float) -> None:
        pos = 0
        for match in _CONTROL.finditer(text):
            if match.start() > pos:
                self._put(text[pos:match.start()])
            pos = match.end()
            token = match.group(0)
            if token in ("\n", "\r\n"):
                self._newline(now)
            elif token == "\r":
                self.col = 0
                self.framed = True
            elif token == "\x08":
                self.col = max(0, self.col - 1)
            elif match.group(2):
                self._csi(match.group(1), match.group(2), now)
        if pos < len(text):
            self._put(text[pos:])

    def _put(self, chunk: str) -> None:
        if not chunk:
            return
        if self.col >= len(self.cur):
            self.cur = self.cur + " " * (self.col - len(self.cur)) + chunk
        else:
            self.cur = self.cur[:self.col] + chunk + self.cur[self.col + len(chunk):]
        self.col += len(chunk)

    def _newline(self, now: float) -> None:
        self.pending.append((now, self.cur, False))
        self.cur, self.col, self.framed = "", 0, False

    def _csi(self, params: str, final: str, now: float) -> None:
        try:
            n = int(params.split(";")[0] or 0) if not params.startswith("?") else 0
        except ValueError:
            n = 0
        if final == "A":  # cursor up: a live display is redrawing its region
            n = max(n, 1)
            self.live_seen = now
            take = min(n, len(self.pending))
            if take:
                self.cur = self.pending[-take][1]
                del self.pending[-take:]
            else:
                self.cur = ""
            self.col = 0
            self.framed = True
        elif final == "K":  # erase in line
            if n == 0:
                self.cur = self.cur[:self.col]
            elif n == 1:
                self.cur = " " * self.col + self.cur[self.col:]
            else:
                self.cur = ""
                self.col = 0
        elif final == "G":  # cursor to column
            self.col = max(n - 1, 0)
        elif final == "C":
            self.col += max(n, 1)
        elif final == "D":
            self.col = max(0, self.col - max(n, 1))
        # Colours (m), cursor show/hide (h/l), screen erases (J): no effect on text.

    def _commit(self, now: float) -> list[tuple[float, str]]:
        ready: list[tuple[float, str, bool]] = []
        live = now - self.live_seen < self.live_quiet_seconds
        if not live:
            ready, self.pending = self.pending, []
        elif len(self.pending) > MAX_PENDING_LINES:
            cut = len(self.pending) - MAX_PENDING_LINES
            ready, self.pending = self.pending[:cut], self.pending[cut:]
        out = [(t, line) for t, line, snapped in ready if not snapped]
        if not (live or self.framed):
            self.last_snapshot = float("-inf")  # no bar on screen: reset the clock
        elif now - self.last_snapshot >= self.snapshot_seconds:
            if self.last_snapshot == float("-inf"):
                # The first frame is not worth a snapshot; start the clock.
                self.last_snapshot = now
            else:
                self.last_snapshot = now
                snap = [line for _, line, snapped in self.pending if not snapped] \
                    if live else []
                self.pending = [(t, line, True) for t, line, _ in self.pending]
                if self.cur.strip():
                    snap.append(self.cur)
                out.extend((now, line) for line in snap)
        return out


def secret_masker() -> Callable[[str], str]:
    """``secrets.mask_text`` of the package (loaded by its path: this process runs
    without the package), knowing the run's secrets from ``SECRETS_ENV``. The
    terminal gets the raw bytes; run.log, which is shared, gets masked lines."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location(
        "_mammography_secrets", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                             "secrets.py"))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    # A garbled list: the URL and parameter patterns still apply.
    with contextlib.suppress(ValueError, TypeError):
        module.remember(json.loads(os.environ.get(module.SECRETS_ENV, "[]")))
    return module.mask_text


class LogWriter:
    """Appends timestamped lines to run.log with one ``write`` per batch."""

    def __init__(self, path: str, prefix: str = "",
                 mask: Callable[[str], str] | None = None) -> None:
        self.prefix = prefix  # e.g. "[rank 1] " when several processes share one log
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._second = -1
        self._stamp = ""
        self.mask = mask

    def _timestamp(self, t: float) -> str:
        second = int(t)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("[%Y-%m-%d %H:%M:%S] ", time.localtime(second))
        return self._stamp

    def write(self, lines: list[tuple[float, str]]) -> None:
        if not lines:
            return
        parts = []
        for t, line in lines:
            line = line.rstrip()
            if self.mask is not None:
                line = self.mask(line)
            parts.append(self._timestamp(t) + self.prefix + line + "\n" if line else "\n")
        _write_all(self.fd, "".join(parts).encode("utf-8", errors="replace"))

    def close(self) -> None:
        os.close(self.fd)


def _write_all(fd: int, data: bytes) -> bool:
    """Write everything or report failure (a closed terminal must not stop logging)."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except InterruptedError:
            continue
        except OSError:
            return False
        view = view[written:]
    return True


def run(log_path: str, pairs: list[tuple[int, int]], prefix: str = "") -> None:
    """Pump every source until all of them reach EOF."""
    writer = LogWriter(log_path, prefix, secret_masker())
    assemblers = {src: LineAssembler() for src, _ in pairs}
    dest_of = {src: dest for src, dest in pairs}
    dest_ok = {src: dest >= 0 for src, dest in pairs}  # -1: the log only
    open_fds = [src for src, _ in pairs]
    while open_fds:
        try:
            ready, _, _ = select.select(open_fds, [], [], 0.5)
        except InterruptedError:
            continue
        now = time.time()
        for src in ready:
            try:
                data = os.read(src, 65536)
            except OSError as exc:
                # EIO: the pty's last slave was closed, the pty form of EOF.
                if exc.errno not in (errno.EIO, errno.EBADF):
                    raise
                data = b""
            if not data:
                open_fds.remove(src)
                writer.write(assemblers[src].close(now))
                os.close(src)
                continue
            if dest_ok[src]:
                dest_ok[src] = _write_all(dest_of[src], data)
            writer.write(assemblers[src].feed(data, now))
        for assembler in assemblers.values():
            writer.write(assembler.tick(now))
    writer.close()


def main(argv: list[str]) -> int:
    # The run process handles Ctrl-C and SIGTERM; this one must outlive it to
    # drain what it wrote, so it ignores both and ends on EOF.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    log_path, *specs = argv
    prefix = ""
    if specs[:1] == ["--prefix"]:
        prefix, specs = specs[1], specs[2:]
    pairs = []
    for spec in specs:
        src, dest = spec.split(":")
        pairs.append((int(src), int(dest)))
    run(log_path, pairs, prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
