"""The training loop against its own step: `kd train-student`'s samples/s next to the bare step's, and where a
step's wall time goes, without and with a warm feature cache (`--feature-cache`).

Store: `kd dump-teachers` of mn04 over ESC-50 training clips (every n-th of folds 1-3, as the ESC-50 study's, 5 s
views, k = 50). Student dass-mini-p16, batch 16, the trainer's defaults otherwise. At each torch thread count:

- bare: `kd.train.train_step` of the same run (forward, loss, backward, clip, AdamW, scheduler, EMA) on one synthetic
  batch of the real shape, as many steps as the loop takes, total seconds;
- loop: `train_student` for two epochs (fresh DataLoader per epoch, logging, the final checkpoint), samples over the
  loop's own seconds, with 0 DataLoader workers (rendering in the main process) and 1 (the ESC-50 study's); `cold`
  renders every view (no cache), `warm` reads a cache a first run filled.

The profile (one thread, in-process) times each stage of a batch by hand with the dataset's own functions; its
features are checked equal to the dataset's.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from benchmarks.common import markdown

STUDENT = "dass-mini-p16"
BATCH = 16
VIEWS = 4
K = 50
THREADS = (1, 2)
WORKERS = (0, 1)  # in-process, or the ESC-50 study's one worker rendering while the main process steps

_STORE: dict[int, str] = {}


def esc50_store(clips: int) -> str:
    """A real mn04 store over about `clips` ESC-50 training clips (once per process)."""
    if clips not in _STORE:
        from benchmarks.common import checkpoint
        from benchmarks.esc50_study import MN04, write_manifests
        from kd.dump import DumpConfig, dump_teachers

        directory = Path(tempfile.mkdtemp(prefix="kd-bench-loop-"))
        train, _ = write_manifests(directory, limit=clips)
        path = str(directory / "esc50.zarr")
        dump_teachers(
            DumpConfig(
                manifest=str(train),
                store=path,
                teachers=[MN04],
                checkpoints={MN04: checkpoint(MN04)},
                views=VIEWS,
                k=K,
                clip_seconds=5.0,
                block_size=128,
                workers=1,
                progress=False,
            )
        )
        _STORE[clips] = path
    return _STORE[clips]


def config(store: str, out: Path, steps: int, cache: str | None, workers: int = 0):
    from kd.train import TrainConfig

    return TrainConfig(
        store=store,
        out=str(out),
        student=STUDENT,
        batch_size=BATCH,
        steps=steps,
        warmup_steps=2,  # speed does not depend on it; the default 50 would warn on these short runs
        workers=workers,
        val_fraction=0.0,
        checkpoint_every=steps,
        progress=False,
        feature_cache=cache,
    )


def synthetic_batch(run) -> dict:
    frames = run.train_data[0]["features"].shape
    classes = len(run.store.labels)
    generator = torch.Generator().manual_seed(0)
    return {
        "features": torch.randn(BATCH, *frames, generator=generator),
        "targets": torch.rand(BATCH, classes, generator=generator),
        "mask": torch.ones(BATCH, classes, dtype=torch.bool),
        "labels": torch.zeros(BATCH, classes),
        "row": torch.zeros(BATCH, 2, dtype=torch.long),
    }


def bare_rate(store: str, out: Path, steps: int) -> float:
    """Samples/s of the trainer's own step on a synthetic batch (same run, student, batch, threads), timed as the loop
    is: `steps` steps of a fresh run, first step included, total seconds (a median of steps would drop the slow
    moments of a shared machine that the loop's total keeps)."""
    from kd.train import setup_run, train_step

    run = setup_run(config(store, out, steps, None))
    run.model.train()
    batch = synthetic_batch(run)
    began = time.perf_counter()
    for _ in range(steps):
        train_step(run, dict(batch))
    return steps * BATCH / (time.perf_counter() - began)


def loop_rate(store: str, out: Path, steps: int, cache: str | None, workers: int) -> float:
    from kd.train import train_student

    result = train_student(config(store, out, steps, cache, workers))
    return result.step * BATCH / result.seconds


def profile(store: str, out: Path, cache: str, batches: int) -> list[dict]:
    """Wall ms per batch of each stage, rendering (cold) and reading the filled cache (warm), and shares."""
    from kd.core.audio import resample
    from kd.core.augment import apply_freq_masks, apply_view, draw_view
    from kd.core.views import load_crop
    from kd.train import MetricsLog, save_run, setup_run, train_step
    from kd.train.run import _collate

    run = setup_run(config(store, out, 1000, cache, workers=0))
    data, policy = run.train_data, run.train_data.policy
    run.model.train()
    out.mkdir(parents=True, exist_ok=True)
    cold, warm = defaultdict(float), defaultdict(float)

    def clock(spent: dict, stage: str, began: float) -> float:
        now = time.perf_counter()
        spent[stage] += now - began
        return now

    for b in range(batches):
        indices = range(b * BATCH, (b + 1) * BATCH)
        cold_items, warm_items = [], []
        for index in indices:
            clip, view = data.rows[index]
            row = clip * data.num_views + view
            t = time.perf_counter()
            params = draw_view(policy, int(data.seeds[clip, view]), clip, len(data.table), view)
            wave = load_crop(data.table, clip, params.crop, policy)
            partner = None
            if params.partner >= 0:
                partner = load_crop(data.table, params.partner, params.partner_crop, policy)
            t = clock(cold, "decode + crop", t)
            wave = apply_view(wave, params, policy, partner)
            t = clock(cold, "augment (waveform)", t)
            wave = resample(wave, policy.sample_rate, data.sample_rate)
            t = clock(cold, "resample", t)
            with torch.no_grad():
                feats = data.frontend(wave[None])[0]
            t = clock(cold, "front end", t)
            data.cache.put(row, feats)
            t = clock(cold, "cache write (fills it)", t)
            masked = apply_freq_masks(feats, params.freq_masks)
            t = clock(cold, "augment (freq masks)", t)
            targets, mask = data.targets(clip, view)
            item = {"features": masked, "targets": targets, "mask": mask, "labels": data.labels(clip, params)}
            clock(cold, "targets + labels", t)
            cold_items.append(item)
            # Warm: the same view from the cache just written.
            t = time.perf_counter()
            params = draw_view(policy, int(data.seeds[clip, view]), clip, len(data.table), view)
            feats = data.cache.get(row)
            t = clock(warm, "cache read", t)
            masked = apply_freq_masks(feats, params.freq_masks)
            t = clock(warm, "augment (freq masks)", t)
            targets, mask = data.targets(clip, view)
            item = {"features": masked, "targets": targets, "mask": mask, "labels": data.labels(clip, params)}
            clock(warm, "targets + labels", t)
            warm_items.append(item)
            assert torch.equal(masked, data[index]["features"]), "the profile must time the dataset's own path"
        for spent, items in ((cold, cold_items), (warm, warm_items)):
            t = time.perf_counter()
            batch = _collate(items)
            clock(spent, "collate", t)
        batch["row"] = torch.zeros(BATCH, 2, dtype=torch.long)
        ema_update, ema_seconds = run.ema.update, []

        def timed_ema(model, update=ema_update, seconds=ema_seconds):
            began = time.perf_counter()
            update(model)
            seconds.append(time.perf_counter() - began)

        run.ema.update = timed_ema
        t = time.perf_counter()
        train_step(run, batch)
        step = time.perf_counter() - t - ema_seconds[-1]
        run.ema.update = ema_update
        for spent in (cold, warm):
            spent["step (forward, backward, AdamW)"] += step
            spent["EMA"] += ema_seconds[-1]
    # Logging every log_every steps and a checkpoint every checkpoint_every, each amortised over its steps.
    log = MetricsLog(out)
    t = time.perf_counter()
    log.write({"step": 1, "loss": 0.0, "lr": 0.0, "samples_per_s": 0.0}, tensorboard="train")
    logging = (time.perf_counter() - t) / run.config.log_every
    log.close()
    t = time.perf_counter()
    save_run(run, out / "last.pt")
    saving = (time.perf_counter() - t) / run.config.checkpoint_every
    for spent in (cold, warm):
        spent["logging + checkpoint (amortised)"] += (logging + saving) * batches
    cold_total, warm_total = sum(cold.values()), sum(warm.values())
    return [
        {
            "stage": stage,
            "cold_ms_per_batch": round(1000 * cold.get(stage, 0.0) / batches, 1),
            "cold_share": round(cold.get(stage, 0.0) / cold_total, 3),
            "warm_ms_per_batch": round(1000 * warm.get(stage, 0.0) / batches, 1) if stage in warm else "",
            "warm_share": round(warm.get(stage, 0.0) / warm_total, 3) if stage in warm else "",
        }
        for stage in dict.fromkeys([*cold, *warm])
    ]


def run(quick: bool = False) -> list[dict]:
    """Rows per thread count (bare step, loop cold and warm, ratios), then the stage profile at one thread."""
    clips = 48 if quick else 96
    store = esc50_store(clips)
    work = Path(tempfile.mkdtemp(prefix="kd-bench-loop-runs-"))
    from kd.stores import LogitStore

    rows_per_epoch = LogitStore(store).num_clips * VIEWS
    steps = 2 * (rows_per_epoch // BATCH)
    threads_before = torch.get_num_threads()
    rows = []
    try:
        for threads in THREADS:
            torch.set_num_threads(threads)
            # One cache directory: a key per rendering thread count (DataLoader workers render with one thread).
            cache = str(work / "cache")
            loop_rate(store, work / f"fill-{threads}", steps // 2, cache, 0)  # one epoch fills this thread count's key
            bare = bare_rate(store, work / f"bare-{threads}", steps)
            for workers in WORKERS:
                cold = loop_rate(store, work / f"cold-{threads}-{workers}", steps, None, workers)
                warm = loop_rate(store, work / f"warm-{threads}-{workers}", steps, cache, workers)
                rows.append(
                    {
                        "threads": threads,
                        "workers": workers,
                        "steps": steps,
                        "bare_step_samples_per_s": round(bare, 1),
                        "loop_cold_samples_per_s": round(cold, 1),
                        "loop_warm_samples_per_s": round(warm, 1),
                        "cold_over_bare": round(cold / bare, 2),
                        "warm_over_bare": round(warm / bare, 2),
                    }
                )
        torch.set_num_threads(1)
        stages = profile(store, work / "profile", str(work / "cache-profile"), 2 if quick else 4)
    finally:
        torch.set_num_threads(threads_before)
    return rows + [{"threads": 1, **row} for row in stages]


if __name__ == "__main__":
    print(markdown(run(quick="--quick" in sys.argv)))
