"""Device names checked before anything is built or written, so a missing GPU is one line, not a deep traceback."""

from __future__ import annotations

import torch

from kd.core.errors import ConfigError


def check_device(name: str, flag: str = "--device") -> torch.device:
    """The torch device `name` (cpu, cuda, cuda:N, mps) after checking this machine has it."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"{flag} {name!r}: not a device name (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"{flag} {name!r}: this machine has no usable CUDA device; use --device cpu")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"{flag} {name!r}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{flag} {name!r}: MPS is not available here; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{flag} {name!r}: kd runs on cpu, cuda or mps")
    return device
