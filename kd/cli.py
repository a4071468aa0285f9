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


def _parse_checkpoints(values: list[str] | None, teachers: list[str]) -> dict[str, str]:
    from kd.errors import ConfigError

    out = {}
    for value in values or []:
        name, sep, path = value.rpartition("=")
        if not sep:
            if len(teachers) != 1:
                raise ConfigError(f"--checkpoint {value!r}: with several teachers write NAME=PATH")
            name, path = teachers[0], value
        out[name] = path
    return out


@app.command("dump-teachers")
def dump_teachers_cmd(
    manifest: Annotated[Path, typer.Argument(help="Manifest (CSV, TSV, JSONL) or directory of audio.")],
    store: Annotated[Path, typer.Argument(help="Zarr store to create, resume or add teachers to.")],
    teacher: Annotated[list[str], typer.Option("--teacher", "-t", help="Registered teacher name; repeat for more.")],
    checkpoint: Annotated[
        list[str] | None, typer.Option("--checkpoint", help="Weights file, as PATH or TEACHER=PATH; repeatable.")
    ] = None,
    views: Annotated[int, typer.Option(help="Augmented views per clip (view 0 is the clean clip).")] = 4,
    k: Annotated[
        int, typer.Option(help="Logits kept per view and teacher (top-k); larger than the classes = all.")
    ] = 20,
    policy: Annotated[str, typer.Option(help="Augmentation policy: default, clean or strong.")] = "default",
    batch_size: Annotated[int, typer.Option(help="Views per teacher forward.")] = 16,
    workers: Annotated[int, typer.Option(help="DataLoader workers decoding and augmenting.")] = 2,
    device: Annotated[str, typer.Option(help="Device for the teachers (cpu, cuda, cuda:1).")] = "cpu",
    block_size: Annotated[int, typer.Option(help="Clips per block (the unit of work, resume and shards).")] = 512,
    seed: Annotated[int, typer.Option(help="Base seed of the views.")] = 0,
    scheduler: Annotated[
        str | None, typer.Option(help="dask.distributed scheduler address, or local:N for a local cluster.")
    ] = None,
    skip_bad: Annotated[bool, typer.Option(help="Accept unreadable clips (recorded as failed) and exit 0.")] = False,
    labels: LabelsOption = None,
) -> None:
    """Run teachers over augmented views of every clip and store their top-k logits (resumable, appendable)."""
    from kd.dump import DumpConfig, dump_teachers

    config = DumpConfig(
        manifest=str(manifest),
        store=str(store),
        teachers=teacher,
        checkpoints=_parse_checkpoints(checkpoint, teacher),
        views=views,
        k=k,
        policy=policy,
        batch_size=batch_size,
        workers=workers,
        device=device,
        block_size=block_size,
        seed=seed,
        scheduler=scheduler,
        skip_bad=skip_bad,
        labels=str(labels) if labels else None,
    )
    report = dump_teachers(config)
    for name, names in report.unmapped.items():
        console.print(f"[yellow]{name}: {len(names)} classes have no counterpart in the store: {', '.join(names)}")
    console.print(
        f"{report.store}: {report.blocks_computed} blocks computed, {report.blocks_skipped} already done, "
        f"{report.views_computed} views in {report.seconds:.1f} s ({report.views_per_second:.1f} views/s)"
    )
    if report.failures:
        table = Table(title=f"{len(report.failures)} views failed")
        table.add_column("clip")
        table.add_column("view", justify="right")
        table.add_column("reason")
        for failure in report.failures:
            table.add_row(failure.clip_id, str(failure.view), failure.reason)
        console.print(table)
        if not skip_bad:
            Console(stderr=True).print(
                "kd: error: some clips could not be read; fix them and rerun, or pass --skip-bad"
            )
            raise typer.Exit(1)


@store_app.command("info")
def store_info_cmd(store: Annotated[Path, typer.Argument(help="A logit store.")]) -> None:
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
    console.print(table)
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
    console.print(summary)


@store_app.command("verify")
def store_verify_cmd(store: Annotated[Path, typer.Argument(help="A logit store.")]) -> None:
    """Check a store's integrity; exits 1 on any inconsistency."""
    from kd.stores.inspect import verify_store

    problems = verify_store(str(store))
    for problem in problems:
        console.print(f"[red]✗[/] {problem}")
    if problems:
        raise typer.Exit(1)
    console.print(f"[green]✓[/] {store}: consistent")


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
