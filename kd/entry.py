"""The `kd` executable's first step: check that torch and torchaudio load before the CLI imports them.

A broken install (for example a torchaudio build for another torch, which fails on an undefined symbol) must give
the user one line and the fix, not a traceback from deep inside an import.
"""

from __future__ import annotations

import sys

REINSTALL_HINT = "reinstall with scripts/setup-env.sh"


def broken_runtime() -> str | None:
    """Returns why torch or torchaudio's compiled code cannot be used, or None when both load."""
    for module in ("torch", "torchaudio"):
        try:
            __import__(module)
        except Exception as e:  # ImportError, OSError (undefined symbol), RuntimeError from extension init
            return f"{module} failed to load ({_first_line(e)})"
    try:
        import torch
        from torchaudio.compliance.kaldi import fbank

        fbank(torch.zeros(1, 400), num_mel_bins=23)
    except Exception as e:
        return f"torchaudio failed to run ({_first_line(e)})"
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def main() -> None:
    reason = broken_runtime()
    if reason is not None:
        print(f"kd: error: {reason}; {REINSTALL_HINT}", file=sys.stderr)
        sys.exit(2)
    from kd.cli import main as cli_main

    cli_main()
