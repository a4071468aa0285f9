"""The `kd` command line, one module per command group (kd.cli.dump, kd.cli.train, ...), each command a thin call
into kd's library; the table below names every command. `from kd.cli import app` is the Typer app."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from kd.cli import catalog, data, dump, niah, store, train, use
from kd.core.errors import KdError


def _print_version(value: bool) -> None:
    if value:
        from kd.core.version import __version__

        print(f"kd {__version__}")
        raise typer.Exit()


def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print kd's version and exit.")
    ] = False,
) -> None:
    """Offline knowledge distillation of audio taggers: dump teachers once, train students many times."""


app = typer.Typer(
    name="kd",
    help="Offline knowledge distillation of audio taggers: dump teachers once, train students many times.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.callback()(root)
app.command("manifest")(data.manifest_cmd)
app.command("dump-teachers")(dump.dump_teachers_cmd)
app.command("plan")(dump.plan_cmd)
store_app = typer.Typer(help="Inspect and check logit stores.", no_args_is_help=True)
store_app.command("info")(store.store_info_cmd)
store_app.command("verify")(store.store_verify_cmd)
store_app.command("report")(store.store_report_cmd)
app.add_typer(store_app, name="store")
app.command("train-student")(train.train_student_cmd)
app.command("teachers")(catalog.teachers_cmd)
app.command("students")(catalog.students_cmd)
app.command("fetch-demo")(data.fetch_demo_cmd)
app.command("env")(catalog.env_cmd)
app.command("eval")(use.eval_cmd)
app.command("predict")(use.predict_cmd)
app.command("niah")(niah.niah_cmd)
app.command("export")(use.export_cmd)


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
