"""The phases of a training run that `kd.train.loop` strings together: `setup_run` (config -> model, data,
optimiser), `resume_run` (checkpoint -> state), `train_step` (one optimiser step) and `save_run` (atomic checkpoint),
with the data order they share."""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from kd.core.errors import ConfigError, TrainingError
from kd.core.labels import class_mask
from kd.stores.logit_store import LogitStore
from kd.stores.targets import EnsembleSpec, parse_teachers
from kd.students import create_student
from kd.students.checkpoint import read_checkpoint, save_checkpoint
from kd.students.readout import Readout
from kd.train.class_choice import resolve_classes
from kd.train.config import MIN_VALIDATION_CLIPS, TrainConfig
from kd.train.distill_data import DistillDataset
from kd.train.loss import KDLoss
from kd.train.optimiser import EMA, warmup_cosine


def held_out(ids: list[str], fraction: float) -> np.ndarray:
    """Validation clips chosen by a hash of their id: stable across runs, machines and manifest order."""
    if fraction == 0:
        return np.zeros(len(ids), dtype=bool)
    scores = [int.from_bytes(hashlib.blake2b(i.encode(), digest_size=4).digest(), "little") / 2**32 for i in ids]
    return np.asarray(scores) < fraction


def epoch_order(num_rows: int, seed: int, epoch: int, rank: int, world: int) -> list[int]:
    """This rank's share of the epoch's permutation: a pure function, so a resumed run sees the same order."""
    order = np.random.Generator(np.random.Philox(key=[seed, epoch])).permutation(num_rows)
    return order[rank::world].tolist()


def store_identity(store: LogitStore) -> str:
    """What the store is, whatever path spells it: a digest of its clip ids and view seeds."""
    digest = hashlib.sha256("\n".join(store.clip_ids()).encode())
    digest.update(np.ascontiguousarray(store.seeds()).tobytes())
    return digest.hexdigest()


@dataclass
class Run:
    """Everything a training run holds while it runs; the checkpoint is this, by name."""

    config: TrainConfig
    store: LogitStore
    spec: EnsembleSpec
    model: torch.nn.Module
    net: torch.nn.Module
    train_data: torch.utils.data.Dataset
    val_data: DistillDataset | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: EMA
    loss_fn: KDLoss
    device: torch.device
    rank: int
    world: int
    per_epoch: int
    identity: str
    live_teachers: object | None = None
    use_bf16: bool = False
    step: int = 0
    micro: int = 0

    @property
    def out(self) -> Path:
        return Path(self.config.out)


def setup_run(config: TrainConfig, warn=None) -> Run:
    """Phase 1: from the config to a ready model, data and optimiser. Writes nothing."""
    warn = warn or _warn
    rank, world = _init_distributed()
    device = _device(config.device, rank, world)
    _check_run_dir(config)
    torch.manual_seed(config.seed)
    store = LogitStore(config.store)
    names = parse_teachers(config.teachers) if config.teachers else tuple((n, 1.0) for n in store.teacher_names())
    if not names:
        raise ConfigError(f"{config.store}: the store has no teachers")
    for name, _ in names:
        store.teacher(name)
    spec = EnsembleSpec(names, config.temperature, config.combine)
    model = create_student(config.student, num_classes=len(store.labels), drop_path_rate=config.drop_path).to(device)
    clip_labels = store.clip_labels()
    if config.label_weight > 0 and not any(clip_labels):
        warn(f"--label-weight {config.label_weight}: the store's manifest has no labels, so that part learns nothing")
    val_clips = held_out(store.clip_ids(), config.val_fraction)
    if 0 < int(val_clips.sum()) < MIN_VALIDATION_CLIPS:
        warn(
            f"only {int(val_clips.sum())} clips held out for validation (--val-fraction {config.val_fraction}): "
            f"agreement figures on fewer than {MIN_VALIDATION_CLIPS} clips mean little; raise --val-fraction or "
            "pass --val-manifest"
        )
    if config.warmup_steps >= config.steps:
        warn(f"--warmup-steps {config.warmup_steps} >= --steps {config.steps}: the learning rate never peaks")
    common = {
        "allow_partial": config.allow_partial,
        "audio_root": config.audio_root,
        "feature_cache": config.feature_cache,
    }
    if config.views is not None and config.views > store.num_views:
        raise ConfigError(f"--views {config.views}: the store has {store.num_views} views per clip")
    views = list(range(config.views)) if config.views is not None else None
    train_clips = np.flatnonzero(~val_clips)

    def mean_probability() -> torch.Tensor:
        probe = DistillDataset(store, spec, model.frontend, model.sample_rate, clips=train_clips, views=views, **common)
        return probe.mean_targets()[0]

    spec = replace(spec, classes=resolve_classes(config.classes, store.labels, clip_labels, mean_probability))
    stored = DistillDataset(
        store,
        spec,
        model.frontend,
        model.sample_rate,
        clips=train_clips,
        views=views,
        clip_mean_weight=config.clip_mean_weight,
        **common,
    )
    train_data, live = stored, None
    if config.online:
        from kd.train.online import LiveEnsemble, OnlineDataset

        train_data = OnlineDataset(stored, store.clip_ids(), config.seed)
        live = LiveEnsemble(store, spec, config.teacher_checkpoints, device)
    val_data = (
        DistillDataset(
            store,
            spec,
            model.frontend,
            model.sample_rate,
            clips=np.flatnonzero(val_clips),
            views=[0],
            augment=False,
            **common,
        )
        if val_clips.any()
        else None
    )
    if config.head_prior:
        _start_at_prior(model, stored, config.label_weight)
    covered = np.logical_or.reduce([store.teacher(name).covered for name in spec.names])
    chosen = class_mask(spec.classes, len(covered))
    model.readout = Readout.for_training(config.loss, config.label_weight, covered, chosen)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(config.warmup_steps, config.steps))
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and not use_bf16)
    net: torch.nn.Module = _FromFeatures(model)
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    per_epoch = len(epoch_order(len(train_data), config.seed, 0, rank, world)) // config.batch_size
    if per_epoch == 0:
        raise ConfigError(f"--batch-size {config.batch_size} is larger than this rank's {len(train_data)} rows")
    return Run(
        config=config,
        store=store,
        spec=spec,
        model=model,
        net=net,
        train_data=train_data,
        val_data=val_data,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        ema=EMA(model, config.ema_decay),
        loss_fn=KDLoss(config.loss, config.temperature, config.label_weight, spec.classes),
        device=device,
        rank=rank,
        world=world,
        per_epoch=per_epoch,
        identity=store_identity(store),
        live_teachers=live,
        use_bf16=use_bf16,
    )


def _start_at_prior(model: torch.nn.Module, data, label_weight: float) -> None:
    """Sets the output bias to the logit of the mean training target (the prior initialisation of RetinaNet)."""
    head = getattr(model, "head", None)
    if not isinstance(head, torch.nn.Linear) or head.bias is None:
        return
    targets, labels = data.mean_targets()
    prior = (1 - label_weight) * targets + label_weight * labels
    with torch.no_grad():
        head.bias.copy_(torch.logit(prior.clamp(1e-4, 1 - 1e-4)))


def resume_run(run: Run, path: Path) -> None:
    """Phase 2: loads every piece of state from a checkpoint, refusing one made with other settings."""
    state = read_checkpoint(path)
    _check_resumable(run, state, path)
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    run.ema.state, run.ema.updates = state["ema"], state["step"]
    run.step, run.micro = state["step"], state["data"]["micro_batches"]
    torch.set_rng_state(state["rng"]["torch"])
    if torch.cuda.is_available() and state["rng"].get("cuda") is not None:
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])


def epoch_loader(run: Run) -> torch.utils.data.DataLoader:
    """The rest of the current epoch's batches, in its fixed order."""
    config = run.config
    epoch, offset = divmod(run.micro, run.per_epoch)
    if hasattr(run.train_data, "set_epoch"):
        run.train_data.set_epoch(epoch)
    order = epoch_order(len(run.train_data), config.seed, epoch, run.rank, run.world)[
        : run.per_epoch * config.batch_size
    ]
    return torch.utils.data.DataLoader(
        run.train_data,
        batch_size=config.batch_size,
        sampler=order[offset * config.batch_size :],
        num_workers=config.workers,
        drop_last=True,
        collate_fn=_collate,
        # A private generator: worker seeding must not consume the global RNG (drop path draws from it).
        generator=torch.Generator().manual_seed(config.seed + epoch),
    )


def train_step(run: Run, batch: dict) -> float | None:
    """Phase 3: one micro-batch forward and backward; an optimiser step every `accumulate` micro-batches.

    Returns the loss when an optimiser step was taken, else None. A non-finite loss stops the run before any
    update, so no checkpoint with non-finite weights is ever written.
    """
    config, device = run.config, run.device
    if run.live_teachers is not None:
        batch["targets"], batch["mask"] = run.live_teachers.targets(batch.pop("waves"))
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=run.use_bf16):
        logits = run.net(batch["features"].to(device))
    loss = run.loss_fn(logits.float(), *(batch[k].to(device) for k in ("targets", "mask", "labels")))
    if not torch.isfinite(loss):
        rows = batch["row"].tolist()[:4]
        raise TrainingError(
            f"step {run.step + 1}: the loss is not finite ({float(loss.detach())}) on rows (clip, view) {rows} ...; "
            "check those clips and `kd store verify`, or lower --lr; the last checkpoint is untouched"
        )
    run.scaler.scale(loss / config.accumulate).backward()
    run.micro += 1
    if run.micro % config.accumulate:
        return None
    run.scaler.unscale_(run.optimizer)
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), config.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()
    run.ema.update(run.model)
    run.step += 1
    return float(loss.detach())


def save_run(run: Run, path: Path) -> None:
    """Phase 5: an atomic checkpoint of every piece of state; refuses non-finite weights."""
    if run.rank != 0:
        return
    for name, tensor in [*run.model.state_dict().items(), *run.ema.state.items()]:
        if tensor.dtype.is_floating_point and not torch.isfinite(tensor).all():
            raise TrainingError(f"step {run.step}: weight {name} is not finite; {path} was not overwritten")
    config, store, spec = run.config, run.store, run.spec
    save_checkpoint(
        {
            "student": config.student,
            "student_kwargs": {"num_classes": len(store.labels)},
            "readout": run.model.readout.to_dict(),
            "labels": store.labels.to_json(),
            "model": run.model.state_dict(),
            "ema": run.ema.state,
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict(),
            "step": run.step,
            "data": {"micro_batches": run.micro, "rows": len(run.train_data), "per_epoch": run.per_epoch},
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
            "config": asdict(config),
            "store_identity": run.identity,
            "ensemble": {
                "teachers": [list(t) for t in spec.teachers],
                "temperature": spec.temperature,
                "combine": spec.combine,
                "classes": None if spec.classes is None else [store.labels.names[i] for i in spec.classes],
            },
            "teacher_sha256": {n: store.teacher(n).attrs.get("checkpoint_sha256", "") for n in spec.names},
            "world_size": run.world,
        },
        path,
    )


class _FromFeatures(torch.nn.Module):
    """The student from features on: features come from DataLoader workers, and DDP hooks only `forward`."""

    def __init__(self, student: torch.nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.student.forward_features(features)


def _collate(items: list[dict]) -> dict:
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def _warn(message: str) -> None:
    print(f"kd: warning: {message}", file=sys.stderr)


def _device(name: str, rank: int, world: int) -> torch.device:
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {name!r}: not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
        if world > 1:
            return torch.device(f"cuda:{rank}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA devices")
    elif device.type != "cpu":
        raise ConfigError(f"--device {name!r}: kd trains on cpu or cuda")
    return device


def _check_run_dir(config: TrainConfig) -> None:
    """Refuses to overwrite a run: an existing run directory is continued with --resume or left alone."""
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory; choose a new --out")
    if not config.resume and any((out / name).exists() for name in ("last.pt", "config.json", "metrics.jsonl")):
        raise ConfigError(f"--out {out}: already holds a run; pass --resume to continue it, or choose a new --out")


def _check_resumable(run: Run, state: dict, path: Path) -> None:
    config = run.config
    saved = state.get("config", {})
    defaults = asdict(TrainConfig(store="", out=""))  # a setting newer than the checkpoint had its default then
    changed = [
        k
        for k, v in asdict(config).items()
        if k not in TrainConfig.RESUMABLE_CHANGES and saved.get(k, defaults[k]) != v
    ]
    if "val_manifest" in changed and _same_file(saved.get("val_manifest"), config.val_manifest):
        changed.remove("val_manifest")
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {getattr(config, k)!r}" for k in changed)
        raise ConfigError(f"{path}: cannot resume with changed settings ({details}); use a new --out or the same flags")
    identity = state.get("store_identity")
    if identity is not None and identity != run.identity:
        raise ConfigError(
            f"{path}: was trained from another store than {config.store} (its clips or view seeds differ); "
            "resume with the store it was trained from, or use a new --out"
        )
    if identity is None and not _same_file(saved.get("store"), config.store):
        raise ConfigError(f"{path}: was trained from store {saved.get('store')!r}, not {config.store!r}")


def _same_file(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a == b
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _init_distributed() -> tuple[int, int]:
    """torchrun sets WORLD_SIZE/RANK; gloo on the CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return torch.distributed.get_rank(), world
