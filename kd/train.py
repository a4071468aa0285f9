"""Stage two, `kd train-student`: label-free distillation from a logit store, written out in one loop.

The loop reads top to bottom in named phases: `setup_run` (config -> model, data, optimiser), `resume_run`
(checkpoint -> state), `train_step` (one optimiser step), `validate`, `save_run` (atomic checkpoint), and
`train_student`, which strings them together.

Resuming gives the same run as not stopping: the data order is a pure function of (seed, epoch), DataLoader
workers draw no global randomness, and every piece of state (model, optimiser, scheduler, scaler, EMA, step, data
position, RNG) is in the checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kd.checkpoint import read_checkpoint, save_checkpoint
from kd.class_choice import class_mask, resolve_classes
from kd.distill_data import DistillDataset
from kd.errors import ConfigError, TrainingError
from kd.metrics import tagging_metrics
from kd.stores.logit_store import LogitStore
from kd.stores.targets import EnsembleSpec, parse_teachers
from kd.students import create_student
from kd.students.readout import Readout

MIN_VALIDATION_CLIPS = 10
"""Fewer held-out clips than this give agreement figures that mean little (one clip: map_vs_teacher 1.0)."""
LOSSES = ("bce", "kl")


@dataclass
class TrainConfig:
    """Everything `kd train-student` takes; saved in every checkpoint and compared on resume.

    Defaults are those measured best for small students on real data (ESC-50 folds 1-3 -> fold 4, see
    docs/distillation.md): the CPU student dass-mini-p16, peak learning rate 1e-3 with a short warm-up (2e-3 learns
    less and 4e-3 collapses to the targets' average), an EMA that follows within a few hundred steps, the output
    bias started at the targets' prior, and BCE against the ensemble's probabilities.
    """

    store: str
    out: str
    student: str = "dass-mini-p16"
    teachers: str | None = None
    temperature: float = 1.0
    combine: str = "prob"
    loss: str = "bce"
    label_weight: float = 0.0
    classes: str | None = None
    head_prior: bool = True
    online: bool = False
    views: int | None = None
    teacher_checkpoints: dict[str, str] = field(default_factory=dict)
    steps: int = 1000
    batch_size: int = 16
    accumulate: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    drop_path: float = 0.1
    workers: int = 2
    seed: int = 0
    checkpoint_every: int = 200
    val_fraction: float = 0.1
    val_every: int = 200
    val_manifest: str | None = None
    log_every: int = 10
    device: str = "cpu"
    allow_partial: bool = False
    audio_root: str | None = None
    feature_cache: str | None = None
    resume: bool = False
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("temperature", "label_weight", "lr", "weight_decay", "grad_clip", "ema_decay", "drop_path"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"--{_flag(name)} must be a finite number, got {value!r}")
        positive = {
            "steps": self.steps,
            "batch_size": self.batch_size,
            "accumulate": self.accumulate,
            "lr": self.lr,
            "temperature": self.temperature,
            "grad_clip": self.grad_clip,
            "checkpoint_every": self.checkpoint_every,
            "log_every": self.log_every,
            "val_every": self.val_every,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ConfigError(f"--{_flag(name)} must be positive, got {value}")
        for name in ("warmup_steps", "workers", "seed", "weight_decay"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{_flag(name)} must be >= 0, got {getattr(self, name)}")
        if self.loss not in LOSSES:
            raise ConfigError(f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if not 0 <= self.label_weight <= 1:
            raise ConfigError(f"--label-weight must be in [0, 1], got {self.label_weight}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"--ema-decay must be in [0, 1), got {self.ema_decay}")
        if not 0 <= self.drop_path < 1:
            raise ConfigError(f"--drop-path must be in [0, 1), got {self.drop_path}")
        if self.views is not None and self.views < 1:
            raise ConfigError(f"--views must be positive (the first V stored views of each clip), got {self.views}")
        if self.online and self.label_weight == 1:
            raise ConfigError("--online runs teachers that --label-weight 1 would ignore; drop one of them")

    # Fields that may change between a run and its resumption without changing what is being trained. The store
    # and the run directory are compared by what they are (identity, resolved path), not by their spelling.
    RESUMABLE_CHANGES = (
        "store",
        "out",
        "steps",
        "workers",
        "checkpoint_every",
        "val_every",
        "log_every",
        "resume",
        "progress",
        "audio_root",
        "feature_cache",
        "device",
        "teacher_checkpoints",
    )


def _flag(name: str) -> str:
    return name.replace("_", "-")


class KDLoss(torch.nn.Module):
    """BCE against soft targets (multi-label, default) or KL over classes; optional ground-truth BCE mixed in.

    BCE is averaged over the classes some teacher covers: its gradient per class is the same whatever the number of
    classes, so the output bias prior (see `DistillDataset.mean_targets`) rather than the reduction decides where
    the many mostly-empty classes start.
    """

    def __init__(
        self, kind: str, temperature: float, label_weight: float, classes: tuple[int, ...] | None = None
    ) -> None:
        super().__init__()
        self.kind, self.temperature, self.label_weight = kind, temperature, label_weight
        # Ground truth is scored on the chosen classes only, as the teachers' targets are (through their mask).
        self.label_columns = slice(None) if classes is None else list(classes)

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        mask = mask.float()
        if self.label_weight > 0:
            columns = self.label_columns
            truth = F.binary_cross_entropy_with_logits(logits[..., columns], labels[..., columns])
        if self.label_weight == 1:
            return truth
        if self.kind == "bce":
            per_class = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
            distill = (per_class * mask).sum() / mask.sum().clamp_min(1)
        else:
            t = self.temperature
            p = targets * mask
            p = p / p.sum(-1, keepdim=True).clamp_min(1e-12)
            log_q = torch.log_softmax(logits.masked_fill(mask == 0, -1e4) / t, dim=-1)
            distill = (t * t) * (p * (torch.log(p.clamp_min(1e-12)) - log_q)).sum(-1).mean()
        if self.label_weight == 0:
            return distill
        return (1 - self.label_weight) * distill + self.label_weight * truth


class EMA:
    """Exponential moving average of a model's floating-point state; its state_dict loads into the model.

    The decay warms up as min(decay, (1 + n) / (10 + n)) over updates n, so short runs are not stuck at the
    initial weights.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.state[key].mul_(decay).add_(value.detach(), alpha=1 - decay)
            else:
                self.state[key].copy_(value)


def warmup_cosine(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


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
class TrainResult:
    out: str
    step: int
    seconds: float
    last_loss: float
    validation: dict


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
    stored = DistillDataset(store, spec, model.frontend, model.sample_rate, clips=train_clips, views=views, **common)
    train_data, live = stored, None
    if config.online:
        from kd.online import LiveEnsemble, OnlineDataset

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


def train_student(config: TrainConfig) -> TrainResult:
    """Trains (or resumes training) a student from the store; returns where things were written."""
    from kd.progress import format_rate, progress_bar

    run = setup_run(config)
    out = run.out
    resuming = config.resume and (out / "last.pt").is_file()
    if resuming:
        resume_run(run, out / "last.pt")
    elif run.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    log = MetricsLog(out) if run.rank == 0 else None
    if log is not None and resuming:
        # Records after this line replace any of the same step written before the interruption.
        log.write({"event": "resume", "step": run.step})
    start, last_loss, validation = time.perf_counter(), float("nan"), {}
    samples_at_start = run.micro * config.batch_size * run.world
    validating = (run.val_data is not None or config.val_manifest) and run.rank == 0
    bar = progress_bar(disable=not config.progress or run.rank != 0)
    try:
        with bar:
            task = bar.add_task("training", total=config.steps, completed=run.step, rate="", info="")
            if validating and run.step == 0:
                # The starting point, so a run shows how far distillation moved the student.
                validation = validate(run)
                log.write({"step": 0, **{f"val_{k}": v for k, v in validation.items()}}, tensorboard="val")
            run.model.train()
            while run.step < config.steps:
                for batch in epoch_loader(run):
                    loss = train_step(run, batch)
                    if loss is None:
                        continue
                    last_loss = loss
                    elapsed = time.perf_counter() - start
                    samples = run.micro * config.batch_size * run.world - samples_at_start
                    rate = format_rate(samples, elapsed, "samples")
                    bar.update(task, completed=run.step, rate=rate, info=f"loss {last_loss:.4f}")
                    if log is not None and run.step % config.log_every == 0:
                        record = {
                            "step": run.step,
                            "loss": last_loss,
                            "lr": run.scheduler.get_last_lr()[0],
                            "samples_per_s": samples / elapsed if elapsed > 0 else 0.0,
                        }
                        log.write(record, tensorboard="train")
                    if validating and (run.step % config.val_every == 0 or run.step == config.steps):
                        validation = validate(run)
                        log.write({"step": run.step, **{f"val_{k}": v for k, v in validation.items()}}, "val")
                    if run.step % config.checkpoint_every == 0 or run.step == config.steps:
                        save_run(run, out / "last.pt")
                    if run.step >= config.steps:
                        break
    finally:
        if log is not None:
            log.close()
        if run.world > 1:
            torch.distributed.destroy_process_group()
    return TrainResult(str(out), run.step, time.perf_counter() - start, last_loss, validation)


class MetricsLog:
    """metrics.jsonl (one JSON record per line, flushed) and TensorBoard scalars when it is installed."""

    def __init__(self, out: Path) -> None:
        self.file = open(out / "metrics.jsonl", "a")  # noqa: SIM115 (closed by close())
        self.tensorboard = _tensorboard(out)

    def write(self, record: dict, tensorboard: str | None = None) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tensorboard is not None and tensorboard is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float):
                    self.tensorboard.add_scalar(f"{tensorboard}/{key.removeprefix('val_')}", value, record["step"])

    def close(self) -> None:
        self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


@torch.no_grad()
def validate(run: Run) -> dict:
    """Phase 4: scores the EMA student: agreement with the ensemble on clean held-out views of the store (with label
    mAP where the store's manifest had labels), and label mAP, AUC and d-prime on a held-out labelled manifest."""
    model, device = run.model, run.device
    live = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(run.ema.state)
    model.eval()
    result: dict = {}
    data = run.val_data
    if data is not None:
        scores, targets, truth = [], [], []
        for i in range(len(data)):
            item = data[i]
            logits = model.readout(model.forward_features(item["features"][None].to(device)))
            scores.append(torch.sigmoid(logits).cpu()[0])
            targets.append(item["targets"])
            truth.append(item["labels"])
        result = agreement(torch.stack(scores).numpy(), torch.stack(targets).numpy(), torch.stack(truth).numpy())
    if run.config.val_manifest is not None:
        from kd.evaluate import evaluate
        from kd.models import Tagger

        tagger = Tagger("student", "student", model.sample_rate, run.store.labels, device, model)
        metrics = evaluate(tagger, run.config.val_manifest, progress=False).metrics
        result.update(
            {"manifest_map": metrics.mAP, "manifest_auc": metrics.mean_auc, "manifest_dprime": metrics.d_prime}
        )
    model.load_state_dict(live)
    model.train()
    return result


def agreement(scores: np.ndarray, targets: np.ndarray, labels: np.ndarray) -> dict:
    """Top-5 overlap with the ensemble, mAP against the ensemble's top-5 tags, and label mAP where labelled."""
    top_s = np.argsort(-scores, axis=1)[:, :5]
    top_t = np.argsort(-targets, axis=1)[:, :5]
    overlap = float(np.mean([len(set(a) & set(b)) / 5 for a, b in zip(top_s, top_t, strict=True)]))
    teacher_tags = np.zeros_like(targets)
    np.put_along_axis(teacher_tags, top_t, 1.0, axis=1)
    result = {"top5_overlap": overlap, "map_vs_teacher": tagging_metrics(teacher_tags, scores).mAP}
    if (labels > 0).any():
        result["map_vs_labels"] = tagging_metrics(labels > 0, scores).mAP
    return result


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


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tensorboard"))
