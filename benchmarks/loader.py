"""Loader throughput: samples/s the training input pipeline delivers, against the student's training step rate.

The pipeline is `kd train-student`'s: `DistillDataset` over a real mn04 store (the shared clips, 2 views, k = 20) in
a DataLoader (store arrays in memory, decode + crop + resample, replayed augmentation, DASS fbank features, ensemble
targets), one fresh DataLoader per epoch as the trainer makes, batch 16. The student step is the trainer's: forward
from features, BCE to the soft targets, backward, AdamW, EMA update, on real features; dass-tiny at batch 16 and
dass-small at batch 2. The loader and the step are timed apart: on 2 cores they share the CPU when training, so a
ratio above 1 means the loader is not what limits training.
"""

from __future__ import annotations

import statistics
import sys

import torch

from benchmarks.common import MN04, markdown, mn04_store, repeats, timed

VIEWS = 2
BATCH = 16


def dataset(quick: bool, frontend: torch.nn.Module, sample_rate: int):
    from kd.stores.logit_store import LogitStore
    from kd.stores.targets import EnsembleSpec
    from kd.train.distill_data import DistillDataset

    store = LogitStore(mn04_store(quick, VIEWS))
    return DistillDataset(store, EnsembleSpec(((MN04, 1.0),)), frontend, sample_rate)


def loader(data, workers: int, batch_size: int = BATCH) -> torch.utils.data.DataLoader:
    from kd.train import _collate

    return torch.utils.data.DataLoader(
        data,
        batch_size=batch_size,
        sampler=list(range(len(data))),
        num_workers=workers,
        collate_fn=_collate,
        generator=torch.Generator().manual_seed(0),
    )


class StudentStep:
    """One optimiser step of `kd train-student` (CPU, no accumulation): forward, loss, backward, clip, AdamW, EMA."""

    def __init__(self, name: str) -> None:
        from kd.students import create_student
        from kd.train import EMA, KDLoss

        torch.manual_seed(0)
        self.model = create_student(name, num_classes=527).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=5e-4, weight_decay=0.05)
        self.loss = KDLoss("bce", 1.0, 0.0)
        self.ema = EMA(self.model, 0.999)

    def __call__(self, batch: dict) -> float:
        logits = self.model.forward_features(batch["features"])
        loss = self.loss(logits, batch["targets"], batch["mask"], batch["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.model)
        return float(loss.detach())


def step_rate(name: str, batch: dict, times: int, warm_up: bool = True) -> float:
    """Training samples/s of `name` on this batch: median step time over `times` steps (after one warm-up)."""
    step = StudentStep(name)
    if warm_up:
        step(batch)
    seconds = statistics.median(timed(lambda: step(batch))[0] for _ in range(times))
    return len(batch["features"]) / seconds


def run(quick: bool = False) -> list[dict]:
    """One row per DataLoader worker count: loader samples/s and its ratio to each student's step rate."""
    from kd.students import create_student
    from kd.train import _collate

    student = create_student("dass-tiny")
    data = dataset(quick, student.frontend, student.sample_rate)
    batch = _collate([data[i] for i in range(min(BATCH, len(data)))])
    small = {k: v[:2] for k, v in batch.items()}
    times = repeats(quick)
    # A student step takes seconds on this CPU; quick mode times one cold step of each.
    tiny_rate = step_rate("dass-tiny", batch, 1 if quick else times + 1, warm_up=not quick)
    small_rate = step_rate("dass-small", small, 1 if quick else times, warm_up=not quick)
    rows = []
    for workers in (0, 2) if quick else (0, 1, 2):
        epochs = [timed(lambda w=workers: sum(len(b["features"]) for b in loader(data, w)))[0] for _ in range(times)]
        rate = len(data) / statistics.median(epochs)
        rows.append(
            {
                "workers": workers,
                "samples": len(data),
                "loader_samples_per_s": round(rate, 1),
                "dass_tiny_step_samples_per_s": round(tiny_rate, 1),
                "loader_over_tiny": round(rate / tiny_rate, 2),
                "dass_small_b2_step_samples_per_s": round(small_rate, 2),
                "loader_over_small": round(rate / small_rate, 1),
            }
        )
    return rows


if __name__ == "__main__":
    print(markdown(run(quick="--quick" in sys.argv)))
