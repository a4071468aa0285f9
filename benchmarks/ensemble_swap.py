"""Ensemble swap for real: one dump of mn04 and YAMNet, three students trained from it without re-dumping.

Each student is scored on the shared clips against the clips' labels and against each teacher (mAP of the
student's scores over that teacher's top-5 tags per clip, and top-5 overlap), whole clips, one forward each.
The students never see labels; the clips are the ones they trained on (there are only 52), so "vs labels" says how
much of each teacher's knowledge the student absorbed, not how it generalises.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks import common

ENSEMBLES = {
    "mn04": "efficientat/mn04_as",
    "yamnet": "yamnet",
    "both 2:1": "efficientat/mn04_as:2,yamnet:1",
}


def _scores(tagger, clips: list, store_labels) -> np.ndarray:
    """Whole-clip probabilities [clips, store classes] (uncovered classes of a teacher are NaN)."""
    from kd.core.audio import load_audio

    index = tagger.labels.map_to(store_labels).index
    out = np.full((len(clips), len(store_labels)), np.nan)
    for row, clip in enumerate(clips):
        with torch.no_grad():
            probs = torch.sigmoid(tagger(load_audio(clip.path, tagger.sample_rate)[None]))[0].numpy()
        out[row, index[index >= 0]] = probs[index >= 0]
    return out


def _agreement(student: np.ndarray, teacher: np.ndarray) -> dict:
    from kd.core.metrics import tagging_metrics

    known = ~np.isnan(teacher).any(axis=0)
    s, t = student[:, known], teacher[:, known]
    top_t = np.argsort(-t, axis=1)[:, :5]
    top_s = np.argsort(-s, axis=1)[:, :5]
    tags = np.zeros_like(t)
    np.put_along_axis(tags, top_t, 1.0, axis=1)
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(top_s, top_t, strict=True)])
    return {"map": tagging_metrics(tags, s).mAP, "top5": float(overlap)}


def run(quick: bool = False, steps: int | None = None) -> list[dict]:
    from kd.core.labels import resolve_labels
    from kd.core.manifest import load_manifest
    from kd.core.metrics import tagging_metrics
    from kd.dump import DumpConfig, dump_teachers
    from kd.stores import LogitStore
    from kd.train import TrainConfig, train_student
    from kd.use.models import load_tagger

    steps = steps or (20 if quick else 300)
    work = Path(tempfile.mkdtemp(prefix="kd-swap-"))
    manifest = common.write_manifest(work, quick)
    store_path = str(work / "store.zarr")
    dump_teachers(DumpConfig(
        manifest=manifest, store=store_path, teachers=[common.MN04, common.YAMNET],
        checkpoints={t: common.checkpoint(t) for t in (common.MN04, common.YAMNET)},
        views=4, block_size=16, progress=False,
    ))  # fmt: skip
    store = LogitStore(store_path)
    clips = load_manifest(manifest).clips
    truth = resolve_labels([c.labels for c in clips], store.labels).targets
    teachers = {
        name: _scores(load_tagger(name, checkpoint=common.checkpoint(name)), clips, store.labels)
        for name in (common.MN04, common.YAMNET)
    }
    rows = []
    for name, scores in teachers.items():
        known = ~np.isnan(scores).any(axis=0)
        rows.append({"model": f"teacher {name}", "map_labels": tagging_metrics(truth[:, known], scores[:, known]).mAP})
    for label, ensemble in ENSEMBLES.items():
        out = work / label.replace(" ", "_").replace(":", "-")
        train_student(TrainConfig(
            store=store_path, out=str(out), teachers=ensemble, steps=steps, batch_size=8, lr=1e-3,
            warmup_steps=max(1, steps // 15), ema_decay=0.99, drop_path=0.0, val_fraction=0.0,
            checkpoint_every=steps, workers=1, progress=False,
        ))  # fmt: skip
        student = _scores(load_tagger(str(out / "last.pt")), clips, store.labels)
        row = {"model": f"dass-tiny <- {label}", "map_labels": tagging_metrics(truth, student).mAP}
        for name, scores in teachers.items():
            agreement = _agreement(student, scores)
            short = "mn04" if name == common.MN04 else "yamnet"
            row[f"map_vs_{short}"], row[f"top5_vs_{short}"] = agreement["map"], agreement["top5"]
        rows.append(row)
    return rows


if __name__ == "__main__":
    print(common.markdown(run()))
