"""Training checkpoints: every piece of state under a named key, written atomically; and loading a trained student."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from kd.errors import WeightsError
from kd.labels import LabelSpace

CHECKPOINT_KIND = "kd-student"


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Writes `state` to a temporary file beside `path`, fsyncs it, then renames it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"kind": CHECKPOINT_KIND, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Loads a kd student checkpoint (weights_only: it holds tensors and plain values only)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt or foreign file
        raise WeightsError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or state.get("kind") != CHECKPOINT_KIND:
        raise WeightsError(f"{path}: not a kd student checkpoint (made by `kd train-student`)")
    return state


def load_student(path: str | os.PathLike, use_ema: bool = True) -> tuple[torch.nn.Module, LabelSpace]:
    """Rebuilds a trained student (EMA weights when present and `use_ema`) and its label space, in eval mode."""
    from kd.students import create_student

    state = read_checkpoint(path)
    model = create_student(state["student"], **state.get("student_kwargs", {}))
    weights = state["ema"] if use_ema and state.get("ema") is not None else state["model"]
    model.load_state_dict(weights, strict=True)
    return model.eval(), LabelSpace.from_json(state["labels"])
