"""`kd niah`: the Audio Needle-In-A-Haystack test of a model on ever longer inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from kd.cli.options import DeviceOption, ModelArgument, ModelCheckpointOption, floats
from kd.cli.tables import console, show


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

    from kd.core.outputs import check_output_dir
    from kd.use.niah import NiahConfig, compare_niah, model_label, plot_niah, run_niah

    check_output_dir(out, "--out")
    config = NiahConfig(
        model=model,
        needles=str(needles),
        checkpoint=checkpoint,
        device=device,
        durations=floats(durations, "--durations"),
        positions=floats(positions, "--positions"),
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
    show(table)
    console.print(f"wrote {out / 'niah.json'} and {plot_niah(reports, out / 'niah.png')}")
