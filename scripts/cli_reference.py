"""Writes docs/cli.md, the reference of every `kd` command, from the Typer app itself, so it cannot drift.

    python scripts/cli_reference.py           # rewrite docs/cli.md
    python scripts/cli_reference.py --check   # exit 1 if docs/cli.md differs from what the app says

The page is built from the click commands Typer makes of `kd.cli.app` (names, docstrings, arguments, options,
defaults and help texts), never from rich's terminal rendering, so it is the same on every machine and terminal
width. Commands are listed alphabetically by their full name, so the page does not depend on which module registers
which command. tests/test_cli_reference.py fails when the checked-in page is stale.
"""

from __future__ import annotations

import argparse
import enum
import inspect
import sys
import types
import typing
from pathlib import Path, PurePath

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "cli.md"
HEADER = """# Command-line reference

Generated from the Typer app (`kd.cli.app`) by `python scripts/cli_reference.py`; do not edit by hand
(tests/test_cli_reference.py fails when this page and the app disagree). What the commands are for and how they fit
together: [getting-started.md](getting-started.md) and [concepts.md](concepts.md). Every command also takes
`--help`. Bad input (a missing file, an unreadable clip, a store made with other settings) gives one line starting
`kd: error:` and exit code 2; nothing already written is damaged.
"""


def _cell(text: object) -> str:
    """One markdown table cell: a single line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _plain(annotation: object) -> object:
    """The annotation without None, list[...] or Annotated: the type one value has."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0] if len(args) == 1 else annotation
            if len(args) != 1:
                return annotation
        elif origin in (list, tuple, set):
            annotation = typing.get_args(annotation)[0]
        else:
            return annotation


_NAMES = {int: "integer", float: "float", str: "text", bool: "boolean"}


def _type(param) -> str:
    """What one value of the parameter is: integer, float, text, path, boolean or a choice `a`, `b`."""
    descriptor = getattr(param, "type_descriptor", None)  # typer >= 0.24 (its own copy of click)
    if descriptor is not None:
        annotation = _plain(descriptor.annotation)
        choices = descriptor.choices if descriptor.is_choice else None
    else:  # click's parameter types
        annotation, choices = None, getattr(param.type, "choices", None)
    if choices:
        return " \\| ".join(f"`{c.value if isinstance(c, enum.Enum) else c}`" for c in choices)
    if isinstance(annotation, type) and issubclass(annotation, PurePath):
        return "path"
    if annotation in _NAMES:
        return _NAMES[annotation]
    if annotation is None:
        return {"integer": "integer", "float": "float", "boolean": "boolean"}.get(param.type.name, param.type.name)
    return getattr(annotation, "__name__", str(annotation))


def _value(value: object) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(v) for v in value)
    return f"`{value}`"


def _is_flag(param) -> bool:
    return bool(getattr(param, "is_flag", False))


def _default(param) -> str:
    if param.required:
        return "required"
    shown = getattr(param, "show_default", True)
    if isinstance(shown, str):
        return _cell(shown)
    if shown is False or param.default is None or param.default == [] or callable(param.default):
        return ""
    if _is_flag(param):
        if param.secondary_opts:
            return f"`{(param.opts if param.default else param.secondary_opts)[0]}`"
        return "on" if param.default else "off"
    return _value(param.default)


def _flags(param) -> str:
    names = ", ".join(f"`{name}`" for name in param.opts)
    if param.secondary_opts:
        names += " / " + ", ".join(f"`{name}`" for name in param.secondary_opts)
    return names + (" (repeatable)" if param.multiple else "")


def _usage(path: str, command) -> str:
    pieces = [path]
    if any(p.param_type_name == "option" and not p.hidden for p in command.params):
        pieces.append("[OPTIONS]")
    for param in command.params:
        if param.param_type_name != "argument":
            continue
        name = (param.metavar or param.name).upper() + ("..." if param.nargs == -1 else "")
        pieces.append(name if param.required else f"[{name}]")
    if hasattr(command, "list_commands"):
        pieces.append("COMMAND [ARGS]...")
    return " ".join(pieces)


def _section(path: str, command) -> list[str]:
    lines = [f"## `{path}`", ""]
    if command.help:
        lines += [inspect.cleandoc(command.help), ""]
    lines += ["```", _usage(path, command), "```", ""]
    params = [p for p in command.params if not getattr(p, "hidden", False)]
    arguments = [p for p in params if p.param_type_name == "argument"]
    options = [p for p in params if p.param_type_name == "option"]
    if arguments:
        lines += ["| argument | type | help |", "|---|---|---|"]
        for p in arguments:
            name = (p.metavar or p.name).upper() + (" (one or more)" if p.nargs == -1 else "")
            need = "" if p.required else " (optional)"
            lines.append(f"| `{name}`{need} | {_type(p)} | {_cell(p.help or '')} |")
        lines.append("")
    if options:
        lines += ["| option | type | default | help |", "|---|---|---|---|"]
        for p in options:
            kind = "flag" if _is_flag(p) else _type(p)
            help_text = p.help or ""
            if p.envvar:
                envvars = [p.envvar] if isinstance(p.envvar, str) else p.envvar
                help_text += " (environment: " + ", ".join(f"`{e}`" for e in envvars) + ")"
            lines.append(f"| {_flags(p)} | {kind} | {_default(p)} | {_cell(help_text)} |")
        lines.append("")
    return lines


def _walk(command, path: str, ctx) -> list[tuple[str, object]]:
    """(full name, command) for the command and everything under it, subcommands alphabetically."""
    found = [(path, command)]
    if hasattr(command, "list_commands"):
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            if sub is None or getattr(sub, "hidden", False):
                continue
            found += _walk(sub, f"{path} {name}", type(ctx)(sub, info_name=name, parent=ctx))
    return found


def render() -> str:
    """The whole page, from `kd.cli.app`."""
    import typer

    from kd.cli import app

    root = typer.main.get_command(app)
    context_class = getattr(root, "context_class", None)
    ctx = context_class(root, info_name="kd")
    commands = _walk(root, "kd", ctx)
    lines = [HEADER, "| command | what it does |", "|---|---|"]
    for path, command in commands[1:]:
        anchor = path.replace(" ", "-").lower()
        summary = inspect.cleandoc(command.help or "").split("\n\n")[0]
        lines.append(f"| [`{path}`](#{anchor}) | {_cell(summary)} |")
    lines.append("")
    for path, command in commands:
        lines += _section(path, command)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/cli_reference.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PAGE, help="where the page goes (default: docs/cli.md)")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if the page is stale")
    args = parser.parse_args(argv)
    page = render()
    if args.check:
        if not args.out.is_file() or args.out.read_text() != page:
            print(f"{args.out} is stale: run python scripts/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(page)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
