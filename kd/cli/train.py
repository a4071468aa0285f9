"""`kd train-student`: stage two."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kd.cli.options import Combine, ConfigOption, Loss, PrintConfigOption, require, resolve_settings, teacher_paths
from kd.cli.tables import console


def train_student_cmd(
    ctx: typer.Context,
    store: Annotated[
        str | None, typer.Argument(help="Logit store (path or URL) made by `kd dump-teachers`.", show_default=False)
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run directory: checkpoints, config, metrics.jsonl.")
    ] = None,
    student: Annotated[
        str, typer.Option(help="Registered student (see `kd students`); dass-small for the paper's student on a GPU.")
    ] = "dass-mini-p16",
    teachers: Annotated[
        str | None, typer.Option(help="Ensemble as NAME[:WEIGHT],... from the store's teachers (default: all, equal).")
    ] = None,
    temperature: Annotated[float, typer.Option(help="Temperature applied to teacher logits.")] = 1.0,
    combine: Annotated[
        Combine, typer.Option(help="Combine teachers by mean of probabilities (prob) or logits.")
    ] = Combine.prob,
    loss: Annotated[Loss, typer.Option(help="bce (multi-label soft targets) or kl (over classes).")] = Loss.bce,
    label_weight: Annotated[
        float, typer.Option(help="Weight of ground-truth labels from the manifest (0 = none).")
    ] = 0.0,
    classes: Annotated[
        str | None,
        typer.Option(
            help="Teach only these classes: 'manifest' (those the store's manifest labels), 'top:N' (the N the "
            "teachers rate highest on the training views), a file of names, or names joined by ';' (default: all)."
        ),
    ] = None,
    clip_mean_weight: Annotated[
        float,
        typer.Option(
            help="Move each view's soft target this far towards its clip's mean target over the stored views (the "
            "teachers averaged over augmentations; two-clip views mix both clips' means by their weights). 0: off."
        ),
    ] = 0.0,
    head_prior: Annotated[
        bool,
        typer.Option(
            help="Start the output bias at the logit of the mean target (keeps small students from collapsing)."
        ),
    ] = True,
    views: Annotated[
        int | None, typer.Option(help="Train on the first V stored views of each clip (default: all; view 0 is clean).")
    ] = None,
    online: Annotated[
        bool, typer.Option(help="Online KD baseline: run the teachers in the loop on fresh views each epoch.")
    ] = False,
    teacher_checkpoint: Annotated[
        list[str] | None, typer.Option("--teacher-checkpoint", help="TEACHER=PATH weights for --online (repeatable).")
    ] = None,
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 1000,
    batch_size: Annotated[int, typer.Option(help="Views per batch (per process).")] = 16,
    accumulate: Annotated[int, typer.Option(help="Batches per optimiser step.")] = 1,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 1e-3,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay (not on norms and biases).")] = 0.05,
    warmup_steps: Annotated[int, typer.Option(help="Linear warm-up steps before cosine decay.")] = 50,
    grad_clip: Annotated[float, typer.Option(help="Gradient norm clip.")] = 1.0,
    ema_decay: Annotated[float, typer.Option(help="EMA decay of the weights (evaluation uses the EMA).")] = 0.995,
    drop_path: Annotated[
        float,
        typer.Option(
            help="Stochastic depth rate of the student (0.1: the ESC-50 KD student memorises its clips without it)."
        ),
    ] = 0.1,
    workers: Annotated[int, typer.Option(help="DataLoader workers (decode, replay, features).")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of initialisation and data order.")] = 0,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 200,
    val_fraction: Annotated[float, typer.Option(help="Clips held out (by id hash) for validation.")] = 0.1,
    val_every: Annotated[int, typer.Option(help="Steps between validations.")] = 200,
    val_manifest: Annotated[
        Path | None, typer.Option(help="A held-out labelled manifest: label mAP, AUC, d-prime at each validation.")
    ] = None,
    log_every: Annotated[int, typer.Option(help="Steps between metric records.")] = 10,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N (bf16 autocast on CUDA).")] = "cpu",
    allow_partial: Annotated[bool, typer.Option(help="Train on the complete blocks of an unfinished dump.")] = False,
    audio_root: Annotated[
        Path | None, typer.Option(help="Where the store's relative clip paths live now (if moved).")
    ] = None,
    feature_cache: Annotated[
        Path | None,
        typer.Option(
            help="Directory caching the student's features of each stored view (before its frequency masks), so "
            "epochs after the first skip decoding, resampling, augmentation and the front end; bit-identical "
            "training, keyed by store, policy and front end, resumable, shareable between runs. Costs disk: about "
            "255 KB per 5 s view for the DASS fbank (off by default)."
        ),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/last.pt if it exists.")] = False,
    config_file: ConfigOption = None,
    print_config: PrintConfigOption = False,
) -> None:
    """Train a student label-free from a logit store, with the teacher ensemble chosen now."""
    flags = {name: value for name, value in locals().items() if name not in ("ctx", "config_file", "print_config")}
    from kd.api import train_config
    from kd.core.config_files import config_json
    from kd.train import TrainConfig, train_student

    flags["teacher_checkpoints"] = teacher_paths(flags.pop("teacher_checkpoint"), "--teacher-checkpoint")

    settings, _ = resolve_settings(ctx, TrainConfig, config_file, flags, {})
    require(settings, {"store": "STORE", "out": "--out"})
    config = train_config(**settings)
    if print_config:
        print(config_json(config))
        return
    result = train_student(config)
    console.print(f"{result.out}: step {result.step}, loss {result.last_loss:.4f}, {result.seconds:.1f} s")
    for key, value in result.validation.items():
        console.print(f"  validation {key}: {value:.4f}")
