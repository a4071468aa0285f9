"""docs/cli.md is what scripts/cli_reference.py makes of the Typer app: a flag added, renamed or re-documented in
the CLI without regenerating the page fails here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import typer

from kd.cli import app

REPO = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("cli_reference", REPO / "scripts" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_cli_md_is_generated_from_the_app():
    page = REPO / "docs" / "cli.md"
    assert page.is_file(), "docs/cli.md is missing: run python scripts/cli_reference.py"
    assert page.read_text() == load_script().render(), "docs/cli.md is stale: run python scripts/cli_reference.py"


def test_every_command_and_option_is_on_the_page(monkeypatch):
    monkeypatch.setenv("COLUMNS", "37")  # no terminal width reaches the page
    text = load_script().render()
    root = typer.main.get_command(app)

    def walk(group, path):
        for name, command in group.commands.items():
            yield f"{path} {name}", command
            if hasattr(command, "commands"):
                yield from walk(command, f"{path} {name}")

    commands = list(walk(root, "kd"))
    assert {"kd train-student", "kd store report"} <= {path for path, _ in commands}
    for path, command in commands:
        assert f"## `{path}`" in text
        for param in command.params:
            if param.param_type_name == "option" and not param.hidden:
                assert f"`{param.opts[0]}`" in text, (path, param.opts[0])


def test_check_mode_reports_a_stale_page(tmp_path, capsys):
    script = load_script()
    stale = tmp_path / "cli.md"
    stale.write_text("# old\n")
    assert script.main(["--check", "--out", str(stale)]) == 1
    assert "is stale: run python scripts/cli_reference.py" in capsys.readouterr().err
    assert script.main(["--out", str(stale)]) == 0 and script.main(["--check", "--out", str(stale)]) == 0
