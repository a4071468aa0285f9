"""Tiny teachers with fixed random weights: they exercise dump, store and training paths in seconds.

`toy/tiny16k` covers all AudioSet classes at 16 kHz; `toy/partial32k` runs at 32 kHz and knows only the first 100
AudioSet classes under its own names, so mixed rates and per-class coverage are tested without real weights.
"""

from __future__ import annotations

import hashlib
from functools import partial

import torch

from kd.core.frontends import KaldiFbank, KaldiFbankConfig
from kd.core.labels import LabelSpace, audioset_labels
from kd.teachers.base import TeacherCard, TorchTeacher, register_teacher
from kd.teachers.catalog import ENTRIES, TeacherEntry


class ToyTagger(torch.nn.Module):
    """fbank -> two convolutions -> mean over time -> linear head; weights drawn from a fixed seed."""

    def __init__(self, sample_rate: int, num_classes: int, seed: int) -> None:
        super().__init__()
        self.frontend = KaldiFbank(KaldiFbankConfig(sample_rate=sample_rate, num_mel_bins=32, mean=-6.0, std=4.0))
        self.convs = torch.nn.Sequential(
            torch.nn.Conv1d(32, 32, 5, padding=2), torch.nn.GELU(), torch.nn.Conv1d(32, 32, 5, padding=2)
        )
        self.head = torch.nn.Linear(32, num_classes)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        feats = self.frontend(waves).transpose(1, 2)
        return self.head(self.convs(feats).mean(dim=-1)) * 0.1


def _toy(name: str, sample_rate: int, labels: LabelSpace, seed: int) -> TorchTeacher:
    module = ToyTagger(sample_rate, len(labels), seed)
    digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in module.state_dict().values())).hexdigest()
    card = TeacherCard(
        name=name,
        sample_rate=sample_rate,
        num_classes=len(labels),
        label_space=labels.name,
        frontend=module.frontend.settings(),
        description="tiny fixed-random teacher for tests",
    )
    return TorchTeacher(card, labels, module, checkpoint_sha256=digest)


@register_teacher("toy/tiny16k")
def toy_tiny16k(checkpoint: str | None = None) -> TorchTeacher:
    return _toy("toy/tiny16k", 16000, audioset_labels(), seed=16)


@register_teacher("toy/partial32k")
def toy_partial32k(checkpoint: str | None = None) -> TorchTeacher:
    full = audioset_labels()
    # Own label space: names only, in reverse order, so mapping by exact name is exercised.
    labels = LabelSpace("toy-partial", ("",) * 100, tuple(reversed(full.names[:100])))
    return _toy("toy/partial32k", 32000, labels, seed=32)


def _describe_toy(name: str, sample_rate: int, num_classes: int, label_space: str) -> TeacherEntry:
    """The catalog entry of a toy teacher; tests check that its card equals the built teacher's."""
    module = ToyTagger(sample_rate, num_classes, seed=0)
    card = TeacherCard(
        name=name,
        sample_rate=sample_rate,
        num_classes=num_classes,
        label_space=label_space,
        frontend=module.frontend.settings(),
        description="tiny fixed-random teacher for tests",
    )
    return TeacherEntry(card, lambda: sum(p.numel() for p in module.parameters()))


ENTRIES["toy/tiny16k"] = partial(_describe_toy, "toy/tiny16k", 16000, 527, "audioset")
ENTRIES["toy/partial32k"] = partial(_describe_toy, "toy/partial32k", 32000, 100, "toy-partial")
