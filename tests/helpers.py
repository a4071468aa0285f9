"""Helpers shared by tests that run the real `kd` command in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys


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
