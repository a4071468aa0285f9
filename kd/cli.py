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
    ] = 50,
    policy: Annotated[str, typer.Option(help="Augmentation policy: default, clean or strong.")] = "default",
    clip_seconds: Annotated[
        float | None, typer.Option(help="View length in seconds (default: the policy's, 10 s).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Views per teacher forward.")] = 16,
    workers: Annotated[
        int | None, typer.Option(help="DataLoader workers decoding and augmenting (default: cores - 1, at most 4).")
    ] = None,
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
        clip_seconds=clip_seconds,
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


@app.command("train-student")
def train_student_cmd(
    store: Annotated[Path, typer.Argument(help="Logit store made by `kd dump-teachers`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory: checkpoints, config, metrics.jsonl.")],
    student: Annotated[str, typer.Option(help="Registered student (see `kd students`).")] = "dass-tiny",
    teachers: Annotated[
        str | None, typer.Option(help="Ensemble as NAME[:WEIGHT],... from the store's teachers (default: all, equal).")
    ] = None,
    temperature: Annotated[float, typer.Option(help="Temperature applied to teacher logits.")] = 1.0,
    combine: Annotated[str, typer.Option(help="Combine teachers by mean of probabilities (prob) or logits.")] = "prob",
    loss: Annotated[str, typer.Option(help="bce (multi-label soft targets) or kl (over classes).")] = "bce",
    label_weight: Annotated[
        float, typer.Option(help="Weight of ground-truth labels from the manifest (0 = none).")
    ] = 0.0,
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 1000,
    batch_size: Annotated[int, typer.Option(help="Views per batch (per process).")] = 16,
    accumulate: Annotated[int, typer.Option(help="Batches per optimiser step.")] = 1,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 5e-4,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay (not on norms and biases).")] = 0.05,
    warmup_steps: Annotated[int, typer.Option(help="Linear warm-up steps before cosine decay.")] = 100,
    grad_clip: Annotated[float, typer.Option(help="Gradient norm clip.")] = 1.0,
    ema_decay: Annotated[float, typer.Option(help="EMA decay of the weights (evaluation uses the EMA).")] = 0.999,
    drop_path: Annotated[float, typer.Option(help="Stochastic depth rate of the student.")] = 0.1,
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
    resume: Annotated[bool, typer.Option(help="Continue from OUT/last.pt if it exists.")] = False,
) -> None:
    """Train a student label-free from a logit store, with the teacher ensemble chosen now."""
    from kd.train import TrainConfig, train_student

    config = TrainConfig(
        store=str(store),
        out=str(out),
        student=student,
        teachers=teachers,
        temperature=temperature,
        combine=combine,
        loss=loss,
        label_weight=label_weight,
        steps=steps,
        batch_size=batch_size,
        accumulate=accumulate,
        lr=lr,
        weight_decay=weight_decay,
        warmup_steps=warmup_steps,
        grad_clip=grad_clip,
        ema_decay=ema_decay,
        drop_path=drop_path,
        workers=workers,
        seed=seed,
        checkpoint_every=checkpoint_every,
        val_fraction=val_fraction,
        val_every=val_every,
        val_manifest=str(val_manifest) if val_manifest else None,
        log_every=log_every,
        device=device,
        allow_partial=allow_partial,
        audio_root=str(audio_root) if audio_root else None,
        resume=resume,
    )
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
    console.print(table)


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
    console.print(table)
    for backend, reason in scan_backends().items():
        console.print(f"scan backend {backend}: " + ("[green]available[/]" if reason is None else f"[yellow]{reason}"))


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
    console.print(table)
    rows = sorted(report.to_json()["per_class"], key=lambda r: -r["ap"])
    shown = rows if len(rows) <= top else rows[: top // 2] + rows[-(top - top // 2) :]
    per_class = Table(title=f"per-class AP ({len(shown)} of {len(rows)} classes)")
    for column in ("label", "positives", "AP", "AUC"):
        per_class.add_column(column, justify="left" if column == "label" else "right")
    for r in shown:
        auc = "-" if r["auc"] is None else f"{r['auc']:.3f}"
        per_class.add_row(r["label"], str(r["positives"]), f"{r['ap']:.3f}", auc)
    console.print(per_class)
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
    top: Annotated[int, typer.Option(help="Tags shown per file.")] = 10,
    window: Annotated[float, typer.Option(help="Window length in seconds (each is decoded on its own).")] = 10.0,
    hop: Annotated[float | None, typer.Option(help="Seconds between windows (default: the window).")] = None,
    pool: Annotated[str, typer.Option(help="Clip-level score over windows: max or mean.")] = "max",
    batch_size: Annotated[int, typer.Option(help="Windows per forward pass.")] = 8,
    timeline: Annotated[Path | None, typer.Option(help="Write every window's scores (.csv or .json).")] = None,
    plot: Annotated[
        Path | None, typer.Option(help="PNG of the top tags over time (several files: PATH stem + index).")
    ] = None,
) -> None:
    """Top tags with probabilities for each file, by windowed inference in bounded memory."""
    from kd.models import load_tagger
    from kd.predict import plot_timeline, predict_file, write_timeline

    tagger = load_tagger(model, checkpoint, device)
    predictions = []
    for i, path in enumerate(files):
        prediction = predict_file(tagger, path, window, hop, pool, batch_size)
        predictions.append(prediction)
        table = Table(title=f"{path} ({len(prediction.spans)} windows, {pool} pooled)")
        table.add_column("tag")
        table.add_column("probability", justify="right")
        for label, prob in prediction.top(top):
            table.add_row(label, f"{prob:.3f}")
        console.print(table)
        if plot is not None:
            target = plot if len(files) == 1 else plot.with_name(f"{plot.stem}-{i}{plot.suffix}")
            console.print(f"wrote {plot_timeline(prediction, target, top=min(top, 8))}")
    if timeline is not None:
        console.print(f"wrote {write_timeline(predictions, timeline)}")


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
    out: Annotated[Path, typer.Option(help="Directory for niah.json and niah.png.")] = Path("niah"),
) -> None:
    """Audio Needle-In-A-Haystack (DASS paper): mAP of needles hidden in ever longer inputs, with time and memory."""
    from kd.niah import NiahConfig, plot_niah, run_niah

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
    report = run_niah(config, out)
    title = f"Audio NIAH: {model}, {report.needles} needles x {len(config.positions)} positions, {haystack}"
    table = Table(title=title)
    for column in ("duration (s)", "mAP", "windowed mAP", "s / input", "peak RSS (GB)", "status"):
        table.add_column(column, justify="left" if column == "status" else "right")
    for row in report.rows:
        table.add_row(
            f"{row.duration:g}",
            "-" if row.mAP is None else f"{row.mAP:.4f}",
            "-" if row.windowed_mAP is None else f"{row.windowed_mAP:.4f}",
            "-" if row.seconds_per_input is None else f"{row.seconds_per_input:.2f}",
            "-" if row.peak_rss_gb is None else f"{row.peak_rss_gb:.2f}",
            row.status,
        )
    console.print(table)
    console.print(f"wrote {out / 'niah.json'} and {plot_niah(report, out / 'niah.png')}")


def _floats(text: str, flag: str) -> list[float]:
    from kd.errors import ConfigError

    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated numbers") from None


@app.command("export")
def export_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="Student checkpoint made by kd train-student.")],
    format: Annotated[str, typer.Option("--format", help="hf (Hugging Face directory) or onnx.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory (hf) or .onnx file.")],
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
) -> None:
    """Export a trained student to a Hugging Face directory or an ONNX file with a dynamic time axis."""
    from kd.export import export_student

    console.print(f"wrote {export_student(checkpoint, format, out, opset=opset)}")


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
