"""Rich progress bars for long work, quiet when output is not a terminal-like console (e.g. under pytest)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def progress_bar(unit: str = "items", disable: bool = False) -> Progress:
    """A bar with count, rate in `unit`/s and ETA; extra fields (e.g. loss) go in the `info` field."""
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
