"""`kd dump-teachers` and `kd plan`: stage one, and its estimate beforehand."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from kd.cli.options import (
    ConfigOption,
    LabelsOption,
    Policy,
    PrintConfigOption,
    parse_checkpoints,
    require,
    resolve_settings,
)
from kd.cli.tables import console, show


def dump_teachers_cmd(
    ctx: typer.Context,
    manifest: Annotated[
        Path | None, typer.Argument(help="Manifest (CSV, TSV, JSONL) or directory of audio.", show_default=False)
    ] = None,
    store: Annotated[
        str | None,  # a string, not a Path: a URL (file:///..., s3://...) must reach zarr/fsspec unchanged
        typer.Argument(help="Zarr store (path or fsspec URL) to create, resume or extend.", show_default=False),
    ] = None,
    teacher: Annotated[
        list[str] | None, typer.Option("--teacher", "-t", help="Registered teacher name; repeat for more.")
    ] = None,
    checkpoint: Annotated[
        list[str] | None, typer.Option("--checkpoint", help="Weights file, as PATH or TEACHER=PATH; repeatable.")
    ] = None,
    views: Annotated[
        int, typer.Option(help="Augmented views per clip (view 0 is the clean clip). Existing store: its own.")
    ] = 4,
    k: Annotated[
        int,
        typer.Option(
            help="Logits kept per view and teacher (top-k); larger than the classes = all. Existing store: its largest."
        ),
    ] = 50,
    policy: Annotated[Policy, typer.Option(help="Augmentation policy. Existing store: its own.")] = Policy.default,
    clip_seconds: Annotated[
        float | None,
        typer.Option(help="View length in seconds (default: the policy's, 10 s). Existing store: its own."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Views per teacher forward.")] = 16,
    workers: Annotated[
        int | None, typer.Option(help="DataLoader workers decoding and augmenting (default: cores - 1, at most 4).")
    ] = None,
    device: Annotated[str, typer.Option(help="Device for the teachers (cpu, cuda, cuda:1).")] = "cpu",
    block_size: Annotated[
        int, typer.Option(help="Clips per block (the unit of work, resume and shards). Existing store: its own.")
    ] = 512,
    seed: Annotated[int, typer.Option(help="Base seed of the views. Existing store: its own.")] = 0,
    scheduler: Annotated[
        str | None, typer.Option(help="dask.distributed scheduler address, or local:N for a local cluster.")
    ] = None,
    skip_bad: Annotated[bool, typer.Option(help="Accept unreadable clips (recorded as failed) and exit 0.")] = False,
    labels: LabelsOption = None,
    config_file: ConfigOption = None,
    print_config: PrintConfigOption = False,
) -> None:
    """Run teachers over augmented views of every clip and store their top-k logits (resumable, appendable).

    On an existing store, --views, --seed, --block-size, --policy, --clip-seconds and --k default to the store's.
    """
    flags = {name: value for name, value in locals().items() if name not in ("ctx", "config_file", "print_config")}
    from kd.api import dump_config
    from kd.core.config_files import config_json
    from kd.dump import DumpConfig, dump_teachers

    settings, given = resolve_settings(
        ctx, DumpConfig, config_file, flags, {"teacher": "teachers", "checkpoint": "checkpoints"}
    )
    require(settings, {"manifest": "MANIFEST", "store": "STORE", "teachers": "--teacher"})
    if not isinstance(settings["checkpoints"], dict):
        settings["checkpoints"] = parse_checkpoints(settings["checkpoints"], settings["teachers"])
    # Only what the user gave: the rest is the existing store's, else DumpConfig's defaults (as from Python).
    config = dump_config(**{key: settings[key] for key in given | {"checkpoints"}})
    if print_config:
        print(config_json(config))
        return
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
        show(table)
        if not config.skip_bad:
            Console(stderr=True).print(
                "kd: error: some clips could not be read; fix them and rerun, or pass --skip-bad"
            )
            raise typer.Exit(1)


def plan_cmd(
    manifest: Annotated[Path, typer.Argument(help="Manifest (CSV, TSV, JSONL) or directory of audio.")],
    teacher: Annotated[list[str], typer.Option("--teacher", "-t", help="Registered teacher name; repeat for more.")],
    checkpoint: Annotated[
        list[str] | None, typer.Option("--checkpoint", help="Weights file, as PATH or TEACHER=PATH; repeatable.")
    ] = None,
    views: Annotated[int, typer.Option(help="Augmented views per clip, as for dump-teachers.")] = 4,
    k: Annotated[int, typer.Option(help="Logits kept per view and teacher, as for dump-teachers.")] = 50,
    policy: Annotated[Policy, typer.Option(help="Augmentation policy.")] = Policy.default,
    clip_seconds: Annotated[float | None, typer.Option(help="View length in seconds (default: the policy's).")] = None,
    batch_size: Annotated[int, typer.Option(help="Views per teacher forward.")] = 16,
    workers: Annotated[
        int | None, typer.Option(help="Decoding workers of the dump (default: cores - 1, at most 4).")
    ] = None,
    device: Annotated[str, typer.Option(help="Device for the teachers and the student (cpu, cuda, cuda:1).")] = "cpu",
    student: Annotated[str | None, typer.Option(help="Also estimate an epoch of training this student.")] = None,
    student_batch_size: Annotated[int, typer.Option(help="Views per training step.")] = 16,
    calibration_views: Annotated[int, typer.Option(help="Real views timed per teacher.")] = 8,
    labels: LabelsOption = None,
) -> None:
    """Before a dump: store size, dump time, training memory and epoch time, from a short calibration here."""
    from kd.dump.plan import PlanConfig, format_bytes, format_seconds, plan_dump

    plan = plan_dump(
        PlanConfig(
            manifest=str(manifest),
            teachers=teacher,
            checkpoints=parse_checkpoints(checkpoint, teacher),
            views=views,
            k=k,
            policy=policy.value,
            clip_seconds=clip_seconds,
            batch_size=batch_size,
            workers=workers,
            device=device,
            labels=str(labels) if labels else None,
            calibration_views=calibration_views,
            student=student,
            student_batch_size=student_batch_size,
        )
    )
    title = (
        f"plan: {plan.clips} clips x {plan.views} views = {plan.total_views} views on {plan.device}, "
        f"{plan.workers} decoding workers (calibrated on {plan.calibration_views} real views)"
    )
    table = Table(title=title)
    for column in ("teacher", "weights", "params", "k", "s / view", "dump time", "store", "store raw", "train memory"):
        table.add_column(column, justify="left" if column in ("teacher", "weights") else "right")
    for i, t in enumerate(plan.teachers):
        table.add_row(
            t.name,
            "random (timing only)" if t.random_weights else "real",
            "-" if t.parameters is None else f"{t.parameters / 1e6:.1f} M",
            str(t.k),
            f"{t.seconds_per_view:.3f}",
            format_seconds(t.dump_seconds),
            format_bytes(t.store_bytes),
            format_bytes(t.store_bytes_raw),
            format_bytes(t.training_bytes),
            end_section=i == len(plan.teachers) - 1,
        )
    table.add_row(
        "total",
        "",
        "",
        "",
        f"{sum(t.seconds_per_view for t in plan.teachers):.3f}",
        format_seconds(plan.dump_seconds),
        format_bytes(plan.store_bytes),
        format_bytes(plan.store_bytes_raw),
        format_bytes(plan.training_bytes),
    )
    show(table)
    console.print(
        f"dump total: headers {format_seconds(plan.header_seconds)}, decoding {plan.decode_seconds_per_view:.3f} s "
        f"per view over {plan.workers} workers, teachers as above (store totals include "
        f"{format_bytes(plan.seeds_bytes)} of view seeds)"
    )
    if plan.epoch_seconds is not None:
        console.print(
            f"training {plan.student}: {plan.student_step_seconds_per_view:.3f} s per view per step, "
            f"one epoch over every view {format_seconds(plan.epoch_seconds)} on {plan.device}"
        )
