"""`kd manifest` and `kd fetch-demo`: the clips kd reads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from kd.cli.options import LabelsOption
from kd.cli.tables import console, show


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
    from kd.core.labels import audioset_labels
    from kd.core.manifest import load_manifest, summarise_manifest, write_manifest
    from kd.core.outputs import check_output_file

    if out is not None:
        check_output_file(out, "--out")
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
    show(table)
    if manifest.label_counts:
        top = Table(title="most frequent labels")
        top.add_column("label")
        top.add_column("clips", justify="right")
        for label, count in manifest.label_counts.most_common(15):
            top.add_row(label, str(count))
        show(top)
    if out is not None:
        console.print(f"wrote {write_manifest(manifest, out)}")


def fetch_demo_cmd() -> None:
    """Fetch the main job's small default set (14 real clips and the mn04 weights, sha256-pinned, from upstream)
    into the kd cache when absent; prints the manifest's path."""
    from kd.use.demo import fetch_demo

    print(fetch_demo())
