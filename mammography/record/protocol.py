"""What a command body may do with its run: the ``RunContext`` protocol.

The engine, the data pipeline and the HPO drivers are typed against this
protocol, never against the concrete :class:`~mammography.record.lifecycle.Run`
(and never read its private state), so the run layer can change how it
places, records and stops runs without touching them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class RunContext(Protocol):
    dir: Path
    run_id: str

    # -- output: run.log and summary.json
    def log(self, message: str = "") -> None: ...

    def warn(self, message: str) -> None: ...

    def update(self, fragment: dict[str, Any] | None = None, **fields: Any) -> None: ...

    def get(self, key: str, default: Any = None) -> Any: ...

    def set_results(self, **results: Any) -> None: ...

    def add_based_on(self, links: list[dict[str, Any]] | None) -> None: ...

    def refresh_environment(self) -> None: ...

    # -- files of the run directory
    def path(self, relative: str) -> Path: ...

    def write_json(self, relative: str, data: Any) -> Path: ...

    @property
    def is_primary(self) -> bool:
        """Whether this process writes the run's files (rank 0 under torchrun)."""

    # -- children and stopping
    def child(self, name: str, **overrides: Any) -> Any: ...

    def check_stop(self) -> None: ...

    @property
    def stop_requested(self) -> bool: ...

    @property
    def stop_signal(self) -> int | None: ...

    graceful_stop: bool
