"""File modes that follow the umask. `tempfile.mkstemp` creates 0600 files whatever the umask, so a checkpoint or
download written to a temp file and renamed into place would be unreadable to a team sharing the filesystem."""

from __future__ import annotations

import os
from pathlib import Path


def current_umask() -> int:
    """The process umask, read from /proc where possible: setting it to read it races with threads creating files."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(fd: int) -> None:
    """Gives the open file `fd` the mode a plain `open()` would have: 0666 less the umask."""
    os.fchmod(fd, 0o666 & ~current_umask())


def apply_umask(path: str | os.PathLike) -> Path:
    """Gives `path` and everything under it the modes plain creation would (files 0666, directories 0777, less the
    umask), for writers that go through temp files or directories (0600 / 0700). Returns `path`."""
    path = Path(path)
    mask = current_umask()
    for each in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.chmod(each, (0o777 if each.is_dir() else 0o666) & ~mask)
    return path
