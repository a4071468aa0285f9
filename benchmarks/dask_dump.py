"""Distributed dump: `dump_teachers` on a dask LocalCluster with 1 and 2 worker processes, and the scaling.

mn04 over the shared clips (2 views, blocks of 8 clips: 7 block tasks; 9 clips in blocks of 3 in quick mode), a
fresh store per run. Wall time includes starting the cluster and each worker building the teacher, as a user sees
it. dask's nanny starts workers with OMP_NUM_THREADS=1, so each worker's teacher runs on one thread. On a 2-core
machine shared with other jobs the scaling stays below 2.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.common import MN04, checkpoint, markdown, repeats, timed, write_manifest

VIEWS = 2


def run(quick: bool = False) -> list[dict]:
    """One row per worker count: wall seconds, clips/s, and the speed-up over one worker."""
    from kd.dump import DumpConfig, dump_teachers

    directory = Path(tempfile.mkdtemp(prefix="kd-bench-dask-"))
    manifest = write_manifest(directory, quick)
    block_size = 3 if quick else 8
    seconds: dict[int, list[float]] = {1: [], 2: []}
    clips = views = 0
    for r in range(repeats(quick)):
        for n in (1, 2):
            config = DumpConfig(
                manifest=manifest,
                store=str(directory / f"n{n}-r{r}.zarr"),
                teachers=[MN04],
                checkpoints={MN04: checkpoint(MN04)},
                views=VIEWS,
                k=20,
                block_size=block_size,
                scheduler=f"local:{n}",
                progress=False,
            )
            elapsed, report = timed(lambda config=config: dump_teachers(config))
            assert not report.failures and report.blocks_computed == report.blocks_total
            seconds[n].append(elapsed)
            views = report.views_computed
            clips = views // VIEWS
    base = statistics.median(seconds[1])
    return [
        {
            "workers": n,
            "clips": clips,
            "views": views,
            "blocks": -(-clips // block_size),
            "wall_s": round(statistics.median(seconds[n]), 2),
            "clips_per_s": round(clips / statistics.median(seconds[n]), 2),
            "scaling_vs_1": round(base / statistics.median(seconds[n]), 2),
        }
        for n in (1, 2)
    ]


if __name__ == "__main__":
    print(markdown(run(quick="--quick" in sys.argv)))
