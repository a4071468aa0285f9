"""How commands print: one console, and tables that never cut a name or a figure."""

from __future__ import annotations

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

console = Console()
# Off a terminal (a pipe, a batch job's log) there is no width to fit: long lines stay whole for grep.
console.soft_wrap = not console.is_terminal


def show(table: Table) -> None:
    """Prints a table without cutting names or figures: cells wrap on a terminal; elsewhere lines are as wide as
    the table needs."""
    for column in table.columns:
        column.overflow = "fold"
    if console.is_terminal:
        console.print(table)
        return
    width = Measurement.get(console, console.options.update_width(10_000), table).maximum
    Console(width=max(console.width, width), soft_wrap=True).print(table)
