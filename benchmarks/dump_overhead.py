"""Dump overhead: `dump_teachers` wall time over the bare teacher forward on the same views (target <= 1.15).

The bare time is `teacher.logits` on batches rendered beforehand (same clips, views, seeds and batch size 16), so
decoding, augmentation, top-k reduction, Zarr writes and start-up all count as overhead. Each repetition runs the
bare forward and then the dumps for every worker count back to back; the ratio is the median of the per-repetition
ratios. The serial render time (decode, resample, augment, one process) is shown for where the time goes.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.common import (
    MN04,
    checkpoint,
    markdown,
    plan_of,
    rendered_views,
    repeats,
    teacher,
    timed,
    write_manifest,
)

VIEWS = 2
BATCH = 16


def bare_forward(batches: list[dict]) -> None:
    model = teacher(MN04)
    for batch in batches:
        model.logits(batch["waves"])  # views are rendered at 32 kHz, mn04's rate: no resampling


def run(quick: bool = False) -> list[dict]:
    """One row per DataLoader worker count: dump time, bare forward time, their ratio, clips/s."""
    from kd.dump import DumpConfig, dump_teachers, render_batch

    views = rendered_views(quick, VIEWS, BATCH)
    num_clips, num_items = views.store.num_clips, views.num_items
    model = teacher(MN04)
    model.logits(views.batches[0]["waves"][:2])  # warm-up: first-call allocations are not the dump's overhead
    worker_counts = (0, 2) if quick else (0, 1, 2)
    directory = Path(tempfile.mkdtemp(prefix="kd-bench-dump-"))
    manifest = write_manifest(directory, quick)
    bare, dumps = [], {w: [] for w in worker_counts}
    for r in range(repeats(quick)):
        bare.append(timed(lambda: bare_forward(views.batches))[0])
        for w in worker_counts:
            config = DumpConfig(
                manifest=manifest,
                store=str(directory / f"w{w}-r{r}.zarr"),
                teachers=[MN04],
                checkpoints={MN04: checkpoint(MN04)},
                views=VIEWS,
                k=20,
                batch_size=BATCH,
                workers=w,
                progress=False,
            )
            seconds, report = timed(lambda config=config: dump_teachers(config))
            assert report.views_computed == num_items and not report.failures
            dumps[w].append(seconds)
    plan = plan_of(views.store, BATCH)
    render_s = timed(lambda: [render_batch(plan, items) for items in plan.batches(0)])[0]
    rows = []
    for w in worker_counts:
        ratios = [d / b for d, b in zip(dumps[w], bare, strict=True)]
        dump_s = statistics.median(dumps[w])
        rows.append(
            {
                "workers": w,
                "clips": num_clips,
                "views": num_items,
                "dump_s": round(dump_s, 2),
                "bare_forward_s": round(statistics.median(bare), 2),
                "serial_render_s": round(render_s, 2),
                "ratio": round(statistics.median(ratios), 3),
                "clips_per_s": round(num_clips / dump_s, 2),
                "views_per_s": round(num_items / dump_s, 2),
            }
        )
    return rows


if __name__ == "__main__":
    print(markdown(run(quick="--quick" in sys.argv)))
