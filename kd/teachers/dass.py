"""A trained DASS as a teacher: a kd student checkpoint (`dass:PATH`) or a released DASS checkpoint (`dass/small`).

Released checkpoints use the original DASS repository's or the Hugging Face port's key names; both are converted
strictly by `kd.students.convert.load_upstream_dass`. The front end is the student's own (16 kHz kaldi fbank,
128 bins, DASS normalisation), so a distilled DASS can teach the next generation.
"""

from __future__ import annotations

import os
from pathlib import Path

from kd.core.errors import WeightsError
from kd.core.labels import audioset_labels
from kd.core.weights import WeightSource, file_sha256, resolve_weights
from kd.teachers.base import TeacherCard, TorchTeacher
from kd.teachers.catalog import TeacherEntry, register_described

# Upstream publishes its checkpoints on a release page without checksums: fetch them by hand, pass --checkpoint.
RELEASES = "https://github.com/Saurabhbhati/DASS (README: pretrained checkpoints)"
SIZES = {"dass/small": "dass-small", "dass/medium": "dass-medium"}


def _card(name: str, student, weights: WeightSource | None, description: str) -> TeacherCard:
    return TeacherCard(
        name=name,
        sample_rate=student.sample_rate,
        num_classes=student.num_classes,
        label_space="audioset",
        frontend=student.frontend.settings(),
        weights=weights,
        description=description,
    )


def _released(name: str, checkpoint: str | os.PathLike | None = None) -> TorchTeacher:
    from kd.students import create_student
    from kd.students.convert import load_upstream_dass

    source = WeightSource(filename=f"{name.replace('/', '_')}.pth")
    if checkpoint is None:
        try:
            checkpoint = resolve_weights(source)
        except WeightsError:
            raise WeightsError(
                f"{name}: no weights; download a released DASS checkpoint ({RELEASES}) and pass --checkpoint PATH"
            ) from None
    model = create_student(SIZES[name])
    layout = load_upstream_dass(model, checkpoint)
    card = _card(name, model, source, f"released DASS ({SIZES[name]}, {layout} key layout)")
    return TorchTeacher(card, audioset_labels(), model, file_sha256(checkpoint))


def _trained(checkpoint: str | os.PathLike | None = None) -> TorchTeacher:
    """A student trained by `kd train-student` (its EMA weights), as `dass:PATH`."""
    from kd.students.checkpoint import load_student, read_checkpoint

    if checkpoint is None:
        raise WeightsError("teacher 'dass' needs a checkpoint: name it as dass:PATH (a kd train-student last.pt)")
    model, labels = load_student(checkpoint)
    student = read_checkpoint(checkpoint)["student"]
    card = _card(f"dass:{checkpoint}", model, None, f"{student} trained by kd ({Path(checkpoint).name})")
    card = TeacherCard(**{**card.__dict__, "label_space": labels.name})
    return TorchTeacher(card, labels, model, file_sha256(checkpoint))


def _describe_released(name: str) -> TeacherEntry:
    from kd.students import create_student

    model = create_student(SIZES[name])
    return TeacherEntry(
        _card(name, model, WeightSource(filename=f"{name.replace('/', '_')}.pth"), f"released DASS ({SIZES[name]})"),
        lambda: sum(p.numel() for p in model.parameters()),
        weights_origin=f"manual: {RELEASES}",
    )


for _name in SIZES:
    register_described(
        _name,
        lambda checkpoint=None, _n=_name: _released(_n, checkpoint),
        lambda _n=_name: _describe_released(_n),
    )
register_described(
    "dass",
    _trained,
    lambda: TeacherEntry(
        None,
        weights_origin="checkpoint required (dass:/path/last.pt)",
        description="a DASS trained by kd train-student",
    ),
)
