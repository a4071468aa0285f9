"""Stage two: train a student label-free from a logit store (or, as a baseline, from teachers run in the loop).

`kd.train` keeps the names it had as one module: `from kd.train import TrainConfig, train_student` still works.
"""

from kd.train.config import LOSSES, MIN_VALIDATION_CLIPS, TrainConfig
from kd.train.loop import MetricsLog, TrainResult, train_student
from kd.train.loss import KDLoss
from kd.train.optimiser import EMA, warmup_cosine
from kd.train.run import (
    Run,
    epoch_loader,
    epoch_order,
    held_out,
    resume_run,
    save_run,
    setup_run,
    store_identity,
    train_step,
)
from kd.train.validation import agreement, validate

__all__ = [
    "EMA",
    "LOSSES",
    "MIN_VALIDATION_CLIPS",
    "KDLoss",
    "MetricsLog",
    "Run",
    "TrainConfig",
    "TrainResult",
    "agreement",
    "epoch_loader",
    "epoch_order",
    "held_out",
    "resume_run",
    "save_run",
    "setup_run",
    "store_identity",
    "train_step",
    "train_student",
    "validate",
    "warmup_cosine",
]
