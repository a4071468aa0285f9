"""kd from Python (a notebook, a script): dump, train, evaluate and predict, as the `kd` commands do.

Each function here is what its command runs: `kd dump-teachers`, `kd train-student`, `kd eval` and `kd predict`
parse their flags into these same calls, with these same defaults and config objects (`DumpConfig`, `TrainConfig`),
then print. Settings are keyword arguments named as the config fields (a flag's name with `_` for `-`). A config
built once can be run again with `kd.dump.dump_teachers(config)` or `kd.train.train_student(config)`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from kd.dump.config import DumpConfig, settings_from_store
from kd.dump.run import DumpReport
from kd.dump.run import dump_teachers as run_dump
from kd.train.config import TrainConfig
from kd.train.loop import TrainResult
from kd.train.loop import train_student as run_training
from kd.use.evaluate import EvalReport
from kd.use.evaluate import evaluate as evaluate_tagger
from kd.use.models import Tagger, load_tagger
from kd.use.predict import Prediction, predict_file

PathLike = str | os.PathLike


def dump_config(manifest: PathLike, store: PathLike, teachers: Sequence[str], **settings: object) -> DumpConfig:
    """The `DumpConfig` that `kd dump-teachers MANIFEST STORE --teacher ...` builds from the same settings.

    Args:
        manifest: a manifest (CSV, TSV, JSONL) or a directory of audio.
        store: the Zarr store (path or fsspec URL) to create, resume or extend.
        teachers: registered teacher names.
        **settings: other `DumpConfig` fields (views, k, policy, checkpoints, batch_size, device, ...). On an existing
            store, views, seed, block_size, policy and clip_seconds left out are the store's own and k is its largest
            teacher's; a given one that contradicts the store is refused. Otherwise `DumpConfig`'s defaults apply.
    """
    values = {"manifest": os.fspath(manifest), "store": os.fspath(store), "teachers": list(teachers), **settings}
    return DumpConfig(**settings_from_store(values, set(values)))


def dump_teachers(manifest: PathLike, store: PathLike, teachers: Sequence[str], **settings: object) -> DumpReport:
    """Runs `teachers` over augmented views of every clip into `store` (resumable, appendable): `kd dump-teachers`.

    Arguments as for `dump_config`. Returns what was computed and which views failed (an unreadable clip is
    recorded, not raised: check `report.failures`).
    """
    return run_dump(dump_config(manifest, store, teachers, **settings))


def train_config(store: PathLike, out: PathLike, **settings: object) -> TrainConfig:
    """The `TrainConfig` that `kd train-student STORE --out OUT` builds from the same settings (other `TrainConfig`
    fields: student, teachers, steps, batch_size, lr, resume, ...)."""
    return TrainConfig(store=os.fspath(store), out=os.fspath(out), **settings)


def train_student(store: PathLike, out: PathLike, **settings: object) -> TrainResult:
    """Trains (or with resume=True continues) a student from `store` into the run directory `out`:
    `kd train-student`. Settings as for `train_config`; `out` holds last.pt, config.json and metrics.jsonl."""
    return run_training(train_config(store, out, **settings))


def evaluate(
    model: str | Tagger, manifest: PathLike, checkpoint: str | None = None, device: str = "cpu", progress: bool = True
) -> EvalReport:
    """mAP, mean AUC, d-prime and per-class AP of a model on a labelled manifest: `kd eval`.

    Args:
        model: a student checkpoint (.pt from train_student), an exported Hugging Face directory, a registered
            teacher name, or a `Tagger` already loaded (`kd.load_tagger`).
        checkpoint: teacher weights (teachers only).
    """
    tagger = model if isinstance(model, Tagger) else load_tagger(model, checkpoint, device)
    return evaluate_tagger(tagger, manifest, progress=progress)


def predict(
    model: str | Tagger,
    files: PathLike | Sequence[PathLike],
    checkpoint: str | None = None,
    device: str = "cpu",
    window: float = 10.0,
    hop: float | None = None,
    pool: str = "max",
    batch_size: int = 8,
) -> list[Prediction]:
    """Tags for each audio file of any length, by windowed inference in bounded memory: `kd predict`.

    Args:
        model: as for `evaluate`.
        files: one audio file or several.
        window: window length in seconds (each window is decoded on its own).
        hop: seconds between windows (default: the window).
        pool: 'max' or 'mean' over windows for the clip-level scores.
        batch_size: windows per forward pass.

    Returns:
        One `Prediction` per file: `.top(n)` gives its n best (label, probability) pairs, `.clip_probs` every
        class's, `.spans` and `.window_probs` each window's.
    """
    tagger = model if isinstance(model, Tagger) else load_tagger(model, checkpoint, device)
    paths = [files] if isinstance(files, str | os.PathLike) else list(files)
    return [predict_file(tagger, path, window, hop, pool, batch_size) for path in paths]
