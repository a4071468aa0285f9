"""Rendering a view: decode the clip's crop (and its mixup partner's), then apply the view's augmentation.

The dump and the training dataset both call `render_view`, which is what makes replay bit-for-bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from kd.core.audio import audio_info, load_audio
from kd.core.augment import AugmentPolicy, ViewParams, apply_view, crop_window, fit_length
from kd.core.errors import AudioError


@dataclass(frozen=True)
class ClipTable:
    """The columns of a store's clips table that rendering needs (absolute paths, segments, durations)."""

    paths: list[str]
    starts: np.ndarray
    durations: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)


def load_crop(clips: ClipTable, index: int, crop: float, policy: AugmentPolicy) -> torch.Tensor:
    """Decodes only the part of clip `index` that a view with relative offset `crop` uses."""
    duration = float(clips.durations[index])
    if not np.isfinite(duration):
        audio_info(clips.paths[index])  # raises the file's real problem
        raise AudioError(
            clips.paths[index], "was unreadable when last dumped; fix it and rerun `kd dump-teachers` into this store"
        )
    start, end = crop_window(duration, crop, policy)
    offset = float(clips.starts[index])
    wave = load_audio(clips.paths[index], policy.sample_rate, offset + start, offset + end)
    return fit_length(wave, policy.num_samples)


def render_view(clips: ClipTable, index: int, params: ViewParams, policy: AugmentPolicy) -> torch.Tensor:
    """The waveform [policy.num_samples] at policy.sample_rate that teachers and student hear for this view."""
    wave = load_crop(clips, index, params.crop, policy)
    partner = load_crop(clips, params.partner, params.partner_crop, policy) if params.partner >= 0 else None
    return apply_view(wave, params, policy, partner)
