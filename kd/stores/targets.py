"""Soft targets from stored top-k logits: expand each teacher to the full label space, then combine an ensemble.

Pure functions of the stored arrays and the ensemble spec, so the ensemble is chosen at training time and any
subset or weighting of stored teachers needs no new dump.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from kd.core.errors import ConfigError
from kd.core.labels import class_mask


@dataclass(frozen=True)
class EnsembleSpec:
    """Which stored teachers, with what weights, at what temperature, combined how ('prob' or 'logit'), and which
    classes they teach (`classes`: sorted store class indices; None = every class some teacher covers)."""

    teachers: tuple[tuple[str, float], ...]
    temperature: float = 1.0
    combine: str = "prob"
    classes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not self.teachers:
            raise ConfigError("the ensemble needs at least one teacher")
        if not all(math.isfinite(w) and w > 0 for _, w in self.teachers):
            raise ConfigError(f"teacher weights must be finite and positive: {dict(self.teachers)}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"--temperature must be finite and positive, got {self.temperature}")
        if self.combine not in ("prob", "logit"):
            raise ConfigError(f"--combine must be 'prob' or 'logit', got {self.combine!r}")

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.teachers]


def parse_teachers(text: str) -> tuple[tuple[str, float], ...]:
    """Parses 'NAME[:WEIGHT],...' (names may themselves contain ':', the weight is the last numeric field)."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, weight = part.rpartition(":")
        try:
            out.append((name, float(weight)) if sep else (part, 1.0))
        except ValueError:
            out.append((part, 1.0))
    if not out:
        raise ConfigError(f"--teachers {text!r}: name at least one teacher")
    return tuple(out)


def expand_topk(logits: np.ndarray, indices: np.ndarray, rest: np.ndarray, covered: np.ndarray) -> torch.Tensor:
    """Full-space logits [..., C] from top-k: stored classes exact, other covered classes get the rest's fill.

    Classes the teacher does not cover are NaN, so the ensemble can tell "not known" from "unlikely".
    """
    num_classes = len(covered)
    fill = torch.as_tensor(rest, dtype=torch.float32)
    fill = torch.where(torch.isnan(fill), torch.full_like(fill, float("-inf")), fill)
    full = fill[..., None].expand(*fill.shape, num_classes).clone()
    full[..., ~torch.as_tensor(covered)] = float("nan")
    full.scatter_(-1, torch.as_tensor(indices, dtype=torch.int64), torch.as_tensor(logits, dtype=torch.float32))
    return full


def combine(full_logits: list[torch.Tensor], spec: EnsembleSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Combines teachers per class: a class is averaged over the teachers that cover it, weights renormalised.

    Returns:
        targets: probabilities [..., C] (zero where no teacher covers the class).
        mask: [..., C] true where at least one teacher covers the class (and the spec's `classes` name it).
    """
    weights = torch.tensor([w for _, w in spec.teachers], dtype=torch.float32)
    stacked = torch.stack(full_logits) / spec.temperature
    known = ~torch.isnan(stacked)
    w = weights.view(-1, *([1] * (stacked.dim() - 1))) * known
    total = w.sum(0)
    mask = total > 0
    if spec.classes is not None:
        mask = mask & torch.from_numpy(class_mask(spec.classes, mask.shape[-1]))
    values = torch.sigmoid(stacked) if spec.combine == "prob" else stacked
    mean = (torch.nan_to_num(values, nan=0.0, neginf=0.0 if spec.combine == "prob" else -1e4) * w).sum(0)
    mean = mean / total.clamp_min(1e-12)
    targets = mean if spec.combine == "prob" else torch.sigmoid(mean)
    return torch.where(mask, targets, torch.zeros_like(targets)), mask


def clip_means(targets: torch.Tensor, single: torch.Tensor) -> torch.Tensor:
    """Each clip's mean target [clips, C] over its views [clips, views, C] that hear only the clip (`single`); a
    clip with none (every such view failed) averages all its views."""
    weights = single.float()
    weights = torch.where(weights.sum(1, keepdim=True) > 0, weights, torch.ones_like(weights))
    return (targets * weights[..., None]).sum(1) / weights.sum(1)[:, None]


def toward_clip_means(
    targets: torch.Tensor, own: torch.Tensor, partner: torch.Tensor | None, mix_weight: float, weight: float
) -> torch.Tensor:
    """A view's target moved `weight` of the way to what its clip sounds like on average: `own`'s mean target, or
    for a two-clip view the clips' means weighted like their audio (`mix_weight` for the view's own clip)."""
    mean = own if partner is None else mix_weight * own + (1 - mix_weight) * partner
    return (1 - weight) * targets + weight * mean
