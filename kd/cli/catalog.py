"""`kd teachers`, `kd students` and `kd env`: what is registered, and what this machine can run."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from kd.cli.tables import console, show


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
    show(table)


def students_cmd() -> None:
    """List registered students with parameter counts and the scan backends usable here."""
    from kd.students import create_student, scan_kernel, student_names
    from kd.students.scan import scan_backends

    table = Table(title="students")
    for column in ("name", "parameters", "sample rate"):
        table.add_column(column)
    for name in student_names():
        model = create_student(name)
        table.add_row(name, f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M", str(model.sample_rate))
    show(table)
    for backend, reason in scan_backends().items():
        console.print(f"scan backend {backend}: " + ("[green]available[/]" if reason is None else f"[yellow]{reason}"))
    console.print(f"chunked scan on CPU, outside autograd: {scan_kernel.describe()}")


def env_cmd(
    json_out: Annotated[bool, typer.Option("--json", help="Print the same as one JSON object.")] = False,
) -> None:
    """Versions (kd, torch, torchaudio, zarr, ...), devices, scan backends and why one is unavailable, cache dirs."""
    import json

    from kd.use.environment import describe_environment

    sections = describe_environment()
    if json_out:
        print(json.dumps(sections, indent=1))
        return
    for title, rows in sections.items():
        table = Table(title=title, show_header=False, title_justify="left")
        for key, value in rows.items():
            table.add_row(key, value)
        show(table)
