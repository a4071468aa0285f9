"""Stage two, `kd train-student`: label-free distillation from a logit store, written out in one loop.

The loop reads top to bottom in named phases: `setup_run` (config -> model, data, optimiser), `resume_run`
(checkpoint -> state), `train_step` (one optimiser step), `validate`, `save_run` (atomic checkpoint), and
`train_student`, which strings them together.

Resuming gives the same run as not stopping: the data order is a pure function of (seed, epoch), DataLoader
workers draw no global randomness, and every piece of state (model, optimiser, scheduler, scaler, EMA, step, data
position, RNG) is in the checkpoint.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from kd.train.config import TrainConfig
from kd.train.run import epoch_loader, resume_run, save_run, setup_run, train_step
from kd.train.validation import validate


@dataclass
class TrainResult:
    out: str
    step: int
    seconds: float
    last_loss: float
    validation: dict


def train_student(config: TrainConfig) -> TrainResult:
    """Trains (or resumes training) a student from the store; returns where things were written."""
    from kd.core.progress import format_rate, progress_bar

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


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tensorboard"))
