"""Config files for commands (`--config run.toml`): read, check against a config dataclass, merge with flags.

A file is TOML or JSON holding a config dataclass's fields (`kd.train.TrainConfig`, `kd.dump.DumpConfig`), either at
the top level or in a table named after the command (`[train-student]`, `[dump-teachers]`), so one file can hold a
whole experiment. Keys may be written with `-` or `_`. Flags given on the command line override the file; the file
overrides the flags' defaults. A run's saved `config.json` (or `--print-config` output) is a valid file. Relative
paths in a file are relative to the working directory, exactly as on the command line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import types
import typing
from collections.abc import Iterable
from pathlib import Path

from kd.core.errors import ConfigError


def read_config_file(path: str | os.PathLike, section: str) -> dict:
    """The key-value pairs of `path` (TOML or JSON), from its `section` table if it has one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"--config {path}: cannot read it ({e.strerror})") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise ConfigError(f"--config {path}: not valid {kind} ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a table of settings, found {type(data).__name__}")
    if isinstance(data.get(section), dict):
        data = data[section]
    return {str(key).replace("-", "_"): value for key, value in data.items()}


def checked_values(cls: type, values: dict, source: object) -> dict:
    """`values` after checking each is a field of the dataclass `cls` with a value of its type.

    Args:
        source: where the values come from (a path), named in messages.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(
            f"--config {source}: unknown setting {', '.join(map(repr, unknown))}; known: {', '.join(sorted(fields))}"
        )
    for key, value in values.items():
        if not _has_type(value, hints[key]):
            raise ConfigError(f"--config {source}: {key} = {value!r} is not of type {_type_name(hints[key])}")
    return {key: float(value) if hints[key] is float else value for key, value in values.items()}


def merge_settings(flags: dict, given: Iterable[str], file_values: dict) -> tuple[dict, set[str]]:
    """Flags' defaults, then the file, then the flags given on the command line.

    Returns:
        The merged settings and the names the user set (in the file or by a flag), as opposed to defaults.
    """
    given = set(given)
    merged = {**flags, **file_values, **{key: flags[key] for key in given}}
    return merged, given | set(file_values)


def config_json(config: object) -> str:
    """A config dataclass as JSON, readable back with `--config`."""
    return json.dumps(dataclasses.asdict(config), indent=2)


def _has_type(value: object, hint: object) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(hint) or (object,)
        return isinstance(value, list) and all(_has_type(v, item) for v in value)
    if origin is dict:
        key, item = typing.get_args(hint) or (object, object)
        return isinstance(value, dict) and all(_has_type(k, key) and _has_type(v, item) for k, v in value.items())
    if hint is object:
        return True
    return isinstance(value, origin or hint)


def _type_name(hint: object) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
