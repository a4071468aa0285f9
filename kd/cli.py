"""The `kd` command line: thin commands that parse flags, call one library function, and print."""

from __future__ import annotations

import sys
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from kd.errors import KdError

app = typer.Typer(
    name="kd",
    help="Offline knowledge distillation of audio taggers: dump teachers once, train students many times.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
store_app = typer.Typer(help="Inspect and check logit stores.", no_args_is_help=True)
app.add_typer(store_app, name="store")
console = Console()
# Off a terminal (a pipe, a batch job's log) there is no width to fit: long lines stay whole for grep.
console.soft_wrap = not console.is_terminal


def _show(table: Table) -> None:
    """Prints a table without cutting names or figures: cells wrap on a terminal; elsewhere lines are as wide as
    the table needs."""
    for column in table.columns:
        column.overflow = "fold"
    if console.is_terminal:
        console.print(table)
        return
    width = Measurement.get(console, console.options.update_width(10_000), table).maximum
    Console(width=max(console.width, width), soft_wrap=True).print(table)


# Choices the parser checks and --help lists; tests/test_cli.py checks each matches the library's own list.
class Loss(StrEnum):
    bce = "bce"
    kl = "kl"


class Combine(StrEnum):
    prob = "prob"
    logit = "logit"


class Policy(StrEnum):
    default = "default"
    clean = "clean"
    strong = "strong"


class ExportFormat(StrEnum):
    hf = "hf"
    onnx = "onnx"


class Pool(StrEnum):
    max = "max"
    mean = "mean"


def _print_version(value: bool) -> None:
    if value:
        from kd import __version__

        print(f"kd {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print kd's version and exit.")
    ] = False,
) -> None:
    """Offline knowledge distillation of audio taggers: dump teachers once, train students many times."""


LabelsOption = Annotated[
    Path | None,
    typer.Option(
        "--labels", help="AudioSet class_labels_indices.csv (default: $KD_AUDIOSET_LABELS, else kd's shipped copy)."
    ),
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
    from kd.outputs import check_output_file

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
    _show(table)
    if manifest.label_counts:
        top = Table(title="most frequent labels")
        top.add_column("label")
        top.add_column("clips", justify="right")
        for label, count in manifest.label_counts.most_common(15):
            top.add_row(label, str(count))
        _show(top)
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


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML or JSON file of settings (a saved config.json works; a [COMMAND] table is used if present); "
        "flags given here override it.",
    ),
]
PrintConfigOption = Annotated[
    bool, typer.Option("--print-config", help="Print the resolved settings as JSON (a valid --config) and exit.")
]


def _resolve_settings(
    ctx: typer.Context, cls: type, config_file: Path | None, flags: dict, rename: dict[str, str]
) -> tuple[dict, set[str]]:
    """Merges flag defaults, the --config file and the flags given; returns the settings and the names the user set.

    Args:
        flags: the command's parameters by name; `rename` maps parameter names to `cls` field names.
    """
    from kd.config_files import checked_values, merge_settings, read_config_file

    # By name: Typer vendors its own click, whose ParameterSource is not click's.
    sources = {p: getattr(ctx.get_parameter_source(p), "name", "DEFAULT") for p in flags}
    given = {rename.get(p, p) for p, source in sources.items() if source not in ("DEFAULT", "DEFAULT_MAP")}
    values = {rename.get(p, p): _plain(v) for p, v in flags.items()}
    file_values = {}
    if config_file is not None:
        file_values = checked_values(cls, read_config_file(config_file, ctx.info_name or ""), config_file)
    return merge_settings(values, given, file_values)


def _plain(value: object) -> object:
    """A flag's value as a config field holds it: paths as strings, choices as their names."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return value


def _teacher_paths(values: list[str] | None, flag: str) -> dict[str, str]:
    """TEACHER=PATH pairs as a dict; anything else is a one-line error naming the flag."""
    from kd.errors import ConfigError

    pairs = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"{flag} {value!r}: expected TEACHER=PATH")
        pairs[name] = path
    return pairs


def _require(settings: dict, names: dict[str, str]) -> None:
    from kd.errors import ConfigError

    missing = [flag for name, flag in names.items() if settings.get(name) in (None, [])]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)}: give it on the command line or in --config")


@app.command("dump-teachers")
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
    from kd.config_files import config_json
    from kd.dump import DumpConfig, dump_teachers, settings_from_store

    settings, given = _resolve_settings(
        ctx, DumpConfig, config_file, flags, {"teacher": "teachers", "checkpoint": "checkpoints"}
    )
    _require(settings, {"manifest": "MANIFEST", "store": "STORE", "teachers": "--teacher"})
    if not isinstance(settings["checkpoints"], dict):
        settings["checkpoints"] = _parse_checkpoints(settings["checkpoints"], settings["teachers"])
    config = DumpConfig(**settings_from_store(settings, given))
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
        _show(table)
        if not config.skip_bad:
            Console(stderr=True).print(
                "kd: error: some clips could not be read; fix them and rerun, or pass --skip-bad"
            )
            raise typer.Exit(1)


@app.command("plan")
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
    from kd.plan import PlanConfig, format_bytes, format_seconds, plan_dump

    plan = plan_dump(
        PlanConfig(
            manifest=str(manifest),
            teachers=teacher,
            checkpoints=_parse_checkpoints(checkpoint, teacher),
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
    _show(table)
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


@store_app.command("info")
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
    _show(table)
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
    _show(summary)


@store_app.command("verify")
def store_verify_cmd(store: Annotated[str, typer.Argument(help="A logit store (path or fsspec URL).")]) -> None:
    """Check a store's integrity; exits 1 on any inconsistency."""
    from kd.stores.inspect import verify_store

    problems = verify_store(str(store))
    for problem in problems:
        console.print(f"[red]✗[/] {problem}")
    if problems:
        raise typer.Exit(1)
    console.print(f"[green]✓[/] {store}: consistent")


@store_app.command("report")
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
    _show(table)
    if report.pairs:
        pairs = Table(title="agreement between teachers")
        for column in PAIR_COLUMNS:
            pairs.add_column(column, justify="left" if column == "teacher" else "right")
        for p in report.pairs:
            pairs.add_row(*pair_cells(p))
        _show(pairs)
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(report_markdown(report), encoding="utf-8")
        console.print(f"wrote {markdown}")
    if png is not None:
        console.print(f"wrote {plot_report(report, png)}")


@app.command("train-student")
def train_student_cmd(
    ctx: typer.Context,
    store: Annotated[
        str | None, typer.Argument(help="Logit store (path or URL) made by `kd dump-teachers`.", show_default=False)
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run directory: checkpoints, config, metrics.jsonl.")
    ] = None,
    student: Annotated[
        str, typer.Option(help="Registered student (see `kd students`); dass-small for the paper's student on a GPU.")
    ] = "dass-mini-p16",
    teachers: Annotated[
        str | None, typer.Option(help="Ensemble as NAME[:WEIGHT],... from the store's teachers (default: all, equal).")
    ] = None,
    temperature: Annotated[float, typer.Option(help="Temperature applied to teacher logits.")] = 1.0,
    combine: Annotated[
        Combine, typer.Option(help="Combine teachers by mean of probabilities (prob) or logits.")
    ] = Combine.prob,
    loss: Annotated[Loss, typer.Option(help="bce (multi-label soft targets) or kl (over classes).")] = Loss.bce,
    label_weight: Annotated[
        float, typer.Option(help="Weight of ground-truth labels from the manifest (0 = none).")
    ] = 0.0,
    classes: Annotated[
        str | None,
        typer.Option(
            help="Teach only these classes: 'manifest' (those the store's manifest labels), 'top:N' (the N the "
            "teachers rate highest on the training views), a file of names, or names joined by ';' (default: all)."
        ),
    ] = None,
    head_prior: Annotated[
        bool,
        typer.Option(
            help="Start the output bias at the logit of the mean target (keeps small students from collapsing)."
        ),
    ] = True,
    views: Annotated[
        int | None, typer.Option(help="Train on the first V stored views of each clip (default: all; view 0 is clean).")
    ] = None,
    online: Annotated[
        bool, typer.Option(help="Online KD baseline: run the teachers in the loop on fresh views each epoch.")
    ] = False,
    teacher_checkpoint: Annotated[
        list[str] | None, typer.Option("--teacher-checkpoint", help="TEACHER=PATH weights for --online (repeatable).")
    ] = None,
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 1000,
    batch_size: Annotated[int, typer.Option(help="Views per batch (per process).")] = 16,
    accumulate: Annotated[int, typer.Option(help="Batches per optimiser step.")] = 1,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 1e-3,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay (not on norms and biases).")] = 0.05,
    warmup_steps: Annotated[int, typer.Option(help="Linear warm-up steps before cosine decay.")] = 50,
    grad_clip: Annotated[float, typer.Option(help="Gradient norm clip.")] = 1.0,
    ema_decay: Annotated[float, typer.Option(help="EMA decay of the weights (evaluation uses the EMA).")] = 0.995,
    drop_path: Annotated[
        float,
        typer.Option(
            help="Stochastic depth rate of the student (0.1: the ESC-50 KD student memorises its clips without it)."
        ),
    ] = 0.1,
    workers: Annotated[int, typer.Option(help="DataLoader workers (decode, replay, features).")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of initialisation and data order.")] = 0,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 200,
    val_fraction: Annotated[float, typer.Option(help="Clips held out (by id hash) for validation.")] = 0.1,
    val_every: Annotated[int, typer.Option(help="Steps between validations.")] = 200,
    val_manifest: Annotated[
        Path | None, typer.Option(help="A held-out labelled manifest: label mAP, AUC, d-prime at each validation.")
    ] = None,
    log_every: Annotated[int, typer.Option(help="Steps between metric records.")] = 10,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N (bf16 autocast on CUDA).")] = "cpu",
    allow_partial: Annotated[bool, typer.Option(help="Train on the complete blocks of an unfinished dump.")] = False,
    audio_root: Annotated[
        Path | None, typer.Option(help="Where the store's relative clip paths live now (if moved).")
    ] = None,
    feature_cache: Annotated[
        Path | None,
        typer.Option(
            help="Directory caching the student's features of each stored view (before its frequency masks), so "
            "epochs after the first skip decoding, resampling, augmentation and the front end; bit-identical "
            "training, keyed by store, policy and front end, resumable, shareable between runs. Costs disk: about "
            "255 KB per 5 s view for the DASS fbank (off by default)."
        ),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/last.pt if it exists.")] = False,
    config_file: ConfigOption = None,
    print_config: PrintConfigOption = False,
) -> None:
    """Train a student label-free from a logit store, with the teacher ensemble chosen now."""
    flags = {name: value for name, value in locals().items() if name not in ("ctx", "config_file", "print_config")}
    from kd.config_files import config_json
    from kd.train import TrainConfig, train_student

    flags["teacher_checkpoints"] = _teacher_paths(flags.pop("teacher_checkpoint"), "--teacher-checkpoint")

    settings, _ = _resolve_settings(ctx, TrainConfig, config_file, flags, {})
    _require(settings, {"store": "STORE", "out": "--out"})
    config = TrainConfig(**settings)
    if print_config:
        print(config_json(config))
        return
    result = train_student(config)
    console.print(f"{result.out}: step {result.step}, loss {result.last_loss:.4f}, {result.seconds:.1f} s")
    for key, value in result.validation.items():
        console.print(f"  validation {key}: {value:.4f}")


@app.command("teachers")
def teachers_cmd(
    checkpoint: Annotated[
        list[str] | None, typer.Option("--checkpoint", help="TEACHER=PATH: report these weights as present.")
    ] = None,
) -> None:
    """List registered teachers: sample rate, classes, parameters, where weights come from, whether present."""
    from kd.teachers.catalog import describe_teachers

    paths = dict(value.split("=", 1) for value in checkpoint or [] if "=" in value)
    table = Table(title="teachers")
    for column in ("name", "rate", "classes", "params", "runtime", "weights from", "local", "description"):
        table.add_column(column, overflow="fold")
    for row in describe_teachers(paths):
        present = {True: "[green]yes[/]", False: "no", None: "-"}[row.weights_present]
        params = f"{row.num_parameters / 1e6:.2f} M" if row.num_parameters else "-"
        table.add_row(
            row.name,
            str(row.sample_rate or "-"),
            str(row.num_classes or "-"),
            params,
            row.runtime,
            row.weights_from,
            present,
            row.description,
        )
    _show(table)


@app.command("students")
def students_cmd() -> None:
    """List registered students with parameter counts and the scan backends usable here."""
    from kd.students import create_student, student_names
    from kd.students.scan import scan_backends

    table = Table(title="students")
    for column in ("name", "parameters", "sample rate"):
        table.add_column(column)
    for name in student_names():
        model = create_student(name)
        table.add_row(name, f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M", str(model.sample_rate))
    _show(table)
    for backend, reason in scan_backends().items():
        console.print(f"scan backend {backend}: " + ("[green]available[/]" if reason is None else f"[yellow]{reason}"))


@app.command("fetch-demo")
def fetch_demo_cmd() -> None:
    """Fetch the main job's small default set (14 real clips and the mn04 weights, sha256-pinned, from upstream)
    into the kd cache when absent; prints the manifest's path."""
    from kd.demo import fetch_demo

    print(fetch_demo())


@app.command("env")
def env_cmd(
    json_out: Annotated[bool, typer.Option("--json", help="Print the same as one JSON object.")] = False,
) -> None:
    """Versions (kd, torch, torchaudio, zarr, ...), devices, scan backends and why one is unavailable, cache dirs."""
    import json

    from kd.environment import describe_environment

    sections = describe_environment()
    if json_out:
        print(json.dumps(sections, indent=1))
        return
    for title, rows in sections.items():
        table = Table(title=title, show_header=False, title_justify="left")
        for key, value in rows.items():
            table.add_row(key, value)
        _show(table)


ModelArgument = Annotated[
    str, typer.Argument(help="A student checkpoint (.pt from kd train-student) or a registered teacher name.")
]
ModelCheckpointOption = Annotated[
    str | None, typer.Option("--checkpoint", help="Teacher weights file (teachers only).")
]
DeviceOption = Annotated[str, typer.Option(help="Device (cpu, cuda, cuda:1).")]


@app.command("eval")
def eval_cmd(
    model: ModelArgument,
    manifest: Annotated[Path, typer.Argument(help="Labelled manifest (CSV, TSV, JSONL).")],
    checkpoint: ModelCheckpointOption = None,
    device: DeviceOption = "cpu",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write all metrics and per-class AP here.")] = None,
    top: Annotated[int, typer.Option(help="Per-class rows shown (best and worst AP).")] = 20,
) -> None:
    """mAP, mean AUC, d-prime and per-class AP of a model on a labelled manifest (whole clips, any length)."""
    import json

    from kd.evaluate import evaluate
    from kd.models import load_tagger
    from kd.outputs import check_output_file

    if json_out is not None:
        check_output_file(json_out, "--json")
    report = evaluate(load_tagger(model, checkpoint, device), manifest)
    m = report.metrics
    table = Table(title=f"{model} on {manifest}", show_header=False)
    table.add_row("clips", f"{report.clips} ({report.seconds:.1f} s of audio, {report.wall_seconds:.1f} s wall)")
    table.add_row("mAP", f"{m.mAP:.4f}")
    table.add_row("mean AUC", f"{m.mean_auc:.4f}")
    table.add_row("d-prime", f"{m.d_prime:.3f}")
    table.add_row("classes scored", f"{m.classes_scored} ({m.classes_without_positives} without positives left out)")
    if report.unresolved:
        table.add_row("labels the model lacks", ", ".join(f"{k} ({v})" for k, v in report.unresolved.items()))
    _show(table)
    rows = sorted(report.to_json()["per_class"], key=lambda r: -r["ap"])
    shown = rows if len(rows) <= top else rows[: top // 2] + rows[-(top - top // 2) :]
    per_class = Table(title=f"per-class AP ({len(shown)} of {len(rows)} classes)")
    for column in ("label", "positives", "AP", "AUC"):
        per_class.add_column(column, justify="left" if column == "label" else "right")
    for r in shown:
        auc = "-" if r["auc"] is None else f"{r['auc']:.3f}"
        per_class.add_row(r["label"], str(r["positives"]), f"{r['ap']:.3f}", auc)
    _show(per_class)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.to_json(), indent=1), encoding="utf-8")
        console.print(f"wrote {json_out}")


@app.command("predict")
def predict_cmd(
    model: ModelArgument,
    files: Annotated[list[Path], typer.Argument(help="Audio files of any length.")],
    checkpoint: ModelCheckpointOption = None,
    device: DeviceOption = "cpu",
    top: Annotated[int, typer.Option(help="Tags shown (and written by --json/--csv) per file.")] = 10,
    window: Annotated[float, typer.Option(help="Window length in seconds (each is decoded on its own).")] = 10.0,
    hop: Annotated[float | None, typer.Option(help="Seconds between windows (default: the window).")] = None,
    pool: Annotated[Pool, typer.Option(help="Clip-level score over windows.")] = Pool.max,
    batch_size: Annotated[int, typer.Option(help="Windows per forward pass.")] = 8,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write each file's clip-level tags as JSON here ('-': stdout only).")
    ] = None,
    csv_out: Annotated[
        Path | None,
        typer.Option("--csv", help="Write clip-level tags as CSV (file, rank, label, probability); '-': stdout only."),
    ] = None,
    timeline: Annotated[Path | None, typer.Option(help="Write every window's scores (.csv or .json).")] = None,
    plot: Annotated[
        Path | None, typer.Option(help="PNG of the top tags over time (several files: PATH stem + index).")
    ] = None,
) -> None:
    """Top tags with probabilities for each file, by windowed inference in bounded memory."""
    from kd.errors import ConfigError
    from kd.models import load_tagger
    from kd.predict import plot_timeline, predict_file, write_tags, write_timeline

    outputs = {fmt: path for fmt, path in (("json", json_out), ("csv", csv_out)) if path is not None}
    to_stdout = [fmt for fmt, path in outputs.items() if str(path) == "-"]
    if len(to_stdout) > 1:
        raise ConfigError("--json - and --csv - both write to stdout: send one of them to a file")
    # With tags on stdout, everything else goes to stderr so the output stays parseable.
    say = Console(stderr=True, soft_wrap=True) if to_stdout else console
    tagger = load_tagger(model, checkpoint, device)
    predictions = []
    for i, path in enumerate(files):
        prediction = predict_file(tagger, path, window, hop, pool.value, batch_size)
        predictions.append(prediction)
        if not to_stdout:
            table = Table(title=f"{path} ({len(prediction.spans)} windows, {pool.value} pooled)")
            table.add_column("tag")
            table.add_column("probability", justify="right")
            for label, prob in prediction.top(top):
                table.add_row(label, f"{prob:.3f}")
            _show(table)
        if plot is not None:
            target = plot if len(files) == 1 else plot.with_name(f"{plot.stem}-{i}{plot.suffix}")
            say.print(f"wrote {plot_timeline(prediction, target, top=min(top, 8))}")
    for fmt, path in outputs.items():
        if str(path) == "-":
            write_tags(predictions, sys.stdout, fmt, top)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as f:
            write_tags(predictions, f, fmt, top)
        say.print(f"wrote {path}")
    if timeline is not None:
        say.print(f"wrote {write_timeline(predictions, timeline)}")


@app.command("niah")
def niah_cmd(
    model: ModelArgument,
    needles: Annotated[Path, typer.Argument(help="Labelled manifest of needle clips.")],
    checkpoint: ModelCheckpointOption = None,
    device: DeviceOption = "cpu",
    durations: Annotated[str, typer.Option(help="Haystack durations in seconds, comma-separated.")] = "10,60,600,3600",
    positions: Annotated[str, typer.Option(help="Needle positions in [0, 1], comma-separated.")] = "0.1,0.5,0.9",
    haystack: Annotated[str, typer.Option(help="silence, noise, or a manifest of background audio.")] = "silence",
    snr: Annotated[float, typer.Option(help="Needle-to-noise ratio in dB (haystack noise).")] = 0.0,
    needle_seconds: Annotated[float, typer.Option(help="Needles are cut to at most this many seconds.")] = 10.0,
    max_needles: Annotated[int | None, typer.Option(help="Use only the first N labelled needles.")] = None,
    windowed: Annotated[bool, typer.Option(help="Also score by 10 s windows (max-pooled).")] = False,
    max_seconds: Annotated[float | None, typer.Option(help="Skip durations longer than this.")] = None,
    memory_limit_gb: Annotated[float | None, typer.Option(help="Address-space limit per duration (CPU).")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds allowed per duration (then: timeout).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the noise and background draws.")] = 0,
    compare: Annotated[
        list[str] | None,
        typer.Option(
            help="Another model on the same needles, in the same table and plot (e.g. the teacher of a student): "
            "a checkpoint, a teacher name, or TEACHER=WEIGHTS; repeatable."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Directory for niah.json and niah.png.")] = Path("niah"),
) -> None:
    """Audio Needle-In-A-Haystack (DASS paper): mAP of needles hidden in ever longer inputs, with time and memory."""
    from dataclasses import replace

    from kd.niah import NiahConfig, compare_niah, model_label, plot_niah, run_niah
    from kd.outputs import check_output_dir

    check_output_dir(out, "--out")
    config = NiahConfig(
        model=model,
        needles=str(needles),
        checkpoint=checkpoint,
        device=device,
        durations=_floats(durations, "--durations"),
        positions=_floats(positions, "--positions"),
        haystack=haystack,
        snr_db=snr,
        needle_seconds=needle_seconds,
        max_needles=max_needles,
        windowed=windowed,
        max_seconds=max_seconds,
        memory_limit_gb=memory_limit_gb,
        timeout_s=timeout,
        seed=seed,
    )
    if compare:
        others = [value.partition("=") for value in compare]
        configs = [config] + [replace(config, model=m, checkpoint=w or None) for m, _, w in others]
        reports = compare_niah(configs, out)
    else:
        reports = [run_niah(config, out)]
    title = f"Audio NIAH: {reports[0].needles} needles x {len(config.positions)} positions, {haystack}"
    table = Table(title=title)
    columns = ("model", "duration (s)", "mAP", "windowed mAP", "s / input", "peak RSS (GB)", "status")
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "status") else "right")
    for report in reports:
        for row in report.rows:
            table.add_row(
                model_label(report.config.model),
                f"{row.duration:g}",
                "-" if row.mAP is None else f"{row.mAP:.4f}",
                "-" if row.windowed_mAP is None else f"{row.windowed_mAP:.4f}",
                "-" if row.seconds_per_input is None else f"{row.seconds_per_input:.2f}",
                "-" if row.peak_rss_gb is None else f"{row.peak_rss_gb:.2f}",
                row.status,
            )
    _show(table)
    console.print(f"wrote {out / 'niah.json'} and {plot_niah(reports, out / 'niah.png')}")


def _floats(text: str, flag: str) -> list[float]:
    from kd.errors import ConfigError

    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated numbers") from None


@app.command("export")
def export_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="Student checkpoint made by kd train-student.")],
    format: Annotated[ExportFormat, typer.Option("--format", help="hf (Hugging Face directory) or onnx.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory (hf) or .onnx file.")],
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
) -> None:
    """Export a trained student to a Hugging Face directory or an ONNX file with a dynamic time axis."""
    from kd.export import export_student

    console.print(f"wrote {export_student(checkpoint, format.value, out, opset=opset)}")


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
