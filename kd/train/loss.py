"""The distillation loss: the teachers' soft targets (BCE or KL), optionally mixed with ground-truth labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class KDLoss(torch.nn.Module):
    """BCE against soft targets (multi-label, default) or KL over classes; optional ground-truth BCE mixed in.

    BCE is averaged over the classes some teacher covers: its gradient per class is the same whatever the number of
    classes, so the output bias prior (see `DistillDataset.mean_targets`) rather than the reduction decides where
    the many mostly-empty classes start.
    """

    def __init__(
        self, kind: str, temperature: float, label_weight: float, classes: tuple[int, ...] | None = None
    ) -> None:
        super().__init__()
        self.kind, self.temperature, self.label_weight = kind, temperature, label_weight
        # Ground truth is scored on the chosen classes only, as the teachers' targets are (through their mask).
        self.label_columns = slice(None) if classes is None else list(classes)

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        mask = mask.float()
        if self.label_weight > 0:
            columns = self.label_columns
            truth = F.binary_cross_entropy_with_logits(logits[..., columns], labels[..., columns])
        if self.label_weight == 1:
            return truth
        if self.kind == "bce":
            per_class = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
            distill = (per_class * mask).sum() / mask.sum().clamp_min(1)
        else:
            t = self.temperature
            p = targets * mask
            p = p / p.sum(-1, keepdim=True).clamp_min(1e-12)
            log_q = torch.log_softmax(logits.masked_fill(mask == 0, -1e4) / t, dim=-1)
            distill = (t * t) * (p * (torch.log(p.clamp_min(1e-12)) - log_q)).sum(-1).mean()
        if self.label_weight == 0:
            return distill
        return (1 - self.label_weight) * distill + self.label_weight * truth
