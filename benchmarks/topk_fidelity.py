"""Top-k fidelity: how much of a teacher survives top-k storage, with the store's `rest` fill against zero fill.

Real mn04 and YAMNet outputs on the shared clips (4 views each, mixup partners' labels included) go through the
dump's own reduction (`kd.dump.top_k`, float16 storage) and back through `kd.stores.targets.expand_topk`. Over the
classes the teacher covers:
- `map_labels`: mAP of the reconstructed scores against the shared clips' labels (`_full`: from the full logits);
- `map_self`: mAP against the teacher's own top-5 tags per view (as `kd train-student` validates);
- `bce`: mean BCE of the reconstructed probabilities against the full ones as targets (probabilities clamped to
  [1e-7, 1 - 1e-7]); `kl` is that minus the full targets' own entropy (0 means nothing was lost).
Zero fill gives every class outside the top k probability 0; `rest` gives them the logit of their mean probability.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from benchmarks.common import MN04, YAMNET, markdown, stored_topk, teacher_outputs

KS = (5, 10, 20, 50)
VIEWS = 4
EPS = 1e-7


def reconstruct(outputs, k: int, fill: str) -> np.ndarray:
    """Full-space logits [items, classes] as training would see them from a store with this k."""
    from kd.stores.targets import expand_topk

    data = stored_topk(outputs, k)
    rest = data["rest"] if fill == "rest" else np.full_like(data["rest"], np.nan)  # NaN rest -> -inf: zero fill
    full = expand_topk(data["logits"], data["indices"], rest, outputs.covered)
    return full.reshape(-1, full.shape[-1]).numpy()


def bernoulli_bce(targets: np.ndarray, probs: np.ndarray) -> np.ndarray:
    p = np.clip(probs, EPS, 1 - EPS)
    return -(targets * np.log(p) + (1 - targets) * np.log1p(-p))


def self_tags(full: np.ndarray) -> np.ndarray:
    top = np.argsort(-full, axis=1)[:, :5]
    tags = np.zeros(full.shape, dtype=bool)
    np.put_along_axis(tags, top, True, axis=1)
    return tags


def fidelity(outputs, k: int, fill: str) -> dict:
    from kd.core.metrics import tagging_metrics

    covered = outputs.covered
    full = outputs.logits.reshape(-1, len(covered))[:, covered].astype(np.float64)
    labels = outputs.labels.reshape(-1, len(covered))[:, covered]
    recon = reconstruct(outputs, k, fill)[:, covered].astype(np.float64)
    p_full, p_recon = torch.sigmoid(torch.from_numpy(full)).numpy(), torch.sigmoid(torch.from_numpy(recon)).numpy()
    tags = self_tags(full)
    bce = bernoulli_bce(p_full, p_recon).mean()
    entropy = bernoulli_bce(p_full, p_full).mean()
    return {
        "teacher": outputs.name,
        "k": k,
        "fill": fill,
        "map_labels": round(tagging_metrics(labels, p_recon).mAP, 4),
        "map_labels_full": round(tagging_metrics(labels, p_full).mAP, 4),
        "map_self": round(tagging_metrics(tags, p_recon).mAP, 4),
        "map_self_full": round(tagging_metrics(tags, p_full).mAP, 4),
        "bce": round(float(bce), 5),
        "kl": round(float(bce - entropy), 5),
        "mass_kept": round(float(p_recon.sum() / p_full.sum()), 3),
        "views": len(full),
    }


def run(quick: bool = False) -> list[dict]:
    """One row per (teacher, k, fill)."""
    rows = []
    for name in (MN04, YAMNET):
        outputs = teacher_outputs(name, quick, 2 if quick else VIEWS)
        for k in KS:
            for fill in ("zero", "rest"):
                rows.append(fidelity(outputs, k, fill))
    return rows


if __name__ == "__main__":
    print(markdown(run(quick="--quick" in sys.argv)))
