"""Ensemble targets: top-k expansion with the stored fill, per-class coverage, weights, temperature."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kd.core.errors import ConfigError
from kd.stores.targets import EnsembleSpec, combine, expand_topk, parse_teachers


def _sig(x: float) -> float:
    return float(1 / (1 + np.exp(-x)))


def test_expand_topk_places_logits_fill_and_nan():
    covered = np.array([True, True, True, False, True])
    full = expand_topk(np.array([[3.0, 1.0]]), np.array([[2, 0]]), np.array([-2.0]), covered)
    assert full[0, :3].tolist() == [1.0, -2.0, 3.0] and torch.isnan(full[0, 3]) and full[0, 4] == -2.0


def test_expand_with_everything_stored_has_no_fill():
    full = expand_topk(np.array([[0.5, -0.5]]), np.array([[1, 0]]), np.array([np.nan]), np.array([True, True]))
    assert full.tolist() == [[-0.5, 0.5]]


def test_rest_fill_preserves_the_mean_probability():
    rng = np.random.default_rng(0)
    logits = rng.normal(-3, 2, size=50)
    order = np.argsort(-logits)
    k = 10
    mean_rest = (1 / (1 + np.exp(-logits[order[k:]]))).mean()
    rest = np.log(mean_rest) - np.log1p(-mean_rest)
    full = expand_topk(logits[order[:k]][None], order[:k][None], np.array([rest]), np.ones(50, bool))
    assert torch.sigmoid(full).sum().item() == pytest.approx(float((1 / (1 + np.exp(-logits))).sum()), rel=1e-5)


def test_combine_renormalises_per_class_and_masks_uncovered():
    a = torch.tensor([[0.0, 2.0, float("nan")]])
    b = torch.tensor([[2.0, float("nan"), float("nan")]])
    targets, mask = combine([a, b], EnsembleSpec((("a", 1.0), ("b", 3.0))))
    assert targets[0, 0].item() == pytest.approx(0.25 * 0.5 + 0.75 * _sig(2.0))
    assert targets[0, 1].item() == pytest.approx(_sig(2.0))
    assert mask.tolist() == [[True, True, False]] and targets[0, 2] == 0


def test_temperature_and_logit_mean():
    a, b = torch.tensor([[2.0]]), torch.tensor([[-1.0]])
    targets, _ = combine([a, b], EnsembleSpec((("a", 1.0), ("b", 1.0)), temperature=2.0, combine="logit"))
    assert targets.item() == pytest.approx(_sig(0.25))


def test_parse_teachers_and_validation():
    assert parse_teachers("efficientat/mn04_as:2,yamnet") == (("efficientat/mn04_as", 2.0), ("yamnet", 1.0))
    assert parse_teachers("onnx:/m/x.onnx:0.5") == (("onnx:/m/x.onnx", 0.5),)
    with pytest.raises(ConfigError):
        EnsembleSpec((("a", -1.0),))
    with pytest.raises(ConfigError):
        EnsembleSpec((("a", 1.0),), combine="median")
