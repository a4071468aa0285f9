"""Stage one, `kd dump-teachers`: run teachers over replayable views of every clip into a logit store.

Work is split into blocks of clips (one shard of every teacher array). A block is computed as a fixed sequence of
batches, so its bytes do not depend on what else runs: a resumed, a distributed and an uninterrupted dump write the
same store. The driver creates every array; how a block is claimed, written and marked done is the store's protocol
(`kd.stores.blocks`): this module only decides which blocks run, and where.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import numpy as np
import torch

from kd.core.audio import resample
from kd.core.augment import AugmentPolicy, draw_view, policy_by_name
from kd.core.errors import AudioError, ConfigError, KdError
from kd.core.labels import audioset_labels
from kd.core.manifest import load_manifest
from kd.core.views import ClipTable, render_view
from kd.dump.config import DumpConfig
from kd.stores.blocks import BlockBuffer, all_done, block_claims, pending_teachers
from kd.stores.logit_store import LogitStore, create_store, remove_leftovers, store_exists
from kd.teachers import Teacher, create_teacher


@dataclass
class Failure:
    clip_id: str
    view: int
    reason: str


@dataclass
class DumpReport:
    store: str
    teachers: list[str]
    blocks_total: int
    blocks_computed: int
    blocks_skipped: int
    views_computed: int
    seconds: float
    failures: list[Failure]
    unmapped: dict[str, list[str]]

    @property
    def views_per_second(self) -> float:
        return self.views_computed / self.seconds if self.seconds > 0 else 0.0


# -- one block -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockPlan:
    """What a task needs to render a block's views: pure data, cheap to send to a dask worker."""

    table: ClipTable
    seeds: np.ndarray
    policy: AugmentPolicy
    ids: list[str]
    batch_size: int
    block_size: int

    def batches(self, block: int) -> list[list[tuple[int, int]]]:
        """The fixed batches of (clip, view) items of one block, in order."""
        first, last = block * self.block_size, min(len(self.table), (block + 1) * self.block_size)
        items = [(c, v) for c in range(first, last) for v in range(self.seeds.shape[1])]
        return [items[i : i + self.batch_size] for i in range(0, len(items), self.batch_size)]


def render_batch(plan: BlockPlan, items: list[tuple[int, int]]) -> dict:
    """Renders a batch of views at the policy's rate; undecodable views are flagged, never zero-filled."""
    waves = torch.zeros(len(items), plan.policy.num_samples)
    failed = np.zeros(len(items), dtype=bool)
    reasons: list[str] = [""] * len(items)
    for row, (clip, view) in enumerate(items):
        params = draw_view(plan.policy, int(plan.seeds[clip, view]), clip, len(plan.table), view)
        try:
            waves[row] = render_view(plan.table, clip, params, plan.policy)
        except (AudioError, ValueError) as e:
            failed[row], reasons[row] = True, str(e)
            continue
        if not torch.isfinite(waves[row]).all():
            failed[row], reasons[row] = True, "the augmented view has non-finite samples"
    return {"items": items, "waves": waves, "failed": failed, "reasons": reasons}


class _RenderedBatches(torch.utils.data.Dataset):
    """Batches rendered in DataLoader workers (decode + resample + augment off the main process)."""

    def __init__(self, plan: BlockPlan, batches: list[tuple[int, list[tuple[int, int]]]]) -> None:
        self.plan = plan
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict:
        block, items = self.batches[index]
        return {"block": block, **render_batch(self.plan, items)}


def top_k(teacher: Teacher, index: torch.Tensor, num_classes: int, waves: torch.Tensor, rate: int, k: int) -> dict:
    """Teacher logits in the store's label space, reduced to top-k plus the rest's mean probability as a logit.

    Args:
        index: for each of the teacher's classes, its store class or -1.
        waves: views [batch, samples] at `rate`.
    """
    logits = teacher.logits(resample(waves, rate, teacher.card.sample_rate)).float().cpu()
    valid = index >= 0
    full = torch.full((len(waves), num_classes), float("-inf"))
    full[:, index[valid]] = logits[:, valid]
    values, indices = full.topk(k, dim=1)
    covered = int(valid.sum())
    probs = torch.sigmoid(full.double())
    rest_sum = probs.sum(dim=1) - torch.sigmoid(values.double()).sum(dim=1)
    if covered > k:
        mean = (rest_sum / (covered - k)).clamp(1e-7, 1 - 1e-7)
        rest = torch.log(mean) - torch.log1p(-mean)
    else:
        rest = torch.full((len(waves),), float("nan"), dtype=torch.float64)
    return {"logits": values.numpy(), "indices": indices.numpy(), "rest": rest.numpy()}


def compute_batch(
    batch: dict, teachers: dict[str, tuple[Teacher, torch.Tensor, int]], buffer: BlockBuffer, store: LogitStore
) -> list[tuple[int, str]]:
    """Runs each teacher on a rendered batch into `buffer`.

    A teacher output that is not finite once stored (float16) is stored as a failed view, never as a valid one.

    Returns:
        (row, reason) for each such output.
    """
    outputs, failed, bad = {}, {}, []
    unreadable = np.asarray(batch["failed"], dtype=bool)  # a DataLoader hands it over as a tensor
    for name, (teacher, index, k) in teachers.items():
        out = top_k(teacher, index, len(store.labels), batch["waves"], store.policy.sample_rate, k)
        finite = np.isfinite(out["logits"].astype(np.float16)).all(axis=1)
        if int((index >= 0).sum()) > k:
            finite &= np.isfinite(out["rest"].astype(np.float16))
        for row in np.flatnonzero(~finite & ~unreadable):
            bad.append((int(row), f"teacher {name} gave non-finite logits (samples far outside [-1, 1]?)"))
        outputs[name], failed[name] = out, unreadable | ~finite
    buffer.add(batch["items"], outputs, failed)
    return bad


# -- the driver ----------------------------------------------------------------------------------------------------


def dump_teachers(config: DumpConfig) -> DumpReport:
    """Runs the dump described by `config`; returns what was done and which views failed."""
    from kd.core.progress import format_rate, progress_bar

    start_time = time.perf_counter()
    overrides = {} if config.clip_seconds is None else {"clip_seconds": config.clip_seconds}
    policy = policy_by_name(config.policy, **overrides)
    # An existing store carries its own label space and durations: no label file or header reads needed.
    existing = LogitStore(config.store) if store_exists(config.store) else None
    labels = existing.labels if existing else audioset_labels(config.labels)
    manifest = load_manifest(config.manifest, labels=labels, check_files=False)
    if not manifest.clips:
        raise ConfigError(f"{config.manifest}: manifest has no clips")
    # Teachers first: a wrong name or missing weights fails before any header is read or anything is written.
    built = {
        name: create_teacher(name, checkpoint=config.checkpoints.get(name)).to(config.device)
        for name in config.teachers
    }
    mappings = {name: teacher.labels.map_to(labels) for name, teacher in built.items()}
    for name, mapping in mappings.items():
        if not mapping.covered.any():
            raise ConfigError(
                f"teacher {name!r} has no class in the store's label space ({labels.name}, {len(labels)} classes); "
                "check --labels"
            )
    durations = existing.durations() if existing else _durations(manifest, config.progress)
    store = create_store(
        config.store, manifest, durations, labels, policy, config.views, config.seed, config.block_size
    )
    remove_leftovers(config.store)
    if existing:
        _reread_unreadable(store, manifest, durations)
    teachers, groups, unmapped = {}, {}, {}
    for name, teacher in built.items():
        mapping = mappings[name]
        if mapping.unmapped_source:
            unmapped[name] = mapping.unmapped_source
        provenance = {
            "card": _jsonable(teacher.card.to_json()),
            "checkpoint_sha256": teacher.checkpoint_sha256,
            "frontend": _jsonable(teacher.card.frontend),
            "sample_rate": teacher.card.sample_rate,
        }
        groups[name] = store.add_teacher(name, provenance, mapping, config.k)
        teachers[name] = (teacher, torch.as_tensor(mapping.index), groups[name].k)

    done = {name: groups[name].done_blocks() for name in config.teachers}
    pending = [b for b in range(store.num_blocks) if not all(done[n][b] for n in config.teachers)]
    plan = BlockPlan(
        table=store.clip_table(),
        seeds=store.seeds(),
        policy=policy,
        ids=store.clip_ids(),
        batch_size=config.batch_size,
        block_size=store.block_size,
    )
    failures: list[Failure] = []
    locks = block_claims(config.store, config.teachers)
    computed = 0
    bar = progress_bar(disable=not config.progress)
    with bar:
        total = sum(store.block_rows(b).stop - store.block_rows(b).start for b in pending) * store.num_views
        task = bar.add_task("dumping", total=total, rate="", info="")
        views_done = 0

        def advance(n: int) -> None:
            nonlocal views_done
            views_done += n
            bar.update(task, advance=n, rate=format_rate(views_done, time.perf_counter() - start_time, "views"))

        remaining = list(pending)
        while remaining:
            mine = [b for b in remaining if locks.claim(b)]
            # A block finished by another dump between our scan and our claim must not be written again.
            for b in [b for b in mine if all_done(groups, b)]:
                locks.release(b)
                mine.remove(b)
            if mine:
                runner = _run_distributed if config.scheduler else _run_local
                computed += runner(config, store, plan, teachers, groups, mine, locks, failures, advance)
            remaining = [b for b in remaining if b not in mine and not all_done(groups, b)]
            if remaining:
                bar.update(task, info=f"waiting for {len(remaining)} blocks held by another dump")
                time.sleep(0.5)
    locks.cleanup()
    # The driver alone, once every writer of this dump is done.
    store.consolidate()
    return DumpReport(
        store=config.store,
        teachers=config.teachers,
        blocks_total=store.num_blocks,
        blocks_computed=computed,
        blocks_skipped=store.num_blocks - len(pending),
        views_computed=views_done,
        seconds=time.perf_counter() - start_time,
        failures=failures,
        unmapped=unmapped,
    )


def _run_local(config, store, plan, teachers, groups, blocks, locks, failures, advance) -> int:
    """Renders in DataLoader workers, runs teachers in this process, writes each block as it completes."""
    batches = [(b, items) for b in blocks for items in plan.batches(b)]
    loader = torch.utils.data.DataLoader(
        _RenderedBatches(plan, batches),
        batch_size=None,
        num_workers=config.workers,
        prefetch_factor=4 if config.workers else None,
        persistent_workers=False,
    )
    buffers: dict[int, BlockBuffer] = {}
    computed = 0
    for batch in loader:
        block = batch["block"]
        if block not in buffers:
            # Which teachers a block still needs is read once, when its first batch arrives.
            pending = pending_teachers({n: groups[n] for n in teachers}, block)
            buffers[block] = BlockBuffer(store, block, {n: teachers[n][2] for n in pending})
        buffer = buffers[block]
        names = list(buffer.data)
        bad = compute_batch(batch, {n: teachers[n] for n in names}, buffer, store)
        _collect_failures(plan, batch, bad, failures)
        advance(len(batch["items"]))
        if buffer.complete:
            if buffers.pop(block).write({n: groups[n] for n in names}, config.skip_bad):
                computed += 1
            locks.release(block)
    return computed


def _collect_failures(plan: BlockPlan, batch: dict, bad: list[tuple[int, str]], failures: list[Failure]) -> None:
    """Adds the batch's unreadable views and its non-finite teacher outputs (`bad`: row, reason) to `failures`."""
    for (clip, view), unreadable, reason in zip(batch["items"], batch["failed"], batch["reasons"], strict=True):
        if unreadable:
            failures.append(Failure(plan.ids[clip], view, reason))
    for row, reason in bad:
        clip, view = batch["items"][row]
        failures.append(Failure(plan.ids[clip], view, reason))


def _run_distributed(config, store, plan, teachers, groups, blocks, locks, failures, advance) -> int:
    """Runs each block as a dask task (any dask.distributed scheduler, or `local:N` for a LocalCluster)."""
    from dask.distributed import Client, LocalCluster, as_completed

    scheduler = config.scheduler
    if scheduler.startswith("local:"):
        n = int(scheduler.split(":", 1)[1])  # checked by DumpConfig
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        cluster = None
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as e:
            raise KdError(f"cannot reach dask scheduler {scheduler!r} ({e})") from None
    computed = 0
    try:
        plan_future = client.scatter(plan, broadcast=True)
        futures = {
            client.submit(
                _dump_block_task,
                config.store,
                config.teachers,
                dict(config.checkpoints),
                config.device,
                plan_future,
                block,
                config.skip_bad,
                pure=False,
            ): block
            for block in blocks
        }
        for future in as_completed(futures):
            block = futures[future]
            ok, block_failures, views = future.result()
            failures.extend(Failure(*f) for f in block_failures)
            computed += ok
            locks.release(block)
            advance(views)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return computed


_WORKER_TEACHERS: dict[tuple[str, str | None, str], Teacher] = {}


def _dump_block_task(
    store_path: str,
    names: list[str],
    checkpoints: dict[str, str],
    device: str,
    plan: BlockPlan,
    block: int,
    skip_bad: bool,
) -> tuple[bool, list[tuple[str, int, str]], int]:
    """One block on a dask worker: the same batches, the same arithmetic, the same writes as the local path."""
    store = LogitStore(store_path, mode="a")
    groups = {n: store.teacher(n) for n in names}
    pending = pending_teachers(groups, block)
    teachers = {}
    for name in pending:
        key = (name, checkpoints.get(name), device)
        if key not in _WORKER_TEACHERS:
            _WORKER_TEACHERS[key] = create_teacher(name, checkpoint=checkpoints.get(name)).to(device)
        teacher = _WORKER_TEACHERS[key]
        teachers[name] = (teacher, torch.as_tensor(groups[name].label_index), groups[name].k)
    buffer = BlockBuffer(store, block, {n: teachers[n][2] for n in pending})
    failures: list[Failure] = []
    for items in plan.batches(block):
        batch = render_batch(plan, items)
        _collect_failures(plan, batch, compute_batch(batch, teachers, buffer, store), failures)
    ok = buffer.write({n: groups[n] for n in pending}, skip_bad)
    return ok, [(f.clip_id, f.view, f.reason) for f in failures], buffer.seen


def _reread_unreadable(store: LogitStore, manifest, durations: np.ndarray) -> None:
    """Reads again the headers of clips that were unreadable when the store was made: a fixed file then dumps."""
    from kd.core.manifest import clip_duration

    missing = np.flatnonzero(np.isnan(durations))
    fixed = durations.copy()
    for i in missing:
        with contextlib.suppress(KdError):
            fixed[i] = clip_duration(manifest.clips[i])
    if not np.array_equal(fixed, durations, equal_nan=True):
        store.set_durations(fixed)


def _durations(manifest, progress: bool) -> np.ndarray:
    """Header durations; an unreadable clip gets NaN here and fails (recorded, listed) when its views render."""
    from kd.core.manifest import clip_duration
    from kd.core.progress import track

    out = np.full(len(manifest), np.nan)
    items = (
        track(enumerate(manifest.clips), "reading headers", total=len(manifest))
        if progress
        else enumerate(manifest.clips)
    )
    for i, clip in items:
        try:
            out[i] = clip_duration(clip)
        except KdError:
            pass
    return out


def _jsonable(value: object) -> object:
    import json

    return json.loads(json.dumps(value, default=str))
