"""`kd store info|verify|report`: what a logit store holds, whether it is whole, and what its teachers are worth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from kd.cli.tables import console, show


def store_info_cmd(store: Annotated[str, typer.Argument(help="A logit store (path or fsspec URL).")]) -> None:
    """Summarise a store: clips, views, teachers, k, bytes per clip-view, completeness."""
    from kd.stores.inspect import summarise_store

    opened, teachers = summarise_store(str(store))
    table = Table(title=f"store {store}", show_header=False)
    table.add_row("clips", str(opened.num_clips))
    table.add_row("views per clip", str(opened.num_views))
    table.add_row("label space", f"{opened.labels.name} ({len(opened.labels)} classes)")
    table.add_row(
        "policy", f"v{opened.policy.version} {opened.policy.clip_seconds:g} s at {opened.policy.sample_rate} Hz"
    )
    table.add_row("blocks", f"{opened.num_blocks} of {opened.block_size} clips")
    table.add_row("manifest", str(opened.attrs["manifest"]["source"]))
    show(table)
    summary = Table(title="teachers")
    for column in ("teacher", "k", "rate", "complete", "failed views", "bytes/clip-view", "uncovered", "sha256"):
        summary.add_column(column)
    for t in teachers:
        summary.add_row(
            t.name,
            str(t.k),
            str(t.sample_rate),
            f"{t.blocks_done}/{t.blocks_total}",
            str(t.failed_views),
            f"{t.bytes_per_clip_view:.1f}",
            str(t.uncovered),
            t.checkpoint_sha256[:12],
        )
    show(summary)


def store_verify_cmd(store: Annotated[str, typer.Argument(help="A logit store (path or fsspec URL).")]) -> None:
    """Check a store's integrity; exits 1 on any inconsistency."""
    from kd.stores.inspect import verify_store

    problems = verify_store(str(store))
    for problem in problems:
        console.print(f"[red]✗[/] {problem}")
    if problems:
        raise typer.Exit(1)
    console.print(f"[green]✓[/] {store}: consistent")


def store_report_cmd(
    store: Annotated[str, typer.Argument(help="A logit store (path or fsspec URL).")],
    png: Annotated[Path | None, typer.Option(help="Write the report's figure here (PNG).")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Write the report as markdown tables here.")] = None,
) -> None:
    """What the stored teachers are worth, before training: label mAP, agreement, calibration, entropy, coverage."""
    from kd.stores.report import (
        PAIR_COLUMNS,
        TEACHER_COLUMNS,
        pair_cells,
        plot_report,
        report_markdown,
        store_report,
        teacher_cells,
    )

    report = store_report(str(store))
    title = f"store {store}: {report.clips} clips x {report.views} views, {report.labelled_clips} labelled"
    table = Table(title=title)
    for column in TEACHER_COLUMNS:
        table.add_column(column, justify="left" if column == "teacher" else "right")
    for t in report.teachers:
        table.add_row(*teacher_cells(t))
    show(table)
    if report.pairs:
        pairs = Table(title="agreement between teachers")
        for column in PAIR_COLUMNS:
            pairs.add_column(column, justify="left" if column == "teacher" else "right")
        for p in report.pairs:
            pairs.add_row(*pair_cells(p))
        show(pairs)
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(report_markdown(report), encoding="utf-8")
        console.print(f"wrote {markdown}")
    if png is not None:
        console.print(f"wrote {plot_report(report, png)}")
