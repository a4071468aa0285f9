"""What a student's logits mean at inference, fixed by the loss it was trained with.

BCE trains each class's logit against that class's probability, so sigmoid(z_c) is the tag probability. KL over
classes trains only differences between a clip's logits: adding a constant to all of them leaves the loss
unchanged, so their level is whatever the optimiser left, a per-clip offset that is noise across clips and ranks
clips wrongly for every class (on ESC-50 fold 4 it cost the distilled student 0.05 label mAP). What KL does define
is q = softmax(z) over the classes the teachers covered. A student trained so reads out logit(q_c): the sigmoid
that every consumer applies (`kd eval`, `kd predict`, NIAH, the exports, a distilled student used as a teacher)
then yields q_c exactly. Either way a class the training never taught (no teacher covered it, or `--classes` left
it out) reads out as probability 0.

At a temperature T the loss matches softmax(z / T) to the teachers' sigmoid(logit / T), and the readout still takes
softmax(z), as Hinton et al.'s students do at inference: sigmoid(l / T) ** T is close to sigmoid(l) wherever a
class is unlikely, so softmax(z) gives back the untempered teachers. On ESC-50 fold 4 (mn04, the manifest's
classes), the T = 2 targets read out so score 0.907 label mAP, through softmax(z / T) 0.890, untempered 0.905.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from kd.core.errors import ConfigError
from kd.core.labels import class_mask

READOUTS = ("sigmoid", "softmax")
_UNCOVERED = -1e4  # classes no teacher covered: no probability, whatever the clip, and a finite logit


def readout_kind(loss: str, label_weight: float) -> str:
    """'softmax' when the training loss leaves each clip's logit offset free (KL with no label BCE), else 'sigmoid'."""
    return "softmax" if loss == "kl" and label_weight == 0 else "sigmoid"


class Readout(nn.Module):
    """Training logits [..., C] -> inference logits [..., C] whose sigmoid is the probability the loss modelled.

    Holds no tensors (the class mask is built per call), so state dicts are the same with or without it and
    transformers' meta-device construction has nothing to materialise.
    """

    def __init__(self, num_classes: int, kind: str = "sigmoid", classes: Sequence[int] | None = None) -> None:
        super().__init__()
        if kind not in READOUTS:
            raise ConfigError(f"readout must be one of {', '.join(READOUTS)}, got {kind!r}")
        if classes is not None:
            classes = sorted({int(c) for c in classes})
            if not classes or classes[0] < 0 or classes[-1] >= num_classes:
                raise ConfigError(f"readout classes must be non-empty indices below {num_classes}")
        self.kind, self.num_classes = kind, num_classes
        self.classes = None if classes is None or len(classes) == num_classes else tuple(classes)

    def covered(self, device: torch.device | None = None) -> torch.Tensor:
        """[C] bool: the classes the training taught (for softmax, the classes the distribution is over)."""
        return torch.from_numpy(class_mask(self.classes, self.num_classes)).to(device)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        if self.kind == "sigmoid" and self.classes is None:
            return logits
        uncovered = ~self.covered(logits.device)
        if self.kind == "sigmoid":  # an untaught class's logit is its initialisation: no evidence of anything
            return logits.masked_fill(uncovered, _UNCOVERED)
        log_q = torch.log_softmax(logits.float().masked_fill(uncovered, float("-inf")), dim=-1)
        # logit(q) = log q - log(1 - q); q is capped below 1 so a confident clip stays finite.
        out = log_q - torch.log1p(-log_q.exp().clamp(max=1 - 1e-6))
        return out.masked_fill(uncovered, _UNCOVERED)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "classes": None if self.classes is None else list(self.classes)}

    @classmethod
    def from_dict(cls, num_classes: int, values: dict | None) -> Readout:
        values = values or {}
        return cls(num_classes, values.get("kind", "sigmoid"), values.get("classes"))

    @classmethod
    def for_training(cls, loss: str, label_weight: float, covered: np.ndarray, chosen: np.ndarray) -> Readout:
        """The readout of a student trained with `loss` and `label_weight`, on the targets of classes `covered` [C]
        (bool, some teacher covers them) and on the labels of classes `chosen` [C] (bool, `--classes`)."""
        covered = np.asarray(chosen, dtype=bool) & (np.asarray(covered, dtype=bool) | (label_weight > 0))
        classes = None if covered.all() else np.flatnonzero(covered).tolist()
        return cls(len(covered), readout_kind(loss, label_weight), classes)
