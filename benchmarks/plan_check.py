"""`kd plan` against a real dump: the plan's dump-time estimate, then the dump it describes, on the shared clips.

mn04 and YAMNet (the teachers with weights here) over 12 shared clips x 2 views (6 in quick mode), k = 50, the
dump's default workers and batch size, in this process (the suite's thread setting applies to both). The ratio is
real over estimated wall time; the issue asks for it within 0.7-1.5.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from benchmarks.common import MN04, YAMNET, checkpoint, markdown, set_clip_limit, timed, write_manifest

CLIPS = 12
VIEWS = 2


def run(quick: bool = False) -> list[dict]:
    from kd.dump import DumpConfig, dump_teachers
    from kd.dump.plan import PlanConfig, plan_dump

    set_clip_limit(6 if quick else CLIPS)
    try:
        directory = tempfile.mkdtemp(prefix="kd-bench-plan-")
        manifest = write_manifest(directory, quick=False)
    finally:
        set_clip_limit(None)
    teachers = [MN04, YAMNET]
    checkpoints = {name: checkpoint(name) for name in teachers}
    plan_seconds, plan = timed(
        lambda: plan_dump(PlanConfig(manifest=manifest, teachers=teachers, checkpoints=checkpoints, views=VIEWS))
    )
    config = DumpConfig(
        manifest=manifest,
        store=str(Path(directory) / "check.zarr"),
        teachers=teachers,
        checkpoints=checkpoints,
        views=VIEWS,
        progress=False,
    )
    dump_seconds, report = timed(lambda: dump_teachers(config))
    if report.failures:
        raise RuntimeError(f"the check dump failed on {len(report.failures)} views")
    # Array data only, as `kd store info` counts it: zarr.json files hold provenance, directories are not data.
    files = Path(config.store, "teachers").rglob("*")
    store_bytes = sum(p.stat().st_size for p in files if p.is_file() and p.name != "zarr.json")
    teacher_bytes = sum(t.store_bytes for t in plan.teachers)
    return [
        {
            "teachers": "+".join(teachers),
            "views": plan.total_views,
            "calibration_s": round(plan_seconds, 1),
            "estimated_dump_s": round(plan.dump_seconds, 1),
            "real_dump_s": round(dump_seconds, 1),
            "real_over_estimate": round(dump_seconds / plan.dump_seconds, 2),
            "estimated_teacher_bytes": teacher_bytes,
            "real_teacher_bytes": store_bytes,
            "real_over_estimate_bytes": round(store_bytes / teacher_bytes, 2),
        }
    ]


if __name__ == "__main__":
    print(markdown(run(quick="--quick" in sys.argv)))
