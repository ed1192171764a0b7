"""A rich progress display for ``image sync``: one bar per host, fed by the sync's events."""
from __future__ import annotations

from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

_LABELS = {"checking": "checking", "present": "verified copy present", "corrupt": "corrupt copy: replacing",
           "missing": "waiting for a source", "retry": "retrying", "failed": "FAILED"}


class SyncProgress:
    """Context manager whose ``event`` method is the sync's ``on_event`` callback."""

    def __init__(self, console: Console | None = None) -> None:
        self.progress = Progress(
            TextColumn("{task.fields[host]:<16}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"), console=console or Console(stderr=True),
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.progress.stop()

    def event(self, host: str, event: str, detail: str, fraction: float | None) -> None:
        if host not in self.tasks:
            self.tasks[host] = self.progress.add_task("", total=1.0, host=host, status="")
        task = self.tasks[host]
        if event == "progress":
            self.progress.update(task, completed=fraction or 0.0)
        elif event == "copying":
            self.progress.update(task, completed=0.0, status=f"copying {detail}")
        elif event == "copied":
            self.progress.update(task, completed=1.0, status=f"verified, {detail}")
        else:
            label = _LABELS.get(event, event)
            self.progress.update(task, completed=fraction if fraction is not None else self.progress.tasks[task].completed,
                                 status=f"{label}: {detail}" if detail else label)
