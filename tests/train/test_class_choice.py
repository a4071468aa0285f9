"""`--classes`: resolving the taught classes, and targets, loss and readout blind to every other class."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kd.core.errors import ConfigError
from kd.core.labels import audioset_labels
from kd.stores.targets import EnsembleSpec, combine
from kd.train import KDLoss
from kd.train.class_choice import resolve_classes

LABELS = audioset_labels()
DOG, BARK, CAT = (LABELS.index(n) for n in ("Dog", "Bark", "Cat"))  # in store order


def _unused() -> torch.Tensor:
    raise AssertionError("only top:N needs the teachers' mean probability")


def test_forms_name_the_same_store_classes(tmp_path):
    clips = [("Dog", "Bark"), (), ("Cat",)]
    assert resolve_classes(None, LABELS, clips, _unused) is None
    assert resolve_classes("manifest", LABELS, clips, _unused) == (DOG, BARK, CAT)
    assert resolve_classes("Cat; Dog;", LABELS, clips, _unused) == (DOG, CAT)
    listed = tmp_path / "classes.txt"
    listed.write_text("Bark\n\n/m/0bt9lr\n")  # a display name and Dog's mid
    assert resolve_classes(str(listed), LABELS, clips, _unused) == (DOG, BARK)
    mean = torch.zeros(len(LABELS))
    mean[[BARK, CAT, 7]] = torch.tensor([0.9, 0.5, 0.7])
    assert resolve_classes("top:2", LABELS, clips, lambda: mean) == (7, BARK)


@pytest.mark.parametrize(
    ("text", "clips", "message"),
    [
        ("Dog;Wolfhound;Hyena", [()], "'Wolfhound', 'Hyena' from --classes not in the store's 527 classes"),
        ("manifest", [(), ()], "the store's manifest has no labels"),
        ("top:0", [()], "N must be a whole number from 1 to 527"),
        ("top:many", [()], "N must be a whole number from 1 to 527"),
        (" ; ", [()], "give 'manifest', 'top:N'"),
    ],
)
def test_bad_forms_are_config_errors_that_say_what_to_give(text, clips, message):
    with pytest.raises(ConfigError, match=message):
        resolve_classes(text, LABELS, clips, lambda: torch.zeros(len(LABELS)))


def test_targets_and_loss_ignore_classes_not_chosen():
    logits = torch.randn(3, len(LABELS)) * 3
    chosen = EnsembleSpec((("t", 1.0),), classes=(DOG, BARK, CAT))
    targets, mask = combine([logits], chosen)
    assert mask.sum(-1).tolist() == [3, 3, 3] and mask[:, [DOG, BARK, CAT]].all()
    assert (targets[~mask] == 0).all()
    student = torch.randn(3, len(LABELS), requires_grad=True)
    labels = (torch.rand(3, len(LABELS)) > 0.5).float()
    for kind, label_weight in [("bce", 0.0), ("kl", 0.0), ("kl", 0.5), ("bce", 1.0)]:
        loss = KDLoss(kind, 1.0, label_weight, chosen.classes)(student, targets, mask, labels)
        (grad,) = torch.autograd.grad(loss, student)
        assert grad[:, [DOG, BARK, CAT]].abs().sum() > 0, (kind, label_weight)
        assert (grad[~mask] == 0).all(), (kind, label_weight)
        everything = KDLoss(kind, 1.0, label_weight)(student, targets, torch.ones_like(mask), labels)
        assert not torch.isclose(loss, everything), (kind, label_weight)
    np.testing.assert_array_equal(combine([logits], EnsembleSpec((("t", 1.0),)))[1].numpy(), True)
