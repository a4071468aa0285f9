"""What several commands share: the choices the parser checks, common options, and how flags meet a --config file."""

from __future__ import annotations

from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated

import typer

from kd.core.errors import ConfigError


# Choices the parser checks and --help lists; tests/cli/test_config_files.py checks each matches the library's own
# list.
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
    cutmix = "cutmix"


class ExportFormat(StrEnum):
    hf = "hf"
    onnx = "onnx"


class Pool(StrEnum):
    max = "max"
    mean = "mean"


LabelsOption = Annotated[
    Path | None,
    typer.Option(
        "--labels", help="AudioSet class_labels_indices.csv (default: $KD_AUDIOSET_LABELS, else kd's shipped copy)."
    ),
]


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


ModelArgument = Annotated[
    str, typer.Argument(help="A student checkpoint (.pt from kd train-student) or a registered teacher name.")
]


ModelCheckpointOption = Annotated[
    str | None, typer.Option("--checkpoint", help="Teacher weights file (teachers only).")
]


DeviceOption = Annotated[str, typer.Option(help="Device (cpu, cuda, cuda:1).")]


def resolve_settings(
    ctx: typer.Context, cls: type, config_file: Path | None, flags: dict, rename: dict[str, str]
) -> tuple[dict, set[str]]:
    """Merges flag defaults, the --config file and the flags given; returns the settings and the names the user set.

    Args:
        flags: the command's parameters by name; `rename` maps parameter names to `cls` field names.
    """
    from kd.core.config_files import checked_values, merge_settings, read_config_file

    # By name: Typer vendors its own click, whose ParameterSource is not click's.
    sources = {p: getattr(ctx.get_parameter_source(p), "name", "DEFAULT") for p in flags}
    given = {rename.get(p, p) for p, source in sources.items() if source not in ("DEFAULT", "DEFAULT_MAP")}
    values = {rename.get(p, p): plain(v) for p, v in flags.items()}
    file_values = {}
    if config_file is not None:
        file_values = checked_values(cls, read_config_file(config_file, ctx.info_name or ""), config_file)
    return merge_settings(values, given, file_values)


def plain(value: object) -> object:
    """A flag's value as a config field holds it: paths as strings, choices as their names."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return value


def require(settings: dict, names: dict[str, str]) -> None:
    missing = [flag for name, flag in names.items() if settings.get(name) in (None, [])]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)}: give it on the command line or in --config")


def parse_checkpoints(values: list[str] | None, teachers: list[str]) -> dict[str, str]:
    out = {}
    for value in values or []:
        name, sep, path = value.rpartition("=")
        if not sep:
            if len(teachers) != 1:
                raise ConfigError(f"--checkpoint {value!r}: with several teachers write NAME=PATH")
            name, path = teachers[0], value
        out[name] = path
    return out


def teacher_paths(values: list[str] | None, flag: str) -> dict[str, str]:
    """TEACHER=PATH pairs as a dict; anything else is a one-line error naming the flag."""
    pairs = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"{flag} {value!r}: expected TEACHER=PATH")
        pairs[name] = path
    return pairs


def floats(text: str, flag: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated numbers") from None
