"""File-descriptor-level tee of stdout/stderr into run.log.

``Tee.start()`` points fds 1 and 2 at a pipe (or a pseudo-terminal when the
original is a terminal, so ``isatty()`` stays true and progress bars keep
animating) whose other end is read by ``tee_worker.py`` in a separate process.
Because the redirection happens at the fd level, output from C extensions,
DataLoader workers, subprocesses, ``warnings`` and uncaught tracebacks is
captured as well as ``print``.

When fds 1 and 2 lead to the same place (a terminal, or ``2>&1``) one channel
carries both, which keeps their relative order exact in run.log.

Tees nest: a child run (a CV fold) started inside a parent run tees into the
parent's channel, so the fold's lines land in the fold's run.log *and* the
parent's.

Each tee also has a *log-only* channel: what is written to it lands in run.log
(and, nested, in the parent's run.log) but never on the terminal. Third-party
chatter (torch.onnx, Optuna, Ray) and repeated warnings past the first few go
there (``logonly.py``). A tee started with ``terminal=False`` (a torchrun rank
other than 0) sends everything to the log only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import subprocess
import sys
import termios
import tty
from pathlib import Path

from mammography.record.secrets import tee_environment

_WORKER = Path(__file__).with_name("tee_worker.py")


def _same_destination(fd_a: int, fd_b: int) -> bool:
    try:
        a, b = os.fstat(fd_a), os.fstat(fd_b)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _open_channel(dest_fd: int) -> tuple[int, int]:
    """(read_end, write_end); a pty mirroring the terminal's size when dest is a tty."""
    if os.isatty(dest_fd):
        master, slave = pty.openpty()
        # Raw mode: no "\n" -> "\r\n" translation; the real terminal does its own.
        tty.setraw(slave)
        with contextlib.suppress(OSError):
            size = fcntl.ioctl(dest_fd, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
        return master, slave
    read_end, write_end = os.pipe()
    return read_end, write_end


#: Where "log only" lines go: the write ends of the active tees' log-only
#: pipes, innermost last. Module state, so forked children (DataLoader workers)
#: inherit it with the descriptors; a process started with exec has none.
_LOG_ONLY_FDS: list[int] = []
#: A worker pair's destination that means "the log file only".
NOWHERE = -1


def log_only_fd() -> int | None:
    """The innermost active tee's log-only write end (None outside a teed run)."""
    return _LOG_ONLY_FDS[-1] if _LOG_ONLY_FDS else None


class Tee:
    """Redirects this process's fds 1 and 2 through a tee process into ``log_path``.

    ``terminal=False``: nothing reaches the original destinations, only the log.
    """

    def __init__(self, log_path: Path, prefix: str = "", *, terminal: bool = True) -> None:
        self.log_path = Path(log_path)
        self.prefix = prefix  # before each line in the file (not on the terminal)
        self.terminal = terminal
        self._log_only: tuple[int, int] | None = None  # (read end, write end)
        self._saved: dict[int, int] = {}
        self._proc: subprocess.Popen | None = None
        self._line_buffering: bool | None = None
        self.active = False

    def start(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        self._saved = {fd: os.dup(fd) for fd in (1, 2)}
        shared = _same_destination(1, 2)
        channels: dict[int, tuple[int, int]] = {1: _open_channel(self._saved[1])}
        channels[2] = channels[1] if shared else _open_channel(self._saved[2])
        shown = {fd: (self._saved[fd] if self.terminal else NOWHERE) for fd in (1, 2)}
        pairs = [f"{channels[1][0]}:{shown[1]}"]
        if not shared:
            pairs.append(f"{channels[2][0]}:{shown[2]}")
        # Log-only lines of a nested tee reach the outer run's log-only channel.
        outer = log_only_fd()
        self._log_only = os.pipe()
        pairs.append(f"{self._log_only[0]}:{outer if outer is not None else NOWHERE}")
        pass_fds = {channels[1][0], channels[2][0], self._saved[1], self._saved[2],
                    self._log_only[0], *([outer] if outer is not None else [])}
        self.log_path.touch()
        self._proc = subprocess.Popen(
            [sys.executable, "-S", "-u", str(_WORKER), str(self.log_path),
             "--prefix", self.prefix, *pairs],
            pass_fds=tuple(pass_fds),
            stdin=subprocess.DEVNULL,
            stdout=self._saved[1],
            stderr=self._saved[2],
            start_new_session=True,  # not reached by Ctrl-C aimed at the run
            close_fds=True,
            env={**os.environ, **tee_environment()},  # the secrets run.log must not show
        )
        for fd in (1, 2):
            os.dup2(channels[fd][1], fd)
        for read_end, write_end in {channels[1], channels[2]}:
            os.close(read_end)
            os.close(write_end)
        os.close(self._log_only[0])
        _LOG_ONLY_FDS.append(self._log_only[1])
        # A pipe makes Python block-buffer stdout; line buffering means a
        # printed line reaches the tee at once and survives a SIGKILL.
        if getattr(sys.stdout, "fileno", None) and _fileno(sys.stdout) == 1:
            self._line_buffering = sys.stdout.line_buffering
            with contextlib.suppress(Exception):
                sys.stdout.reconfigure(line_buffering=True)
        self.active = True

    def stop(self, timeout: float = 10.0) -> None:
        """Restore fds 1/2 and wait for the tee to drain what was written."""
        if not self.active:
            return
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)
            os.close(saved)
        self._saved = {}
        if self._log_only is not None:
            write_end = self._log_only[1]
            if write_end in _LOG_ONLY_FDS:
                _LOG_ONLY_FDS.remove(write_end)
            os.close(write_end)
            self._log_only = None
        if self._line_buffering is not None:
            with contextlib.suppress(Exception):
                sys.stdout.reconfigure(line_buffering=self._line_buffering)
        self.active = False
        if self._proc is not None:
            # On timeout a leftover child still holds the channel open; the
            # worker finishes writing when it exits. Nothing is lost by not waiting.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=timeout)

    def __enter__(self) -> Tee:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _fileno(stream: object) -> int | None:
    try:
        return stream.fileno()  # type: ignore[attr-defined]
    except Exception:
        return None
