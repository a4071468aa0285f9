"""Progress for long work: a rich bar on a terminal, plain timestamped lines in logs (batch jobs, pipes).

Off a terminal a rich bar prints nothing until it ends, so a batch job's log stays empty for the whole run; there a
`PlainProgress` writes one line per task every `KD_PROGRESS_SECONDS` (default 10) seconds and a last one at the end.
Both take the same calls (`add_task`, `update`, `advance`, used as a context manager).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")
PROGRESS_SECONDS_ENV = "KD_PROGRESS_SECONDS"


def progress_bar(unit: str = "items", disable: bool = False) -> Progress | PlainProgress:
    """A bar with count, rate in `unit`/s and ETA on a terminal; plain periodic lines otherwise.

    Extra fields (e.g. loss) go in the `info` field, a preformatted rate in `rate`.
    """
    if not disable and not Console().is_terminal:
        return PlainProgress(interval=progress_interval())
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        disable=disable,
        transient=False,
    )


def progress_interval() -> float:
    """Seconds between plain progress lines, from $KD_PROGRESS_SECONDS (default 10)."""
    text = os.environ.get(PROGRESS_SECONDS_ENV, "10")
    try:
        return max(0.0, float(text))
    except ValueError:
        return 10.0


@dataclass
class _PlainTask:
    description: str
    total: float | None
    completed: float
    started: float
    start_completed: float
    fields: dict = field(default_factory=dict)
    printed: float | None = None  # `completed` when the last line was written


class PlainProgress:
    """Rich's `Progress` interface for logs: `description: done/total (pct), rate, info, elapsed, ETA` lines."""

    def __init__(self, interval: float = 10.0, stream: IO[str] | None = None) -> None:
        self.interval = interval
        self.stream = stream
        self.tasks: list[_PlainTask] = []
        self._last_line = 0.0

    def __enter__(self) -> PlainProgress:
        self._last_line = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        for task in self.tasks:
            if task.printed != task.completed:
                self._write(task)

    def add_task(self, description: str, total: float | None = 100.0, completed: float = 0, **fields: object) -> int:
        now = time.monotonic()
        self.tasks.append(_PlainTask(description, total, completed, now, completed, dict(fields)))
        return len(self.tasks) - 1

    def update(
        self,
        task_id: int,
        *,
        total: float | None = None,
        completed: float | None = None,
        advance: float | None = None,
        description: str | None = None,
        **fields: object,
    ) -> None:
        task = self.tasks[task_id]
        if total is not None:
            task.total = total
        if completed is not None:
            task.completed = completed
        if advance is not None:
            task.completed += advance
        if description is not None:
            task.description = description
        task.fields.update(fields)
        if time.monotonic() - self._last_line >= self.interval:
            for each in self.tasks:
                self._write(each)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def line(self, task_id: int) -> str:
        """The progress line of a task as it stands now."""
        return self._format(self.tasks[task_id])

    def _format(self, task: _PlainTask) -> str:
        elapsed = time.monotonic() - task.started
        parts = [f"{task.description}: {task.completed:g}" + (f"/{task.total:g}" if task.total else "")]
        if task.total:
            parts[0] += f" ({100 * task.completed / task.total:.0f}%)"
        parts += [str(v) for k in ("rate", "info") if (v := task.fields.get(k))]
        parts.append(f"elapsed {_clock(elapsed)}")
        done_here = task.completed - task.start_completed
        if task.total and 0 < done_here and task.completed < task.total:
            parts.append(f"ETA {_clock(elapsed / done_here * (task.total - task.completed))}")
        return ", ".join(parts)

    def _write(self, task: _PlainTask) -> None:
        stream = self.stream or sys.stdout
        stream.write(self._format(task) + "\n")
        stream.flush()
        task.printed = task.completed
        self._last_line = time.monotonic()


def _clock(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    h, m = divmod(minutes, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_rate(done: float, elapsed: float, unit: str) -> str:
    return f"{done / elapsed:.1f} {unit}/s" if elapsed > 0 else ""


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterates `items` with a progress bar."""
    items = list(items) if total is None and not hasattr(items, "__len__") else items
    total = total if total is not None else len(items)  # type: ignore[arg-type]
    with progress_bar() as bar:
        task = bar.add_task(description, total=total, rate="", info="")
        for item in items:
            yield item
            bar.advance(task)
