"""kd's own cache directory: `$KD_CACHE`, by default `~/.cache/kd` (weights, demo clips, compiled kernels)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "KD_CACHE"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "kd"))
