"""The readout: a KL-trained student's inference logits are logit(softmax) over the covered classes, free of the
per-clip offset KL leaves undetermined; a BCE-trained student's are its logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kd.core.errors import ConfigError
from kd.core.metrics import tagging_metrics
from kd.students import create_student
from kd.students.checkpoint import checkpoint_readout
from kd.students.readout import Readout, readout_kind


def test_softmax_readout_is_the_distribution_over_covered_classes_whatever_the_offset():
    logits = torch.randn(4, 10) * 3
    readout = Readout(10, "softmax", classes=range(8))
    probs = torch.sigmoid(readout(logits))
    expected = torch.softmax(logits[:, :8], dim=-1)
    torch.testing.assert_close(probs[:, :8], expected, atol=1e-6, rtol=1e-4)
    assert float(probs[:, 8:].max()) < 1e-30  # no teacher covered them: no mass, but finite logits
    assert torch.isfinite(readout(logits)).all()
    offsets = torch.randn(4, 1) * 5
    torch.testing.assert_close(readout(logits + offsets), readout(logits), atol=1e-4, rtol=1e-5)
    confident = torch.zeros(1, 10).index_fill_(1, torch.tensor([0]), 200.0)
    assert torch.isfinite(readout(confident)).all()


def test_sigmoid_readout_is_the_identity_and_kinds_follow_the_loss():
    logits = torch.randn(3, 5)
    assert torch.equal(Readout(5)(logits), logits)
    assert readout_kind("kl", 0.0) == "softmax"
    assert readout_kind("kl", 0.5) == "sigmoid"  # the label BCE pins the offset
    assert readout_kind("bce", 0.0) == "sigmoid"
    with pytest.raises(ConfigError, match="readout"):
        Readout(5, "softmax2")
    with pytest.raises(ConfigError, match="below 5"):
        Readout(5, "softmax", classes=[7])


def test_sigmoid_readout_gives_untaught_classes_no_probability():
    """Classes outside `--classes` get neither targets nor labels, classes no teacher covers get labels only: what
    the training never taught reads out as probability 0 rather than its initial logit."""
    covered, chosen = np.array([True, True, False, True]), np.array([True, False, True, True])
    kd_only = Readout.for_training("bce", 0.0, covered, chosen)
    assert kd_only.covered().tolist() == [True, False, False, True]
    with_labels = Readout.for_training("bce", 0.5, covered, chosen)
    assert with_labels.covered().tolist() == [True, False, True, True]  # the labels teach the uncovered class
    logits = torch.randn(3, 4)
    out = with_labels(logits)
    assert torch.equal(out[:, [0, 2, 3]], logits[:, [0, 2, 3]])
    assert float(torch.sigmoid(out[:, 1]).max()) < 1e-30 and torch.isfinite(out).all()


def test_readout_round_trips_and_old_checkpoints_get_their_loss_readout():
    every = np.ones(3, bool)
    readout = Readout.for_training("kl", 0.0, np.array([True, False, True]), every)
    again = Readout.from_dict(3, readout.to_dict())
    assert again.kind == "softmax" and again.covered().tolist() == [True, False, True]
    assert Readout.for_training("bce", 0.0, every, every).to_dict() == {"kind": "sigmoid", "classes": None}
    assert checkpoint_readout({"config": {"loss": "kl", "label_weight": 0.0}}, 3).kind == "softmax"
    assert checkpoint_readout({"config": {"loss": "bce"}}, 3).kind == "sigmoid"


def test_per_clip_offsets_cost_sigmoid_scoring_and_not_the_readout():
    """What KL leaves free, in small: logits right up to a per-clip constant rank clips badly per class through a
    sigmoid; the readout ranks them as the noiseless logits do."""
    gen = torch.Generator().manual_seed(0)
    truth = torch.nn.functional.one_hot(torch.arange(200) % 20, 20).float()
    clean = 4 * truth + torch.randn(200, 20, generator=gen)
    shifted = clean + 3 * torch.randn(200, 1, generator=gen)
    readout = Readout(20, "softmax")

    def label_map(logits: torch.Tensor) -> float:
        return tagging_metrics(truth.numpy(), torch.sigmoid(logits).numpy()).mAP

    assert label_map(shifted) < label_map(clean) - 0.1
    assert label_map(readout(shifted)) == pytest.approx(label_map(readout(clean)), abs=1e-6)
    assert label_map(readout(shifted)) > label_map(clean) - 0.02


def test_dass_applies_the_readout_in_forward_only():
    model = create_student("dass-tiny", num_classes=6).eval()
    model.readout = Readout(6, "softmax")
    wave = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        raw, out = model.forward_features(model.frontend(wave)), model(wave)
    torch.testing.assert_close(out, model.readout(raw))
    torch.testing.assert_close(torch.sigmoid(out).sum(-1), torch.ones(2), atol=1e-5, rtol=0)
    assert model.state_dict().keys() == create_student("dass-tiny", num_classes=6).state_dict().keys()
