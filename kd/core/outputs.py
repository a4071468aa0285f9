"""Output paths checked before any work starts: a folder where a file goes (or the reverse) is one line, not a
traceback after minutes of work."""

from __future__ import annotations

import os
from pathlib import Path

from kd.core.errors import ConfigError


def _blocking_parent(path: Path) -> Path | None:
    return next((p for p in path.parents if p.exists() and not p.is_dir()), None)


def check_output_file(path: str | os.PathLike, flag: str) -> Path:
    """`path` can be written as a file: it is not a folder and no folder above it is a file."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a folder; give a file path")
    blocking = _blocking_parent(path)
    if blocking is not None:
        raise ConfigError(f"{flag} {path}: {blocking} is a file, not a folder")
    return path


def check_output_dir(path: str | os.PathLike, flag: str) -> Path:
    """`path` can be a folder: it is not a file and no folder above it is a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path}: is a file; give a folder path")
    blocking = _blocking_parent(path)
    if blocking is not None:
        raise ConfigError(f"{flag} {path}: {blocking} is a file, not a folder")
    return path
