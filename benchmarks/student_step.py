"""Student training step on the CPU: samples/s of each DASS size, and where a step's time goes.

The step is `kd train-student`'s (forward from features, BCE, backward, clip, AdamW, EMA; see `loader.StudentStep`)
at batch 16 on 5 s clips, the ESC-50 study's setting. The breakdown times the selective scan's forward (every call
of `selective_scan`) and backward (`ChunkedScan.backward`) inside the same steps, so the shares are of one run.
Patch size is the lever: the scan is sequential in positions, and a stride-8 patch embedding has a quarter of a
stride-4 one's positions per stage (and its working set stays in cache).
"""

from __future__ import annotations

import statistics
import sys
import time
from contextlib import contextmanager

import torch

from benchmarks.common import markdown, repeats
from benchmarks.loader import StudentStep

STUDENTS = ("dass-tiny", "dass-mini", "dass-mini-p16", "dass-midi-p16")
BATCH = 16
SECONDS = 5.0


@contextmanager
def scan_clock():
    """Accumulates wall seconds spent in the selective scan's forward and backward while active."""
    from kd.students import dass
    from kd.students.scan_grad import ChunkedScan

    spent = {"scan_forward": 0.0, "scan_backward": 0.0}
    forward, backward = dass.selective_scan, ChunkedScan.backward

    def timed_forward(*args, **kwargs):
        began = time.perf_counter()
        try:
            return forward(*args, **kwargs)
        finally:
            spent["scan_forward"] += time.perf_counter() - began

    def timed_backward(ctx, *grads):
        began = time.perf_counter()
        try:
            return backward(ctx, *grads)
        finally:
            spent["scan_backward"] += time.perf_counter() - began

    dass.selective_scan, ChunkedScan.backward = timed_forward, staticmethod(timed_backward)
    try:
        yield spent
    finally:
        dass.selective_scan, ChunkedScan.backward = forward, staticmethod(backward)


def profile(name: str, times: int) -> dict:
    step = StudentStep(name)
    model = step.model
    frames = int(SECONDS * 100) - 2  # DASS fbank: 25 ms windows every 10 ms
    torch.manual_seed(0)
    batch = {
        "features": torch.randn(BATCH, frames, model.config.frontend.num_mel_bins),
        "targets": torch.rand(BATCH, model.num_classes),
        "mask": torch.ones(BATCH, model.num_classes, dtype=torch.bool),
        "labels": torch.zeros(BATCH, model.num_classes),
    }
    step(batch)  # warm-up
    steps, scans = [], []
    for _ in range(times):
        with scan_clock() as spent:
            began = time.perf_counter()
            step(batch)
            steps.append(time.perf_counter() - began)
        scans.append(spent)
    seconds = statistics.median(steps)
    with torch.no_grad():
        height, width = model.patch_embed(batch["features"][:1].transpose(1, 2)[:, None]).shape[1:3]
    return {
        "student": name,
        "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "patch": model.config.patch_size,
        "stage1_positions": height * width,
        "step_s": round(seconds, 3),
        "samples_per_s": round(BATCH / seconds, 1),
        "scan_fwd_share": round(statistics.median(s["scan_forward"] / t for s, t in zip(scans, steps, strict=True)), 2),
        "scan_bwd_share": round(
            statistics.median(s["scan_backward"] / t for s, t in zip(scans, steps, strict=True)), 2
        ),
    }


def run(quick: bool = False) -> list[dict]:
    """One row per student: parameters, stage-1 positions, step time and samples/s, scan shares of the step."""
    times = repeats(quick)
    return [profile(name, times) for name in (STUDENTS[::2] if quick else STUDENTS)]


if __name__ == "__main__":
    print(markdown(run(quick="--quick" in sys.argv)))
