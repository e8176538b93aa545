"""Exceptions that map onto the CLI's exit codes (docs/artifacts.md, "Exit codes").

Code anywhere in the package raises these; only the run lifecycle and the CLI
entry point turn them into exit codes and messages, so library code never
calls ``sys.exit`` itself.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class MammographyError(Exception):
    """Base class for the package's own errors."""


class InputError(MammographyError):
    """Bad usage or bad input: the user can fix it; exit code 2, no traceback.

    The message must name the file, row or option at fault and say how to fix
    it, because it is all the user sees.
    """

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = list(problems or [])
        super().__init__(message)

    def render(self) -> str:
        """The full user-facing text: the message plus one line per problem."""
        lines = [str(self)]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class ExplainedFailure(MammographyError):
    """A failure its message explains in full, not a bug (a cluster that kept losing a
    shard's worker): exit code 1 with ``Error: message`` and no traceback; the run
    records it as failed with that message."""

    exit_code = EXIT_FAILED


class ConfigError(InputError):
    """One or more invalid settings (CLI options or YAML config)."""


class DataError(InputError):
    """The data (CSV, DICOM tree, images) cannot be used as given."""


class RunInterrupted(BaseException):
    """Raised in the main thread on SIGINT/SIGTERM.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that broad
    ``except Exception`` blocks in library code do not swallow a stop request.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by signal {signum}")
