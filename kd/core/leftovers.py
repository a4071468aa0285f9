"""Temporary files, folders and locks named after the process that made them, and removing those it left behind.

A writer killed with SIGKILL cannot clean up. Everything kd writes temporarily carries its writer's host and pid, so a
later run can tell, for sure, that the writer is gone (same host, no such process) and remove what it left. Anything
from another host, or from a live process, is kept.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path


def writer_tag() -> str:
    """This process as `host-pid`, the suffix of its temporary names."""
    return f"{socket.gethostname()}-{os.getpid()}"


def is_dead(host: str, pid: int) -> bool:
    """True only when `pid` on `host` is provably not running: the host is this one and the process is gone."""
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def tag_is_dead(tag: str) -> bool:
    """`is_dead` for a `host-pid` tag (host names may contain '-'); a malformed tag is never called dead."""
    host, _, pid = tag.rpartition("-")
    return bool(host) and pid.isdigit() and is_dead(host, int(pid))


def remove_dead(parent: Path, pattern: str) -> list[Path]:
    """Removes entries of `parent` whose name matches `pattern` and whose writer is provably dead.

    Args:
        pattern: the entry name with `{tag}` where the writer's `host-pid` stands and `*` for any text, e.g.
            `store.zarr.tmp-{tag}` or `*.tmp-{tag}`.

    Returns:
        The entries removed.
    """
    head, _, tail = pattern.partition("{tag}")
    regex = re.compile(
        ".*".join(map(re.escape, head.split("*"))) + "(?P<tag>.+)" + ".*".join(map(re.escape, tail.split("*")))
    )
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = regex.fullmatch(entry.name)
        if match and tag_is_dead(match["tag"]):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
