"""Stage one: run teachers over replayable views of every clip into a logit store, and plan that run beforehand.

`kd.dump` keeps the names it had as one module: `from kd.dump import DumpConfig, dump_teachers` still works.
"""

from kd.dump.config import (
    MAX_CLIP_SECONDS,
    MIN_CLIP_SECONDS,
    SCHEDULER_ADDRESS,
    DumpConfig,
    check_scheduler,
    check_teacher_names,
    check_whole_numbers,
    default_workers,
    settings_from_store,
)
from kd.dump.run import BlockPlan, DumpReport, Failure, compute_batch, dump_teachers, render_batch, top_k

__all__ = [
    "MAX_CLIP_SECONDS",
    "MIN_CLIP_SECONDS",
    "SCHEDULER_ADDRESS",
    "BlockPlan",
    "DumpConfig",
    "DumpReport",
    "Failure",
    "check_scheduler",
    "check_teacher_names",
    "check_whole_numbers",
    "compute_batch",
    "default_workers",
    "dump_teachers",
    "render_batch",
    "settings_from_store",
    "top_k",
]
