"""Teachers: one module per family, all registered by name in `TEACHERS`."""

from __future__ import annotations

from kd.teachers.base import TEACHERS, Teacher, TeacherCard, TorchTeacher, register_teacher

__all__ = ["TEACHERS", "Teacher", "TeacherCard", "TorchTeacher", "create_teacher", "register_teacher"]


def create_teacher(name: str, **kwargs: object) -> Teacher:
    """Builds the teacher registered as `name` (e.g. 'efficientat/mn04_as'); kwargs go to its builder."""
    _import_families()
    return TEACHERS.create(name, **kwargs)


def teacher_names() -> list[str]:
    _import_families()
    return TEACHERS.names()


# Importing a family module registers its teachers; families load lazily so `kd --help` stays fast.
FAMILIES = ("toy", "efficientat", "yamnet", "ast", "ced", "beats", "passt", "htsat", "onnx", "dass")


def _import_families() -> None:
    import importlib

    for family in FAMILIES:
        importlib.import_module(f"kd.teachers.{family}")
