"""`kd eval`, `kd predict` and `kd export`: a trained model measured, put to work, and shipped."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from kd.cli.options import DeviceOption, ExportFormat, ModelArgument, ModelCheckpointOption, Pool
from kd.cli.tables import console, show


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

    from kd.api import evaluate
    from kd.core.outputs import check_output_file

    if json_out is not None:
        check_output_file(json_out, "--json")
    report = evaluate(model, manifest, checkpoint, device)
    m = report.metrics
    table = Table(title=f"{model} on {manifest}", show_header=False)
    table.add_row("clips", f"{report.clips} ({report.seconds:.1f} s of audio, {report.wall_seconds:.1f} s wall)")
    table.add_row("mAP", f"{m.mAP:.4f}")
    table.add_row("mean AUC", f"{m.mean_auc:.4f}")
    table.add_row("d-prime", f"{m.d_prime:.3f}")
    table.add_row("classes scored", f"{m.classes_scored} ({m.classes_without_positives} without positives left out)")
    if report.unresolved:
        table.add_row("labels the model lacks", ", ".join(f"{k} ({v})" for k, v in report.unresolved.items()))
    show(table)
    rows = sorted(report.to_json()["per_class"], key=lambda r: -r["ap"])
    shown = rows if len(rows) <= top else rows[: top // 2] + rows[-(top - top // 2) :]
    per_class = Table(title=f"per-class AP ({len(shown)} of {len(rows)} classes)")
    for column in ("label", "positives", "AP", "AUC"):
        per_class.add_column(column, justify="left" if column == "label" else "right")
    for r in shown:
        auc = "-" if r["auc"] is None else f"{r['auc']:.3f}"
        per_class.add_row(r["label"], str(r["positives"]), f"{r['ap']:.3f}", auc)
    show(per_class)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.to_json(), indent=1), encoding="utf-8")
        console.print(f"wrote {json_out}")


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
    from kd.api import load_tagger, predict
    from kd.core.errors import ConfigError
    from kd.use.predict import plot_timeline, write_tags, write_timeline

    outputs = {fmt: path for fmt, path in (("json", json_out), ("csv", csv_out)) if path is not None}
    to_stdout = [fmt for fmt, path in outputs.items() if str(path) == "-"]
    if len(to_stdout) > 1:
        raise ConfigError("--json - and --csv - both write to stdout: send one of them to a file")
    # With tags on stdout, everything else goes to stderr so the output stays parseable.
    say = Console(stderr=True, soft_wrap=True) if to_stdout else console
    tagger = load_tagger(model, checkpoint, device)
    predictions = []
    for i, path in enumerate(files):
        [prediction] = predict(tagger, path, window=window, hop=hop, pool=pool.value, batch_size=batch_size)
        predictions.append(prediction)
        if not to_stdout:
            table = Table(title=f"{path} ({len(prediction.spans)} windows, {pool.value} pooled)")
            table.add_column("tag")
            table.add_column("probability", justify="right")
            for label, prob in prediction.top(top):
                table.add_row(label, f"{prob:.3f}")
            show(table)
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


def export_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="Student checkpoint made by kd train-student.")],
    format: Annotated[ExportFormat, typer.Option("--format", help="hf (Hugging Face directory) or onnx.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory (hf) or .onnx file.")],
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
) -> None:
    """Export a trained student to a Hugging Face directory or an ONNX file with a dynamic time axis."""
    from kd.use.export import export_student

    console.print(f"wrote {export_student(checkpoint, format.value, out, opset=opset)}")
