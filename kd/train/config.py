"""What `kd train-student` takes: `TrainConfig`, validated on construction, and the losses it knows."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kd.core.errors import ConfigError

MIN_VALIDATION_CLIPS = 10
"""Fewer held-out clips than this give agreement figures that mean little (one clip: map_vs_teacher 1.0)."""
LOSSES = ("bce", "kl")


@dataclass
class TrainConfig:
    """Everything `kd train-student` takes; saved in every checkpoint and compared on resume.

    Defaults are those measured best for small students on real data (ESC-50 folds 1-3 -> fold 4, see
    docs/experiments/distillation.md): the CPU student dass-mini-p16, peak learning rate 1e-3 with a short warm-up
    (2e-3 learns less and 4e-3 collapses to the targets' average), an EMA that follows within a few hundred steps,
    the output bias started at the targets' prior, and BCE against the ensemble's probabilities.
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
    clip_mean_weight: float = 0.0
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
        for name in (
            "temperature",
            "label_weight",
            "clip_mean_weight",
            "lr",
            "weight_decay",
            "grad_clip",
            "ema_decay",
            "drop_path",
        ):
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
        if not 0 <= self.clip_mean_weight <= 1:
            raise ConfigError(f"--clip-mean-weight must be in [0, 1], got {self.clip_mean_weight}")
        if self.online and self.clip_mean_weight:
            raise ConfigError("--clip-mean-weight averages stored targets, which --online does not use; drop one")
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
