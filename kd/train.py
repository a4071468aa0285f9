"""Stage two, `kd train-student`: label-free distillation from a logit store, written out in one loop.

Resuming gives the same run as not stopping: the data order is a pure function of (seed, epoch), DataLoader
workers draw no global randomness, and every piece of state (model, optimiser, scheduler, scaler, EMA, step, data
position, RNG) is in the checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kd.checkpoint import read_checkpoint, save_checkpoint
from kd.distill_data import DistillDataset
from kd.errors import ConfigError
from kd.metrics import tagging_metrics
from kd.stores.logit_store import LogitStore
from kd.stores.targets import EnsembleSpec, parse_teachers
from kd.students import create_student


@dataclass
class TrainConfig:
    """Everything `kd train-student` takes; saved in every checkpoint and compared on resume."""

    store: str
    out: str
    student: str = "dass-tiny"
    teachers: str | None = None
    temperature: float = 1.0
    combine: str = "prob"
    loss: str = "bce"
    label_weight: float = 0.0
    steps: int = 1000
    batch_size: int = 16
    accumulate: int = 1
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
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
    resume: bool = False
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        positive = {
            "steps": self.steps,
            "batch_size": self.batch_size,
            "accumulate": self.accumulate,
            "lr": self.lr,
            "checkpoint_every": self.checkpoint_every,
            "log_every": self.log_every,
            "val_every": self.val_every,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if self.loss not in ("bce", "kl"):
            raise ConfigError(f"--loss must be 'bce' or 'kl', got {self.loss!r}")
        if not 0 <= self.label_weight <= 1:
            raise ConfigError(f"--label-weight must be in [0, 1], got {self.label_weight}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"--ema-decay must be in [0, 1), got {self.ema_decay}")

    # Fields that may change between a run and its resumption without changing what is being trained.
    RESUMABLE_CHANGES = (
        "steps",
        "workers",
        "checkpoint_every",
        "val_every",
        "log_every",
        "resume",
        "progress",
        "audio_root",
        "device",
    )


class KDLoss(torch.nn.Module):
    """BCE against soft targets (multi-label, default) or KL over classes; optional ground-truth BCE mixed in."""

    def __init__(self, kind: str, temperature: float, label_weight: float) -> None:
        super().__init__()
        self.kind, self.temperature, self.label_weight = kind, temperature, label_weight

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        mask = mask.float()
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
        truth = F.binary_cross_entropy_with_logits(logits, labels)
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
    import hashlib

    if fraction == 0:
        return np.zeros(len(ids), dtype=bool)
    scores = [int.from_bytes(hashlib.blake2b(i.encode(), digest_size=4).digest(), "little") / 2**32 for i in ids]
    return np.asarray(scores) < fraction


def epoch_order(num_rows: int, seed: int, epoch: int, rank: int, world: int) -> list[int]:
    """This rank's share of the epoch's permutation: a pure function, so a resumed run sees the same order."""
    order = np.random.Generator(np.random.Philox(key=[seed, epoch])).permutation(num_rows)
    return order[rank::world].tolist()


@dataclass
class TrainResult:
    out: str
    step: int
    seconds: float
    last_loss: float
    validation: dict


def train_student(config: TrainConfig) -> TrainResult:
    """Trains (or resumes training) a student from the store; returns where things were written."""
    from kd.progress import format_rate, progress_bar

    rank, world = _init_distributed()
    device = torch.device(config.device if world == 1 or config.device == "cpu" else f"cuda:{rank}")
    torch.manual_seed(config.seed)
    store = LogitStore(config.store)
    names = parse_teachers(config.teachers) if config.teachers else tuple((n, 1.0) for n in store.teacher_names())
    if not names:
        raise ConfigError(f"{config.store}: the store has no teachers")
    for name, _ in names:
        store.teacher(name)
    spec = EnsembleSpec(names, config.temperature, config.combine)
    student_kwargs = {"num_classes": len(store.labels), "drop_path_rate": config.drop_path}
    model = create_student(config.student, **student_kwargs).to(device)
    val_clips = held_out(store.clip_ids(), config.val_fraction)
    train_data = DistillDataset(
        store,
        spec,
        model.frontend,
        model.sample_rate,
        clips=np.flatnonzero(~val_clips),
        allow_partial=config.allow_partial,
        audio_root=config.audio_root,
    )
    val_data = (
        DistillDataset(
            store,
            spec,
            model.frontend,
            model.sample_rate,
            clips=np.flatnonzero(val_clips),
            views=[0],
            allow_partial=config.allow_partial,
            audio_root=config.audio_root,
            augment=False,
        )
        if val_clips.any()
        else None
    )
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
    ema = EMA(model, config.ema_decay)
    loss_fn = KDLoss(config.loss, config.temperature, config.label_weight)
    out = Path(config.out)
    step, micro = 0, 0
    if config.resume and (out / "last.pt").is_file():
        state = read_checkpoint(out / "last.pt")
        _check_resumable(config, state, out / "last.pt")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        ema.state, ema.updates = state["ema"], state["step"]
        step, micro = state["step"], state["data"]["micro_batches"]
        torch.set_rng_state(state["rng"]["torch"])
        if torch.cuda.is_available() and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    elif rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    net: torch.nn.Module = _FromFeatures(model)
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    per_epoch = len(epoch_order(len(train_data), config.seed, 0, rank, world)) // config.batch_size
    if per_epoch == 0:
        raise ConfigError(f"--batch-size {config.batch_size} is larger than this rank's {len(train_data)} rows")

    def checkpoint(path: Path) -> None:
        if rank != 0:
            return
        save_checkpoint(
            {
                "student": config.student,
                "student_kwargs": {"num_classes": len(store.labels)},
                "labels": store.labels.to_json(),
                "model": model.state_dict(),
                "ema": ema.state,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "step": step,
                "data": {"micro_batches": micro, "rows": len(train_data), "per_epoch": per_epoch},
                "rng": {
                    "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                },
                "config": asdict(config),
                "ensemble": {
                    "teachers": [list(t) for t in spec.teachers],
                    "temperature": spec.temperature,
                    "combine": spec.combine,
                },
                "teacher_sha256": {n: store.teacher(n).attrs.get("checkpoint_sha256", "") for n in spec.names},
                "world_size": world,
            },
            path,
        )

    log = open(out / "metrics.jsonl", "a") if rank == 0 else None  # noqa: SIM115 (closed in finally)
    tensorboard = _tensorboard(out) if rank == 0 else None
    start, last_loss, validation = time.perf_counter(), float("nan"), {}
    samples_at_start = micro * config.batch_size * world
    bar = progress_bar(disable=not config.progress or rank != 0)
    try:
        with bar:
            task = bar.add_task("training", total=config.steps, completed=step, rate="", info="")
            if (val_data is not None or config.val_manifest) and rank == 0 and step == 0:
                # The starting point, so a run shows how far distillation moved the student.
                validation = validate(model, ema, val_data, device, config.val_manifest, store.labels)
                log.write(json.dumps({"step": 0, **{f"val_{k}": v for k, v in validation.items()}}) + "\n")
            model.train()
            while step < config.steps:
                epoch, offset = divmod(micro, per_epoch)
                order = epoch_order(len(train_data), config.seed, epoch, rank, world)[: per_epoch * config.batch_size]
                loader = torch.utils.data.DataLoader(
                    train_data,
                    batch_size=config.batch_size,
                    sampler=order[offset * config.batch_size :],
                    num_workers=config.workers,
                    drop_last=True,
                    collate_fn=_collate,
                    # A private generator: worker seeding must not consume the global RNG (drop path draws from it).
                    generator=torch.Generator().manual_seed(config.seed + epoch),
                )
                for batch in loader:
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                        logits = net(batch["features"].to(device))
                    loss = loss_fn(logits.float(), *(batch[k].to(device) for k in ("targets", "mask", "labels")))
                    scaler.scale(loss / config.accumulate).backward()
                    micro += 1
                    if micro % config.accumulate:
                        continue
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                    scheduler.step()
                    ema.update(model)
                    step += 1
                    last_loss = float(loss.detach())
                    elapsed = time.perf_counter() - start
                    samples = micro * config.batch_size * world - samples_at_start
                    bar.update(
                        task,
                        completed=step,
                        rate=format_rate(samples, elapsed, "samples"),
                        info=f"loss {last_loss:.4f}",
                    )
                    if log is not None and step % config.log_every == 0:
                        record = {
                            "step": step,
                            "loss": last_loss,
                            "lr": scheduler.get_last_lr()[0],
                            "samples_per_s": samples / elapsed if elapsed > 0 else 0.0,
                        }
                        log.write(json.dumps(record) + "\n")
                        log.flush()
                        if tensorboard is not None:
                            for key, value in record.items():
                                tensorboard.add_scalar(f"train/{key}", value, step)
                    validating = val_data is not None or config.val_manifest
                    if validating and rank == 0 and (step % config.val_every == 0 or step == config.steps):
                        validation = validate(model, ema, val_data, device, config.val_manifest, store.labels)
                        if log is not None:
                            log.write(
                                json.dumps({"step": step, **{f"val_{k}": v for k, v in validation.items()}}) + "\n"
                            )
                            log.flush()
                    if step % config.checkpoint_every == 0 or step == config.steps:
                        checkpoint(out / "last.pt")
                    if step >= config.steps:
                        break
    finally:
        if log is not None:
            log.close()
        if tensorboard is not None:
            tensorboard.close()
        if world > 1:
            torch.distributed.destroy_process_group()
    return TrainResult(str(out), step, time.perf_counter() - start, last_loss, validation)


@torch.no_grad()
def validate(
    model: torch.nn.Module,
    ema: EMA,
    data: DistillDataset | None,
    device: torch.device,
    manifest: str | None = None,
    labels=None,
) -> dict:
    """Scores the EMA student: agreement with the ensemble on clean held-out views of the store (with label mAP
    where the store's manifest had labels), and label mAP, AUC and d-prime on a held-out labelled `manifest`."""
    live = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(ema.state)
    model.eval()
    result: dict = {}
    if data is not None:
        scores, targets, truth = [], [], []
        for i in range(len(data)):
            item = data[i]
            scores.append(torch.sigmoid(model.forward_features(item["features"][None].to(device))).cpu()[0])
            targets.append(item["targets"])
            truth.append(item["labels"])
        result = agreement(torch.stack(scores).numpy(), torch.stack(targets).numpy(), torch.stack(truth).numpy())
    if manifest is not None:
        from kd.evaluate import evaluate
        from kd.models import Tagger

        tagger = Tagger("student", "student", model.sample_rate, labels, device, model)
        metrics = evaluate(tagger, manifest, progress=False).metrics
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


def _check_resumable(config: TrainConfig, state: dict, path: Path) -> None:
    saved = state.get("config", {})
    changed = [k for k, v in asdict(config).items() if k not in TrainConfig.RESUMABLE_CHANGES and saved.get(k) != v]
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {getattr(config, k)!r}" for k in changed)
        raise ConfigError(f"{path}: cannot resume with changed settings ({details}); use a new --out or the same flags")


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
