"""What the optimiser step uses besides AdamW: the warm-up-then-cosine learning rate and the weights' EMA."""

from __future__ import annotations

import math

import torch


class EMA:
    """Exponential moving average of a model's floating-point state; its state_dict loads into the model.

    The decay warms up as min(decay, (1 + n) / (10 + n)) over updates n, so short runs are not stuck at the
    initial weights.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.state[key].mul_(decay).add_(value.detach(), alpha=1 - decay)
            else:
                self.state[key].copy_(value)


def warmup_cosine(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor
