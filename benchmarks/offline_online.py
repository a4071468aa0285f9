"""Offline vs online distillation: time per epoch training dass-tiny from the store vs running mn04 in the loop.

Both epochs see the same clips and views (the first 26 shared clips, 2 views; 9 clips in quick mode), batch 16,
2 DataLoader workers, and take the same student step (`benchmarks.loader.StudentStep`, the trainer's). Offline
reads the targets from the store (`DistillDataset`: replay the view, features, expand top-k); online renders the
same view in the workers and runs the teacher on it in the training process before the step (full 527-class
targets). The speed-up is online over offline epoch time, median over repetitions that alternate the two.
"""

from __future__ import annotations

import statistics
import sys

import numpy as np
import torch

from benchmarks.common import MN04, markdown, repeats, teacher, timed
from benchmarks.loader import StudentStep, dataset

BATCH = 16
WORKERS = 2
CLIPS = 26


class OnlineViews(torch.utils.data.Dataset):
    """What an online loop's workers make per row: the rendered view (for the teacher) and the student features."""

    def __init__(self, offline) -> None:
        self.offline = offline

    def __len__(self) -> int:
        return len(self.offline)

    def __getitem__(self, index: int) -> dict:
        from kd.core.audio import resample
        from kd.core.augment import apply_freq_masks, draw_view
        from kd.core.views import render_view

        data = self.offline
        clip, view = data.rows[index]
        params = draw_view(data.policy, int(data.seeds[clip, view]), clip, len(data.table), view)
        wave = render_view(data.table, clip, params, data.policy)
        with torch.no_grad():
            feats = data.frontend(resample(wave, data.policy.sample_rate, data.sample_rate)[None])[0]
        return {
            "wave": wave,
            "features": apply_freq_masks(feats, params.freq_masks),
            "labels": data.labels(clip, params),
        }


def _loader(data) -> torch.utils.data.DataLoader:
    from kd.train import _collate

    return torch.utils.data.DataLoader(
        data, batch_size=BATCH, sampler=list(range(len(data))), num_workers=WORKERS, collate_fn=_collate
    )


def offline_epoch(data, step: StudentStep) -> None:
    for batch in _loader(data):
        step(batch)


def online_epoch(data, step: StudentStep, model) -> None:
    for batch in _loader(data):
        targets = torch.sigmoid(model.logits(batch["wave"]))  # mn04's rate is the policy's: no resampling
        batch = {**batch, "targets": targets, "mask": torch.ones_like(targets, dtype=torch.bool)}
        step(batch)


def run(quick: bool = False) -> list[dict]:
    """One row: offline and online seconds per epoch, samples/s, and the speed-up."""
    from kd.students import create_student

    student = create_student("dass-tiny")
    offline = dataset(quick, student.frontend, student.sample_rate)
    keep = [i for i, (clip, _) in enumerate(offline.rows) if clip < CLIPS]
    offline.rows = [offline.rows[i] for i in keep]
    online = OnlineViews(offline)
    model = teacher(MN04)
    step = StudentStep("dass-tiny")
    step(_loader(offline).__iter__().__next__())  # warm-up of the student's first step
    times = {"offline": [], "online": []}
    for _ in range(repeats(quick)):
        times["offline"].append(timed(lambda: offline_epoch(offline, step))[0])
        times["online"].append(timed(lambda: online_epoch(online, step, model))[0])
    off, on = statistics.median(times["offline"]), statistics.median(times["online"])
    ratios = np.array(times["online"]) / np.array(times["offline"])
    return [
        {
            "student": "dass-tiny",
            "teacher": MN04,
            "samples": len(offline),
            "offline_s_per_epoch": round(off, 2),
            "online_s_per_epoch": round(on, 2),
            "offline_samples_per_s": round(len(offline) / off, 2),
            "online_samples_per_s": round(len(offline) / on, 2),
            "speedup": round(float(np.median(ratios)), 2),
        }
    ]


if __name__ == "__main__":
    print(markdown(run(quick="--quick" in sys.argv)))
