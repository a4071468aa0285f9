"""Phase 4 of a run: the EMA student scored against the ensemble on held-out views, and on a labelled manifest."""

from __future__ import annotations

import numpy as np
import torch

from kd.core.metrics import tagging_metrics
from kd.train.run import Run


@torch.no_grad()
def validate(run: Run) -> dict:
    """Phase 4: scores the EMA student: agreement with the ensemble on clean held-out views of the store (with label
    mAP where the store's manifest had labels), and label mAP, AUC and d-prime on a held-out labelled manifest."""
    model, device = run.model, run.device
    live = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(run.ema.state)
    model.eval()
    result: dict = {}
    data = run.val_data
    if data is not None:
        scores, targets, truth = [], [], []
        for i in range(len(data)):
            item = data[i]
            logits = model.readout(model.forward_features(item["features"][None].to(device)))
            scores.append(torch.sigmoid(logits).cpu()[0])
            targets.append(item["targets"])
            truth.append(item["labels"])
        result = agreement(torch.stack(scores).numpy(), torch.stack(targets).numpy(), torch.stack(truth).numpy())
    if run.config.val_manifest is not None:
        from kd.use.evaluate import evaluate
        from kd.use.models import Tagger

        tagger = Tagger("student", "student", model.sample_rate, run.store.labels, device, model)
        metrics = evaluate(tagger, run.config.val_manifest, progress=False).metrics
        result.update(
            {"manifest_map": metrics.mAP, "manifest_auc": metrics.mean_auc, "manifest_dprime": metrics.d_prime}
        )
    model.load_state_dict(live)
    model.train()
    return result


def agreement(scores: np.ndarray, targets: np.ndarray, labels: np.ndarray) -> dict:
    """Top-5 overlap with the ensemble, mAP against the ensemble's top-5 tags, and label mAP where labelled."""
    top_s = np.argsort(-scores, axis=1)[:, :5]
    top_t = np.argsort(-targets, axis=1)[:, :5]
    overlap = float(np.mean([len(set(a) & set(b)) / 5 for a, b in zip(top_s, top_t, strict=True)]))
    teacher_tags = np.zeros_like(targets)
    np.put_along_axis(teacher_tags, top_t, 1.0, axis=1)
    result = {"top5_overlap": overlap, "map_vs_teacher": tagging_metrics(teacher_tags, scores).mAP}
    if (labels > 0).any():
        result["map_vs_labels"] = tagging_metrics(labels > 0, scores).mAP
    return result
