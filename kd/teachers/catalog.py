"""The teacher catalog: what every registered teacher is, listed without loading (or fetching) any weights.

Each family registers, next to a teacher's builder, a cheap `describe()` giving its card and how to count its
parameters (the architecture built on the meta device, or a count from its config). `describe_teachers()` turns
those into rows for `kd teachers`; listing every teacher takes well under a second per family.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from kd.core.weights import local_weights
from kd.teachers.base import Teacher, TeacherCard, register_teacher

NO_WEIGHTS = "bundled/none"


@dataclass(frozen=True)
class TeacherEntry:
    """What a family says about one registered teacher without building it with weights.

    Attributes:
        card: the card the built teacher will carry; None when only the checkpoint says (`onnx:PATH`, `ast/hf:...`).
        count_parameters: the number of parameters of the torch module; None when not a torch model or the
            architecture comes from the checkpoint.
        runtime: what runs the model: 'torch', 'tflite' or 'onnx'.
        weights_origin: where the weights come from when `card.weights.url` doesn't say (a release page, a hub id).
        cached: the weights in the kd cache, if present; default `local_weights(card.weights)`.
        description: for entries without a card.
    """

    card: TeacherCard | None
    count_parameters: Callable[[], int] | None = None
    runtime: str = "torch"
    weights_origin: str | None = None
    cached: Callable[[], Path | None] | None = None
    description: str = ""


@dataclass(frozen=True)
class TeacherRow:
    """One line of the catalog; None where a value is only known once a checkpoint is given."""

    name: str
    sample_rate: int | None
    num_classes: int | None
    label_space: str | None
    num_parameters: int | None
    runtime: str
    weights_from: str
    weights_present: bool | None  # None: the teacher has no weights file (toy) or names it itself (onnx:PATH)
    description: str


ENTRIES: dict[str, Callable[[], TeacherEntry]] = {}


def register_described(name: str, build: Callable[..., Teacher], describe: Callable[[], TeacherEntry]) -> None:
    """Registers `build` as teacher `name` and `describe` as its catalog entry."""
    register_teacher(name)(build)
    ENTRIES[name] = describe


@cache
def meta_parameter_count(module_class: type[torch.nn.Module], *args: Hashable) -> int:
    """Parameters of `module_class(*args)`, built on the meta device (no memory, no initialisation); cached.

    Front ends compute their filterbanks when built, which the meta device cannot do: pass the network alone (kd's
    front ends have buffers but no parameters).
    """
    with torch.device("meta"):
        module = module_class(*args)
    return sum(p.numel() for p in module.parameters())


def describe_teachers(checkpoints: Mapping[str, str | os.PathLike] | None = None) -> list[TeacherRow]:
    """A row for every registered teacher, in name order, without loading weights.

    Args:
        checkpoints: explicit weight paths by teacher name (as `--checkpoint` would give); a teacher named here
            counts as present when its path exists, whatever the kd cache holds.
    """
    from kd.teachers import teacher_names

    checkpoints = checkpoints or {}
    rows = []
    for name in teacher_names():
        describe = ENTRIES.get(name)
        if describe is None:  # a teacher registered with plain register_teacher: listed, but nothing is known
            rows.append(TeacherRow(name, None, None, None, None, "unknown", "unknown", None, "(not described)"))
            continue
        rows.append(_row(name, describe(), checkpoints.get(name)))
    return rows


def _row(name: str, entry: TeacherEntry, checkpoint: str | os.PathLike | None) -> TeacherRow:
    card = entry.card
    weights = card.weights if card is not None else None
    origin = entry.weights_origin or (weights.url if weights is not None else None) or NO_WEIGHTS
    if checkpoint is not None:
        present: bool | None = Path(checkpoint).exists()
    elif entry.cached is not None:
        present = entry.cached() is not None
    elif weights is not None:
        present = local_weights(weights) is not None
    else:
        present = None
    return TeacherRow(
        name=name,
        sample_rate=card.sample_rate if card else None,
        num_classes=card.num_classes if card else None,
        label_space=card.label_space if card else None,
        num_parameters=entry.count_parameters() if entry.count_parameters is not None else None,
        runtime=entry.runtime,
        weights_from=origin,
        weights_present=present,
        description=card.description if card else entry.description,
    )
