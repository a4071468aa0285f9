"""`kd predict`: tags for audio files of any length by windowed inference, with bounded memory.

A file is read one window at a time (`load_audio(start=, end=)` decodes only that span), a few windows are batched
through the tagger, and only the per-window probabilities are kept: memory is bounded by the window, the batch and
the (small) score matrix, not by the file's length. Clip-level scores pool window probabilities: `max` (default: a tag
present anywhere in a long file is reported) or `mean` (how much of the file it covers).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import torch

from kd.core.errors import ConfigError
from kd.use.models import Tagger

POOLINGS = ("max", "mean")


def window_spans(duration: float, window: float, hop: float) -> list[tuple[float, float]]:
    """[start, end) spans in seconds covering `duration`: every `hop` seconds, the last one aligned to the end.

    A file shorter than `window` is one span; otherwise every span is exactly `window` long, so no short tail
    window (whose scores would be unreliable) is ever scored.
    """
    if not (math.isfinite(window) and window > 0 and math.isfinite(hop) and hop > 0):
        raise ConfigError(f"--window {window} and --hop {hop} must be finite, positive seconds")
    if duration <= window:
        return [(0.0, duration)]
    starts = list(np.arange(0.0, duration - window + 1e-9, hop))
    if starts[-1] + window < duration - 1e-9:
        starts.append(duration - window)
    return [(float(s), float(s) + window) for s in starts]


def iter_windows(
    path: str | os.PathLike, sample_rate: int, window: float, hop: float
) -> Iterator[tuple[float, float, torch.Tensor]]:
    """Yields (start, end, wave) for each window of `path`, decoding only that window each time."""
    from kd.core.audio import audio_info, load_audio

    for start, end in window_spans(audio_info(path).duration, window, hop):
        yield start, end, load_audio(path, sample_rate, start=start, end=end)


@dataclass(frozen=True)
class Prediction:
    """Tags of one file.

    Attributes:
        path: the file.
        spans: [windows, 2] start and end seconds.
        window_probs: [windows, classes] sigmoid probabilities per window.
        pooling: how `clip_probs` pools windows.
        clip_probs: [classes] clip-level probabilities.
        labels: class names in order.
    """

    path: str
    spans: np.ndarray
    window_probs: np.ndarray
    pooling: str
    clip_probs: np.ndarray
    labels: tuple[str, ...]

    def top(self, n: int) -> list[tuple[str, float]]:
        order = np.argsort(-self.clip_probs, kind="stable")[:n]
        return [(self.labels[i], float(self.clip_probs[i])) for i in order]


def predict_file(
    tagger: Tagger,
    path: str | os.PathLike,
    window: float = 10.0,
    hop: float | None = None,
    pooling: str = "max",
    batch_size: int = 8,
) -> Prediction:
    """Windowed tagging of one file of any length (see the module docstring for memory and pooling).

    Args:
        tagger: the model.
        path: any audio file `kd.core.audio` decodes.
        window: window length in seconds.
        hop: seconds between window starts (default: `window`, no overlap).
        pooling: 'max' or 'mean' over windows for the clip-level scores.
        batch_size: windows per forward pass.
    """
    if pooling not in POOLINGS:
        raise ConfigError(f"--pool {pooling!r}: choose one of {', '.join(POOLINGS)}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    hop = window if hop is None else hop
    window_spans(0.0, window, hop)  # checks window and hop before the file is opened
    spans, probs, batch = [], [], []

    def flush() -> None:
        # Windows are equal-length except a whole file shorter than one window, which is alone anyway.
        lengths = {len(w) for w in batch}
        groups = [torch.stack(batch)] if len(lengths) == 1 else [w[None] for w in batch]
        for waves in groups:
            probs.append(torch.sigmoid(tagger(waves)).numpy())
        batch.clear()

    for start, end, wave in iter_windows(path, tagger.sample_rate, window, hop):
        spans.append((start, end))
        batch.append(wave)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    window_probs = np.concatenate(probs)
    clip_probs = window_probs.max(axis=0) if pooling == "max" else window_probs.mean(axis=0)
    return Prediction(str(path), np.array(spans), window_probs, pooling, clip_probs, tuple(tagger.labels.names))


def clip_tags(prediction: Prediction, top: int) -> dict:
    """The clip-level result of one file as plain data: its windows, pooling and top tags with probabilities."""
    return {
        "path": prediction.path,
        "duration": float(prediction.spans[:, 1].max()) if len(prediction.spans) else 0.0,
        "windows": len(prediction.spans),
        "pooling": prediction.pooling,
        "tags": [{"label": label, "probability": round(prob, 6)} for label, prob in prediction.top(top)],
    }


def write_tags(predictions: list[Prediction], out: TextIO, format: str, top: int) -> None:
    """Writes each file's top clip-level tags to `out`: JSON (one object) or CSV (file, rank, label, probability)."""
    if format == "json":
        json.dump({"files": [clip_tags(p, top) for p in predictions]}, out, indent=1)
        out.write("\n")
        return
    writer = csv.writer(out)
    writer.writerow(["file", "rank", "label", "probability"])
    for p in predictions:
        for rank, (label, prob) in enumerate(p.top(top), start=1):
            writer.writerow([p.path, rank, label, f"{prob:.6f}"])


def write_timeline(predictions: list[Prediction], path: str | os.PathLike) -> Path:
    """Writes every window's probabilities: CSV (file, start, end, one column per class) or JSON (by suffix)."""
    path = Path(path)
    if path.suffix not in (".csv", ".json"):
        raise ConfigError(f"--timeline {path}: use a .csv or .json file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = predictions[0].labels
    if path.suffix == ".json":
        data = {
            "labels": list(labels),
            "files": [
                {
                    "path": p.path,
                    "pooling": p.pooling,
                    "windows": [
                        {"start": float(s), "end": float(e), "probs": [round(float(x), 6) for x in row]}
                        for (s, e), row in zip(p.spans, p.window_probs, strict=True)
                    ],
                }
                for p in predictions
            ],
        }
        path.write_text(json.dumps(data), encoding="utf-8")
        return path
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "start", "end", *labels])
        for p in predictions:
            for (s, e), row in zip(p.spans, p.window_probs, strict=True):
                writer.writerow([p.path, f"{s:.3f}", f"{e:.3f}", *(f"{x:.6f}" for x in row)])
    return path


def plot_timeline(prediction: Prediction, path: str | os.PathLike, top: int = 5) -> Path:
    """PNG of the top tags' window probabilities over time (window centres), one line per tag."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install kd[plot]") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    centres = prediction.spans.mean(axis=1)
    fig, ax = plt.subplots(figsize=(10, 4))
    for label, _ in prediction.top(top):
        i = prediction.labels.index(label)
        ax.plot(centres, prediction.window_probs[:, i], marker="o" if len(centres) < 50 else None, label=label)
    ax.set_xlabel("time (s, window centre)")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.set_title(Path(prediction.path).name)
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
