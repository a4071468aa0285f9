"""Training checkpoints: every piece of state under a named key, written atomically; and loading a trained student."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from kd.core.errors import WeightsError
from kd.core.labels import LabelSpace
from kd.core.leftovers import remove_dead, writer_tag
from kd.core.permissions import follow_umask

if TYPE_CHECKING:
    from kd.students.readout import Readout

CHECKPOINT_KIND = "kd-student"


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Writes `state` to a temporary file beside `path`, fsyncs it, then renames it over `path`.

    The temporary file is named after this process; ones left by writers that were killed are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(path)
    tmp = str(path.parent / f".{path.name}.{writer_tag()}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"kind": CHECKPOINT_KIND, **state}, f)
            f.flush()
            follow_umask(f.fileno())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def remove_dead_temporaries(path: str | os.PathLike) -> list[Path]:
    """Removes the temporary files of `path` (`.NAME.HOST-PID.tmp`) whose writer is provably dead (SIGKILLed)."""
    path = Path(path)
    return remove_dead(path.parent, f".{path.name}.{{tag}}.tmp")


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Loads a kd student checkpoint (weights_only: it holds tensors and plain values only)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own text runs to several lines and suggests weights_only=False, which would run the file's code.
        raise WeightsError(
            f"{path}: refused: it holds Python objects other than tensors and plain values, which kd never writes "
            "(not a kd checkpoint, possibly unsafe)"
        ) from None
    except Exception as e:  # torch raises many types for a corrupt or foreign file
        detail = (str(e).strip().splitlines() or [""])[0][:160]
        raise WeightsError(f"{path}: not a readable checkpoint ({type(e).__name__}: {detail})") from None
    if not isinstance(state, dict) or state.get("kind") != CHECKPOINT_KIND:
        raise WeightsError(f"{path}: not a kd student checkpoint (made by `kd train-student`)")
    return state


def load_student(path: str | os.PathLike, use_ema: bool = True) -> tuple[torch.nn.Module, LabelSpace]:
    """Rebuilds a trained student (EMA weights when present and `use_ema`, the readout its loss calls for) and its
    label space, in eval mode."""
    from kd.students import create_student

    state = read_checkpoint(path)
    model = create_student(state["student"], **state.get("student_kwargs", {}))
    weights = state["ema"] if use_ema and state.get("ema") is not None else state["model"]
    model.load_state_dict(weights, strict=True)
    model.readout = checkpoint_readout(state, model.num_classes)
    return model.eval(), LabelSpace.from_json(state["labels"])


def checkpoint_readout(state: dict[str, Any], num_classes: int) -> Readout:
    """The readout a checkpoint records; checkpoints from before kd recorded one get their loss's, over all classes."""
    from kd.students.readout import Readout, readout_kind

    if "readout" in state:
        return Readout.from_dict(num_classes, state["readout"])
    config = state.get("config") or {}
    return Readout(num_classes, readout_kind(config.get("loss", "bce"), config.get("label_weight", 0.0)))
