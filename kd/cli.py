"""The `kd` command line: thin commands that parse flags, call one library function, and print."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from kd.errors import KdError

app = typer.Typer(
    name="kd",
    help="Offline knowledge distillation of audio taggers: dump teachers once, train students many times.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
store_app = typer.Typer(help="Inspect and check logit stores.", no_args_is_help=True)
app.add_typer(store_app, name="store")
console = Console()

LabelsOption = Annotated[
    Path | None,
    typer.Option("--labels", help="AudioSet class_labels_indices.csv (default: $KD_AUDIOSET_LABELS, cache, download)."),
]


@app.command("manifest")
def manifest_cmd(
    source: Annotated[Path, typer.Argument(help="A manifest (CSV, TSV, JSONL) or a directory of audio to scan.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the (built) manifest here.")] = None,
    labels: LabelsOption = None,
    check_labels: Annotated[bool, typer.Option(help="Check every label against the AudioSet label space.")] = True,
    durations: Annotated[
        bool, typer.Option(help="Read every file's header for durations (checks decodability).")
    ] = True,
) -> None:
    """Validate a manifest, or build one from a directory, and summarise it."""
    from kd.labels import audioset_labels
    from kd.manifest import load_manifest, summarise_manifest, write_manifest

    space = audioset_labels(labels) if check_labels else None
    manifest = load_manifest(source, labels=space)
    summary = summarise_manifest(manifest, durations=durations)
    table = Table(title=f"manifest {source}", show_header=False)
    table.add_row("clips", str(len(manifest)))
    if summary.hours is not None:
        table.add_row("hours", f"{summary.hours:.3f}")
        table.add_row("shortest / longest", f"{summary.shortest:.2f} s / {summary.longest:.2f} s")
    table.add_row("labelled clips", str(summary.labelled))
    table.add_row("distinct labels", str(len(manifest.label_counts)))
    console.print(table)
    if manifest.label_counts:
        top = Table(title="most frequent labels")
        top.add_column("label")
        top.add_column("clips", justify="right")
        for label, count in manifest.label_counts.most_common(15):
            top.add_row(label, str(count))
        console.print(top)
    if out is not None:
        console.print(f"wrote {write_manifest(manifest, out)}")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2, never a traceback."""
    try:
        app()
    except KdError as e:
        Console(stderr=True).print(f"[bold red]kd: error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        Console(stderr=True).print("kd: interrupted")
        sys.exit(130)
