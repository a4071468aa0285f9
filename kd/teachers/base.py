"""The teacher interface: a frozen card describing the model, and a callable from waveforms to logits."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from kd.core.labels import LabelSpace
from kd.core.registry import Registry
from kd.core.weights import WeightSource


@dataclass(frozen=True)
class TeacherCard:
    """What a teacher is, independent of its weights: the store records it and readers compare it."""

    name: str
    sample_rate: int
    num_classes: int
    label_space: str
    frontend: dict[str, Any] = field(default_factory=dict)
    weights: WeightSource | None = None
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Teacher(ABC):
    """A tagger that maps a waveform batch at `card.sample_rate` to logits over `labels`.

    Attributes:
        card: the frozen description.
        labels: the teacher's own label space (the store maps it onto its own).
        checkpoint_sha256: sha256 of the weights file actually loaded ('' for weightless test teachers).
    """

    card: TeacherCard
    labels: LabelSpace
    checkpoint_sha256: str

    @abstractmethod
    def logits(self, waves: torch.Tensor) -> torch.Tensor:
        """Maps `waves` [batch, samples] (float32, mono, at the card's rate) to logits [batch, classes]."""

    def to(self, device: torch.device | str) -> Teacher:
        return self

    def num_parameters(self) -> int | None:
        return None


class TorchTeacher(Teacher):
    """A teacher whose front end and network are one `nn.Module` taking waveforms."""

    def __init__(self, card: TeacherCard, labels: LabelSpace, module: torch.nn.Module, checkpoint_sha256: str) -> None:
        self.card = card
        self.labels = labels
        self.module = module.eval()
        self.checkpoint_sha256 = checkpoint_sha256

    @torch.inference_mode()
    def logits(self, waves: torch.Tensor) -> torch.Tensor:
        device = next(self.module.parameters()).device
        return self.module(waves.to(device)).float()

    def to(self, device: torch.device | str) -> TorchTeacher:
        self.module.to(device)
        return self

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


TEACHERS: Registry[Teacher] = Registry("teacher")
register_teacher = TEACHERS.register
