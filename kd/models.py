"""One way to name a model for every inference command: a student checkpoint path or a registered teacher name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from kd.errors import ConfigError
from kd.labels import LabelSpace


@dataclass
class Tagger:
    """A model ready for inference: waveforms [B, T] at `sample_rate` -> logits [B, len(labels)] (float32, CPU).

    Attributes:
        name: what the user named (checkpoint path or teacher name).
        kind: 'student' or 'teacher'.
        sample_rate: input rate in Hz.
        labels: the output classes, in output order.
        device: where the model runs.
        module: the torch module when there is one (students and torch teachers), else None.
    """

    name: str
    kind: str
    sample_rate: int
    labels: LabelSpace
    device: torch.device
    forward: Callable[[torch.Tensor], torch.Tensor]
    module: torch.nn.Module | None = None

    def __call__(self, waves: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.forward(waves.to(self.device)).float().cpu()


def load_tagger(spec: str, checkpoint: str | None = None, device: str | torch.device = "cpu") -> Tagger:
    """Builds the tagger `spec` names, in eval mode on `device`.

    Args:
        spec: a student checkpoint written by `kd train-student` (an existing file), or a registered teacher name
            such as 'efficientat/mn04_as' or 'yamnet'.
        checkpoint: the teacher's weights file (teachers only; a student checkpoint is the spec itself).
        device: torch device.
    """
    device = torch.device(device)
    if Path(spec).is_file():
        if checkpoint is not None:
            raise ConfigError(f"{spec}: a student checkpoint carries its own weights; drop --checkpoint")
        from kd.checkpoint import load_student

        model, labels = load_student(spec)
        model.to(device)
        return Tagger(spec, "student", int(model.sample_rate), labels, device, model, module=model)
    from kd.teachers import create_teacher

    if spec.endswith((".pt", ".pth", ".ckpt")):
        raise ConfigError(f"{spec}: student checkpoint not found (write one with `kd train-student`)")
    try:
        teacher = create_teacher(spec, checkpoint=checkpoint)
    except ConfigError as e:
        raise ConfigError(f"{spec}: not a checkpoint file; {e}") from None
    teacher = teacher.to(device)
    module = getattr(teacher, "module", None)
    return Tagger(spec, "teacher", int(teacher.card.sample_rate), teacher.labels, device, teacher.logits, module)
