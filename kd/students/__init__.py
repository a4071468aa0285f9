"""Students: registered by name in `STUDENTS`; each maps a waveform batch at its sample rate to logits."""

from __future__ import annotations

import torch

from kd.core.registry import Registry

STUDENTS: Registry[torch.nn.Module] = Registry("student")
register_student = STUDENTS.register


def create_student(name: str, **kwargs: object) -> torch.nn.Module:
    """Builds the student registered as `name` (e.g. 'dass-tiny'); kwargs such as num_classes go to its builder."""
    _import_families()
    return STUDENTS.create(name, **kwargs)


def student_names() -> list[str]:
    _import_families()
    return STUDENTS.names()


def _import_families() -> None:
    from kd.students import dass  # noqa: F401
