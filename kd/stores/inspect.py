"""Store summaries (`kd store info`) and integrity checks (`kd store verify`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kd.stores.logit_store import LogitStore, teacher_key


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


def _dir_bytes(path: Path) -> int:
    # Array chunks only: zarr.json holds provenance, not data.
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.name != "zarr.json")


def summarise_store(path: str) -> tuple[LogitStore, list[TeacherSummary]]:
    store = LogitStore(path)
    out = []
    for name in store.teacher_names():
        group = store.teacher(name)
        attrs = group.attrs
        size = _dir_bytes(Path(path) / "teachers" / teacher_key(name))
        out.append(
            TeacherSummary(
                name=name,
                k=group.k,
                blocks_done=int(group.done_blocks().sum()),
                blocks_total=store.num_blocks,
                failed_views=int(np.asarray(group.failed[:]).sum()),
                bytes_on_disk=size,
                bytes_per_clip_view=size / max(1, store.num_clips * store.num_views),
                sample_rate=int(attrs.get("sample_rate", 0)),
                checkpoint_sha256=str(attrs.get("checkpoint_sha256", "")),
                uncovered=len(attrs["label_mapping"]["uncovered_target"]),
            )
        )
    return store, out


def verify_store(path: str) -> list[str]:
    """Every inconsistency found (empty when the store is sound)."""
    problems: list[str] = []
    store = LogitStore(path)
    n, v, c = store.num_clips, store.num_views, len(store.labels)
    for name, shape in (("clips/id", (n,)), ("clips/path", (n,)), ("clips/duration", (n,)), ("views/seed", (n, v))):
        if name not in store.root:
            problems.append(f"missing array {name}")
        elif store.root[name].shape != shape:
            problems.append(f"{name} has shape {store.root[name].shape}, expected {shape}")
    if problems:
        return problems
    ids = store.clip_ids()
    if len(set(ids)) != len(ids):
        problems.append("duplicate clip ids")
    from kd.augment import view_seed

    expected = np.array([[view_seed(int(store.attrs["base_seed"]), i, j) for j in range(v)] for i in ids], np.uint64)
    if not np.array_equal(store.seeds(), expected.reshape(n, v)):
        problems.append("view seeds differ from those the store's base seed and clip ids give")
    for name in store.teacher_names():
        group = store.teacher(name)
        k = group.k
        done = group.done_blocks()
        logits, indices, rest, failed = group.logits[:], group.indices[:], group.rest[:], group.failed[:]
        covered = group.covered
        for block in np.flatnonzero(done):
            rows = store.block_rows(int(block))
            ok = ~failed[rows]
            lg, ix = logits[rows][ok], indices[rows][ok]
            where = f"teacher {name!r} block {block}"
            if not np.isfinite(lg).all():
                problems.append(f"{where}: non-finite logits in views not marked failed")
            if ((ix < 0) | (ix >= c)).any():
                problems.append(f"{where}: class indices outside 0..{c - 1}")
            elif not covered[ix].all():
                problems.append(f"{where}: class indices the teacher does not cover")
            if ix.size and (np.sort(ix, axis=-1)[..., 1:] == np.sort(ix, axis=-1)[..., :-1]).any():
                problems.append(f"{where}: repeated class indices within a view")
            if lg.size and (np.diff(lg.astype(np.float32), axis=-1) > 0).any():
                problems.append(f"{where}: top-k logits not in descending order")
            if int(covered.sum()) > k and not np.isfinite(rest[rows][ok]).all():
                problems.append(f"{where}: missing fill values for the classes outside the top {k}")
            if failed[rows].any() and np.isfinite(logits[rows][failed[rows]]).any():
                problems.append(f"{where}: failed views hold logits")
        if not done.all():
            problems.append(f"teacher {name!r}: {int((~done).sum())} of {len(done)} blocks incomplete")
    return problems
