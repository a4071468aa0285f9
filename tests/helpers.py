"""Helpers shared by tests: the real `kd` command in a subprocess, and tiny stores of real clips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_kd(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs `python -m kd ARGS` with a wide console (rich tables don't wrap) and returns the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "kd", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "250", **(env or {})},
    )


def start_kd(*args: str) -> subprocess.Popen:
    """Starts `python -m kd ARGS` without waiting (for kill and concurrency tests); output is piped as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "kd", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "250"},
    )


def dump_toy_store(root: Path, clips: list[Path], teachers: list[str], views: int, clip_seconds: float) -> Path:
    """A store of `clips` (each labelled Dog) dumped by tiny toy teachers in-process, k = 8, blocks of 2 clips."""
    from kd.dump import DumpConfig, dump_teachers

    manifest = root / "clips.csv"
    manifest.write_text("path,labels\n" + "".join(f"{c},Dog\n" for c in clips))
    path = root / "s.zarr"
    dump_teachers(
        DumpConfig(
            manifest=str(manifest),
            store=str(path),
            teachers=teachers,
            views=views,
            k=8,
            clip_seconds=clip_seconds,
            block_size=2,
            workers=0,
            progress=False,
        )
    )
    return path
