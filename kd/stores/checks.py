"""What a store's arrays must satisfy, checked on arrays already in memory.

Zarr reads a lost chunk as its fill value (NaN logits, index -1, seed 0, empty strings), so damage looks like data.
Training runs the cheap checks on everything it loads; `kd store verify` runs them all and more (kd.stores.inspect).
Each problem starts with the array it concerns.
"""

from __future__ import annotations

import numpy as np

from kd.core.augment import view_seed
from kd.core.errors import StoreDamaged
from kd.stores.logit_store import LogitStore, clips_digest, teacher_key

SEED_SAMPLE = 256
"""Rows whose seeds training recomputes (verify recomputes all): enough to catch a lost or shifted chunk."""


def clip_problems(store: LogitStore) -> list[str]:
    """The clips table: ids present and unique, paths present, segments and durations sane, digests as written."""
    n = store.num_clips
    columns = {name: store.read(f"clips/{name}") for name in ("id", "path", "start", "end", "duration", "labels")}
    problems = [f"clips/{name}: shape {a.shape}, expected ({n},)" for name, a in columns.items() if a.shape != (n,)]
    if problems:
        return problems
    ids = [str(x) for x in columns["id"]]
    paths = [str(x) for x in columns["path"]]
    start = np.asarray(columns["start"], dtype=np.float64)
    end = np.asarray(columns["end"], dtype=np.float64)
    duration = np.asarray(columns["duration"], dtype=np.float64)
    checks = {
        "clips/id": (sum(not x for x in ids), "empty clip ids"),
        "clips/path": (sum(not x for x in paths), "empty paths"),
        "clips/start": (int((~np.isfinite(start) | (start < 0)).sum()), "segment starts not finite or negative"),
        "clips/end": (int((~np.isnan(end) & ~(end > start)).sum()), "segment ends not after their starts"),
        "clips/duration": (int((~np.isnan(duration) & ~(duration > 0)).sum()), "durations not positive"),
    }
    problems = [f"{name}: {count} {what}" for name, (count, what) in checks.items() if count]
    if len(set(ids)) != len(ids):
        problems.append(f"clips/id: {len(ids) - len(set(ids))} duplicate clip ids")
    written = store.attrs.get("clips_sha256")
    if isinstance(written, dict):
        now = clips_digest({name: columns[name] for name in written if name in columns})
        problems += [
            f"clips/{name}: differs from what the store was made with (a lost or changed chunk)"
            for name in written
            if now.get(name) != written[name]
        ]
    return problems


def seed_problems(store: LogitStore, ids: list[str], sample: int | None = SEED_SAMPLE) -> list[str]:
    """views/seed: the shape, no zero (a lost chunk), and (for `sample` evenly spread rows, None: all) the seeds
    that the base seed and clip ids give."""
    n, v = store.num_clips, store.num_views
    seeds = store.seeds()
    if seeds.shape != (n, v):
        return [f"views/seed: shape {seeds.shape}, expected {(n, v)}"]
    problems = []
    zeros = int((seeds == 0).sum())
    if zeros:
        problems.append(f"views/seed: {zeros} seeds are 0 (a lost chunk reads as 0)")
    rows = range(n) if sample is None or n <= sample else np.linspace(0, n - 1, sample).round().astype(int)
    base = store.base_seed
    wrong = sum(1 for i in rows for j in range(v) if int(seeds[i, j]) != view_seed(base, ids[i], j))
    if wrong:
        problems.append(f"views/seed: {wrong} seeds differ from those the base seed and clip ids give")
    return problems


def teacher_problems(
    store: LogitStore, name: str, arrays: dict[str, np.ndarray], done: np.ndarray, full: bool = False
) -> list[str]:
    """A teacher's loaded arrays: shapes, then in done blocks every view not marked failed has finite logits,
    covered class indices in range and (when k < covered classes) a finite fill. `full` adds verify's checks:
    descending order, no repeated index, failed views holding nothing."""
    key = f"teachers/{teacher_key(name)}"
    n, v, c = store.num_clips, store.num_views, len(store.labels)
    covered = arrays["covered"]
    k = store.teacher(name).k
    expected = {"logits": (n, v, k), "indices": (n, v, k), "rest": (n, v), "failed": (n, v)}
    problems = [
        f"{key}/{array}: shape {arrays[array].shape}, expected {shape}"
        for array, shape in expected.items()
        if arrays[array].shape != shape
    ]
    if done.shape != (store.num_blocks,):
        problems.append(f"{key}/done: shape {done.shape}, expected ({store.num_blocks},)")
    if covered.shape != (c,):
        problems.append(f"{key}: coverage of {covered.shape[0]} classes, expected {c}")
    if problems:
        return problems
    rows = np.repeat(done, store.block_size)[:n][:, None] & ~arrays["failed"]  # views stored as valid
    logits, indices = arrays["logits"][rows], arrays["indices"][rows]

    def views(bad: np.ndarray) -> str:
        blocks = np.unique(np.flatnonzero(rows)[bad] // v // store.block_size)  # flat (clip, view) -> block
        shown = ", ".join(str(b) for b in blocks[:5]) + (" ..." if len(blocks) > 5 else "")
        return f"{int(bad.sum())} views not marked failed (block {shown})"

    bad = ~np.isfinite(logits).all(axis=-1)
    if bad.any():
        problems.append(f"{key}/logits: non-finite values in {views(bad)}")
    out_of_range = ((indices < 0) | (indices >= c)).any(axis=-1)
    if out_of_range.any():
        problems.append(f"{key}/indices: class indices outside 0..{c - 1} in {views(out_of_range)}")
    elif indices.size and not covered[indices].all():
        problems.append(f"{key}/indices: classes the teacher does not cover in {views(~covered[indices].all(-1))}")
    if int(covered.sum()) > k:
        missing = ~np.isfinite(arrays["rest"][rows])
        if missing.any():
            problems.append(f"{key}/rest: missing fill values for the classes outside the top {k} in {views(missing)}")
    if full and not problems:
        ordered = np.sort(indices, axis=-1)
        if indices.size and (ordered[..., 1:] == ordered[..., :-1]).any():
            problems.append(f"{key}/indices: repeated class indices within a view")
        if logits.size and (np.diff(logits.astype(np.float32), axis=-1) > 0).any():
            problems.append(f"{key}/logits: top-k logits not in descending order")
        failed = np.repeat(done, store.block_size)[:n][:, None] & arrays["failed"]
        if np.isfinite(arrays["logits"][failed]).any():
            problems.append(f"{key}/logits: failed views hold logits")
    return problems


def check_loaded(store: LogitStore, names: list[str], loaded: dict[str, tuple[dict, np.ndarray]]) -> None:
    """Training's check of what it loaded: clips, a sample of seeds, each teacher's arrays.

    Args:
        loaded: per teacher name, (its `TeacherGroup.load()` arrays, its done flags).

    Raises:
        StoreDamaged: one line naming the first damaged array and `kd store verify`.
    """
    problems = clip_problems(store)
    if not problems:
        problems = seed_problems(store, store.clip_ids())
    for name in names:
        problems += teacher_problems(store, name, *loaded[name])
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise StoreDamaged(store.path, problems[0] + more)
