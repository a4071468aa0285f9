"""`kd eval`: a tagger's mAP, mean AUC, d-prime and per-class AP on a labelled manifest, one whole clip at a time."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from kd.core.errors import ManifestError
from kd.core.labels import LabelSpace, resolve_labels
from kd.core.manifest import Clip
from kd.core.metrics import TaggingMetrics, tagging_metrics
from kd.use.models import Tagger


@dataclass(frozen=True)
class EvalReport:
    """What `kd eval` prints and writes.

    Attributes:
        model: the tagger's name.
        manifest: the manifest evaluated.
        clips: clips scored.
        seconds: audio seconds scored.
        wall_seconds: time taken.
        metrics: the tagging metrics over the tagger's classes.
        labels: the tagger's label space.
        unresolved: manifest labels the tagger cannot predict, with clip counts.
    """

    model: str
    manifest: str
    clips: int
    seconds: float
    wall_seconds: float
    metrics: TaggingMetrics
    labels: LabelSpace
    unresolved: dict[str, int]

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "manifest": self.manifest,
            "clips": self.clips,
            "audio_seconds": self.seconds,
            "wall_seconds": self.wall_seconds,
            "label_space": self.labels.name,
            "unresolved_labels": self.unresolved,
            **self.metrics.to_json(self.labels.names),
        }


def score_clips(tagger: Tagger, clips: Sequence[Clip], progress: bool = True) -> tuple[np.ndarray, float]:
    """Logits [clips, classes] of whole clips (each its own forward, any length) and the audio seconds scored."""
    from kd.core.audio import load_audio
    from kd.core.progress import track

    logits, seconds = [], 0.0
    for clip in track(clips, "scoring clips") if progress else clips:
        wave = load_audio(clip.path, tagger.sample_rate, clip.start, clip.end)
        seconds += len(wave) / tagger.sample_rate
        logits.append(tagger(wave[None])[0].numpy())
    return np.stack(logits), seconds


def evaluate(tagger: Tagger, manifest: str | os.PathLike, progress: bool = True) -> EvalReport:
    """Scores every labelled clip of `manifest` with `tagger` and computes the tagging metrics.

    Clips without labels are skipped (they carry no ground truth). Each clip is one forward pass over its whole
    length: students and CNN teachers take any length, window-based teachers (YAMNet) pool their windows themselves.
    """
    from kd.core.manifest import load_manifest

    loaded = load_manifest(manifest)
    clips = [clip for clip in loaded.clips if clip.labels]
    if not clips:
        raise ManifestError(f"{manifest}: no clip has labels; `kd eval` needs a labelled manifest")
    resolution = resolve_labels([clip.labels for clip in clips], tagger.labels)
    began = time.perf_counter()
    logits, seconds = score_clips(tagger, clips, progress)
    metrics = tagging_metrics(resolution.targets, torch.sigmoid(torch.from_numpy(logits)).numpy())
    return EvalReport(
        model=tagger.name,
        manifest=str(manifest),
        clips=len(clips),
        seconds=seconds,
        wall_seconds=time.perf_counter() - began,
        metrics=metrics,
        labels=tagger.labels,
        unresolved=resolution.unresolved,
    )
