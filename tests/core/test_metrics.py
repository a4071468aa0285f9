"""Metrics on hand-made cases whose AP, AUC and d-prime are known exactly."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from kd.core.metrics import average_precision, d_prime, roc_auc, tagging_metrics


def test_average_precision_known_values() -> None:
    # scikit-learn's documented example: average_precision_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.8333...
    assert average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(5 / 6)
    # Ranked 1, 0, 1, 0: precision 1 at recall 1/2, then 2/3 at recall 1.
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert average_precision([0, 1, 1], [0.1, 0.2, 0.3]) == pytest.approx(1.0)
    assert average_precision([1, 0, 0, 0], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(0.25)


def test_tied_scores_form_one_threshold() -> None:
    # All tied: one threshold admitting everything, precision = prevalence (not an order-dependent value).
    assert average_precision([1, 0, 0, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert average_precision([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)
    # A tie between a positive and a negative at the top: precision 1/2 at recall 1/2, then 2/3 at recall 1.
    assert average_precision([1, 0, 1], [0.9, 0.9, 0.1]) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert roc_auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)


def test_roc_auc_known_values() -> None:
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(0.75)
    assert roc_auc([1, 1, 0], [0.9, 0.8, 0.1]) == pytest.approx(1.0)
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))
    assert math.isnan(roc_auc([0, 0], [0.2, 0.3]))


def test_d_prime() -> None:
    assert d_prime(0.5) == pytest.approx(0.0)
    assert d_prime(NormalDist().cdf(1.0)) == pytest.approx(math.sqrt(2.0))
    assert math.isfinite(d_prime(1.0)) and d_prime(1.0) > 6


def test_classes_without_positives_are_excluded_and_counted() -> None:
    targets = np.array([[1, 0, 0, 1], [0, 0, 1, 1], [1, 0, 0, 1], [0, 0, 1, 1]])
    scores = np.array([[0.9, 0.1, 0.2, 0.5], [0.8, 0.3, 0.9, 0.5], [0.7, 0.2, 0.1, 0.5], [0.1, 0.0, 0.4, 0.5]])
    m = tagging_metrics(targets, scores)
    # Class 0 ranks its clips 1, 0, 1, 0 -> AP 5/6; class 2 ranks both positives (.9, .4) above both negatives.
    assert m.ap[0] == pytest.approx(5 / 6)
    assert m.ap[2] == pytest.approx(1.0)
    assert m.ap[3] == pytest.approx(1.0)  # every clip positive: AP 1 whatever the scores
    assert math.isnan(m.ap[1])
    assert m.mAP == pytest.approx((5 / 6 + 1.0 + 1.0) / 3)
    assert (m.classes_scored, m.classes_without_positives, m.classes_without_negatives) == (3, 1, 1)
    assert m.mean_auc == pytest.approx((0.75 + 1.0) / 2)  # class 3 has no negatives, so no AUC
    assert m.d_prime == pytest.approx(math.sqrt(2) * NormalDist().inv_cdf(0.875))
    table = m.to_json(["a", "b", "c", "d"])
    assert [row["label"] for row in table["per_class"]] == ["a", "c", "d"]
    assert table["per_class"][2]["auc"] is None


def test_perfect_and_inverted_rankings() -> None:
    rng = np.random.default_rng(0)
    targets = rng.random((50, 6)) < 0.3
    targets[0] = True
    assert tagging_metrics(targets, targets.astype(float)).mAP == pytest.approx(1.0)
    assert tagging_metrics(targets, targets.astype(float)).mean_auc == pytest.approx(1.0)
    assert tagging_metrics(targets, -targets.astype(float)).mean_auc == pytest.approx(0.0)
