"""Store summaries (`kd store info`) and integrity checks (`kd store verify`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kd.core.errors import StoreDamaged
from kd.stores.checks import clip_problems, seed_problems, teacher_problems
from kd.stores.logit_store import LogitStore, TeacherGroup


@dataclass
class TeacherSummary:
    name: str
    k: int
    blocks_done: int
    blocks_total: int
    failed_views: int
    bytes_on_disk: int
    bytes_per_clip_view: float
    sample_rate: int
    checkpoint_sha256: str
    uncovered: int


def _stored_bytes(group: TeacherGroup) -> int:
    # Zarr's own count, so URL stores are measured too (it includes each array's small zarr.json).
    return sum(int(array.nbytes_stored()) for _, array in group.group.arrays())


def summarise_store(path: str) -> tuple[LogitStore, list[TeacherSummary]]:
    store = LogitStore(path)
    out = []
    for name in store.teacher_names():
        group = store.teacher(name)
        attrs = group.attrs
        size = _stored_bytes(group)
        out.append(
            TeacherSummary(
                name=name,
                k=group.k,
                blocks_done=int(group.done_blocks().sum()),
                blocks_total=store.num_blocks,
                failed_views=int(np.asarray(group.read("failed")).sum()),
                bytes_on_disk=size,
                bytes_per_clip_view=size / max(1, store.num_clips * store.num_views),
                sample_rate=int(attrs.get("sample_rate", 0)),
                checkpoint_sha256=str(attrs.get("checkpoint_sha256", "")),
                uncovered=len(attrs["label_mapping"]["uncovered_target"]),
            )
        )
    return store, out


def verify_store(path: str) -> list[str]:
    """Every inconsistency found (empty when the store is sound); each names the array it concerns.

    Beyond training's checks (kd.stores.checks) it recomputes every seed, checks the order and uniqueness of each
    view's top-k, that failed views hold nothing, and that every block is done.
    """
    store = LogitStore(path)
    problems: list[str] = []

    def run(check, *args, **kwargs) -> list[str]:
        try:
            return check(*args, **kwargs)
        except StoreDamaged as e:  # an array that cannot be read at all is one problem, the others still run
            return [e.detail]

    problems += run(clip_problems, store)
    if not any(p.startswith("clips/id") for p in problems):
        problems += run(lambda: seed_problems(store, store.clip_ids(), sample=None))
    try:
        names = store.teacher_names()
    except StoreDamaged as e:
        return [*problems, e.detail]
    for name in names:
        problems += run(_teacher, store, name)
    return problems


def _teacher(store: LogitStore, name: str) -> list[str]:
    group = store.teacher(name)
    done = group.done_blocks()
    problems = teacher_problems(store, name, group.load(), done, full=True)
    if not done.all():
        problems.append(f"teacher {name!r}: {int((~done).sum())} of {len(done)} blocks incomplete")
    return problems
