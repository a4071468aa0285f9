"""Multi-label tagging metrics in numpy: average precision, ROC AUC, d-prime, and their class means.

Definitions follow the usual AudioSet reporting (PANNs, AST, DASS): AP is scikit-learn's `average_precision_score`
(the step-wise sum over distinct score thresholds of recall increase times precision, no interpolation), AUC is the
area under the ROC curve with ties counted as one half, and d-prime is `sqrt(2) * Phi^-1(mean AUC)`. A class with no
positive clip has no AP (and one with no negative clip no AUC): such classes are left out of the means and counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

AUC_CLIP = 1e-6
"""AUC is clipped to [AUC_CLIP, 1 - AUC_CLIP] before the inverse normal CDF so that d-prime stays finite."""


def average_precision(targets: np.ndarray, scores: np.ndarray) -> float:
    """AP of one class, as scikit-learn's `average_precision_score`; NaN when there is no positive.

    Args:
        targets: 0/1 (or boolean) relevance per item.
        scores: higher means more likely positive; tied scores form one threshold.
    """
    targets = np.asarray(targets, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives = int(targets.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    scores, targets = scores[order], targets[order]
    # The last item of each run of equal scores is where a threshold admits the whole run at once.
    last_of_run = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_pos = np.cumsum(targets)[last_of_run]
    precision = true_pos / (last_of_run + 1)
    recall_gain = np.diff(np.r_[0, true_pos]) / positives
    return float(np.sum(recall_gain * precision))


def roc_auc(targets: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of one class (Mann-Whitney U with mid-ranks for ties); NaN without both kinds."""
    targets = np.asarray(targets, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives = int(targets.sum())
    negatives = len(targets) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = _mid_ranks(scores)
    return float((ranks[targets].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def d_prime(auc: float) -> float:
    """sqrt(2) * Phi^-1(auc): the separation of two unit-variance normals that gives this AUC."""
    if math.isnan(auc):
        return float("nan")
    return math.sqrt(2.0) * NormalDist().inv_cdf(min(max(auc, AUC_CLIP), 1.0 - AUC_CLIP))


def _mid_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), dtype=np.float64)
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + 1 + end) / 2
    return ranks


@dataclass(frozen=True)
class TaggingMetrics:
    """Class-wise and mean metrics of one evaluation.

    Attributes:
        ap: per-class AP (NaN where the class has no positive).
        auc: per-class AUC (NaN where the class lacks positives or negatives).
        mAP: mean AP over classes with at least one positive.
        mean_auc: mean AUC over classes with positives and negatives.
        d_prime: sqrt(2) * Phi^-1(mean_auc).
        classes_scored: classes in the mAP.
        classes_without_positives: classes left out of the mAP.
        classes_without_negatives: classes with positives but no negative (left out of the AUC).
        positives: positive items per class.
    """

    ap: np.ndarray
    auc: np.ndarray
    mAP: float  # noqa: N815 (the name everyone reports)
    mean_auc: float
    d_prime: float
    classes_scored: int
    classes_without_positives: int
    classes_without_negatives: int
    positives: np.ndarray = field(repr=False)

    def to_json(self, names: tuple[str, ...] | list[str] | None = None) -> dict:
        """Means, counts and the per-class table (classes with positives only), ready for `json.dump`."""
        names = list(names) if names is not None else [str(i) for i in range(len(self.ap))]
        per_class = [
            {
                "index": int(i),
                "label": names[i],
                "positives": int(self.positives[i]),
                "ap": float(self.ap[i]),
                "auc": None if math.isnan(self.auc[i]) else float(self.auc[i]),
            }
            for i in np.flatnonzero(self.positives > 0)
        ]
        return {
            "mAP": _finite(self.mAP),
            "mean_auc": _finite(self.mean_auc),
            "d_prime": _finite(self.d_prime),
            "classes_scored": self.classes_scored,
            "classes_without_positives": self.classes_without_positives,
            "classes_without_negatives": self.classes_without_negatives,
            "per_class": per_class,
        }


def tagging_metrics(targets: np.ndarray, scores: np.ndarray) -> TaggingMetrics:
    """Per-class AP and AUC of `scores` [items, classes] against 0/1 `targets` [items, classes], and their means."""
    targets = np.asarray(targets).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if targets.shape != scores.shape or targets.ndim != 2:
        raise ValueError(f"targets {targets.shape} and scores {scores.shape} must both be [items, classes]")
    positives = targets.sum(axis=0)
    ap = np.array([average_precision(targets[:, c], scores[:, c]) for c in range(targets.shape[1])])
    auc = np.array([roc_auc(targets[:, c], scores[:, c]) for c in range(targets.shape[1])])
    scored = ~np.isnan(ap)
    with_auc = ~np.isnan(auc)
    mean_ap = float(ap[scored].mean()) if scored.any() else float("nan")
    mean_auc = float(auc[with_auc].mean()) if with_auc.any() else float("nan")
    return TaggingMetrics(
        ap=ap,
        auc=auc,
        mAP=mean_ap,
        mean_auc=mean_auc,
        d_prime=d_prime(mean_auc),
        classes_scored=int(scored.sum()),
        classes_without_positives=int((~scored).sum()),
        classes_without_negatives=int((scored & ~with_auc).sum()),
        positives=positives,
    )


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value
