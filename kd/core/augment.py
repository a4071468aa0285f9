"""Replayable augmentation: a view's parameters are a pure function of (policy, seed, clip index, clip count).

Random numbers come from a counter-based generator (Philox) keyed by the view's seed, so any process on any machine
draws the same view, and nothing depends on global RNG state. Changing what a seed means must bump POLICY_VERSION:
the golden test in tests/core/test_augment.py fails otherwise.

Where each part applies: crop, shift, gain, time masks and mixup act on the waveform at `policy.sample_rate`, before
any front end, so every teacher and the student hear the same sound. Frequency masks are positions in relative units
that only the student's front end applies (teachers' mel scales differ, so a common frequency mask has no meaning).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from kd.core.errors import ConfigError

POLICY_VERSION = 1
CUTMIX_VERSION = 2  # a policy that splices partners; older kds cannot replay it, so they must refuse it
REPLAYABLE_VERSIONS = (1, 2)


@dataclass(frozen=True)
class AugmentPolicy:
    """How views are drawn. All durations in seconds, all positions relative (0..1).

    Attributes:
        sample_rate: rate at which views are rendered (then resampled to each model's rate).
        clip_seconds: every view is this long: longer clips are cropped, shorter ones zero-padded at the end.
        clean_first_view: view 0 of every clip is the plain clip (centre crop, no augmentation).
        shift_max: largest circular time shift, as a fraction of the view.
        gain_db: gain drawn uniformly from [-gain_db, gain_db].
        mixup_prob: probability that a view mixes in another clip.
        mixup_alpha: mixing weight drawn from Beta(alpha, alpha), folded to be >= 0.5 for the view's own clip.
        cutmix_prob: probability that a two-clip view splices the partner in (CutMix along time: the partner
            replaces a span of 1 - weight of the view) instead of blending it in (mixup).
        time_masks, time_mask_max: number of time masks (zeroed spans of the waveform) and their largest width.
        freq_masks, freq_mask_max: number of frequency masks for the student's features and their largest width.
    """

    version: int = POLICY_VERSION
    sample_rate: int = 32000
    clip_seconds: float = 10.0
    clean_first_view: bool = True
    shift_max: float = 0.2
    gain_db: float = 6.0
    mixup_prob: float = 0.5
    mixup_alpha: float = 0.3
    time_masks: int = 2
    time_mask_max: float = 0.05
    freq_masks: int = 2
    freq_mask_max: float = 0.1
    cutmix_prob: float = 0.0

    def __post_init__(self) -> None:
        # The version says which kd can replay the policy: splicing is new in 2, policies without it stay 1.
        object.__setattr__(self, "version", CUTMIX_VERSION if self.cutmix_prob else POLICY_VERSION)
        checks = {
            "sample_rate": self.sample_rate > 0,
            "clip_seconds": self.clip_seconds > 0,
            "shift_max": 0 <= self.shift_max <= 1,
            "gain_db": self.gain_db >= 0,
            "mixup_prob": 0 <= self.mixup_prob <= 1,
            "mixup_alpha": self.mixup_alpha > 0,
            "cutmix_prob": 0 <= self.cutmix_prob <= 1,
            "time_masks": self.time_masks >= 0,
            "time_mask_max": 0 <= self.time_mask_max <= 1,
            "freq_masks": self.freq_masks >= 0,
            "freq_mask_max": 0 <= self.freq_mask_max <= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"augmentation policy: invalid {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)}")

    @property
    def num_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))

    def to_json(self) -> dict:
        """The stored form; without splicing, exactly what kd wrote before cutmix existed (so old stores resume)."""
        data = asdict(self)
        if not self.cutmix_prob:
            del data["cutmix_prob"]
        return data

    @classmethod
    def from_json(cls, data: dict) -> AugmentPolicy:
        """Rebuilds a stored policy; refuses versions this kd cannot replay."""
        version = data.get("version")
        if version not in REPLAYABLE_VERSIONS:
            raise ConfigError(
                f"augmentation policy version {version} cannot be replayed by this kd (replays {REPLAYABLE_VERSIONS}); "
                "use the kd version that made the store"
            )
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


POLICIES: dict[str, AugmentPolicy] = {
    "default": AugmentPolicy(),
    "clean": AugmentPolicy(shift_max=0, gain_db=0, mixup_prob=0, time_masks=0, freq_masks=0),
    "strong": AugmentPolicy(shift_max=0.5, gain_db=10, mixup_prob=0.8, time_masks=3, freq_masks=3, freq_mask_max=0.15),
    # default's share of two-clip views, each spliced, the partner's span uniform in [0, 1/2] of the view: the label
    # says "weight w of this clip", while the teacher hears whether the clip's event survived the cut.
    "cutmix": AugmentPolicy(mixup_alpha=1.0, cutmix_prob=1.0),
}


def policy_by_name(name: str, **overrides: object) -> AugmentPolicy:
    if name not in POLICIES:
        raise ConfigError(f"unknown augmentation policy {name!r}; known: {', '.join(POLICIES)}")
    return AugmentPolicy(**{**POLICIES[name].to_json(), **overrides})


@dataclass(frozen=True)
class ViewParams:
    """Everything random about one view. Offsets and positions are relative; `partner` is -1 without mixup.

    `splice` is None for a blended partner, else where the partner's span starts, relative to the room left for it.
    """

    crop: float = 0.5
    shift: float = 0.0
    gain_db: float = 0.0
    partner: int = -1
    partner_crop: float = 0.5
    mix_weight: float = 1.0
    splice: float | None = None
    time_masks: tuple[tuple[float, float], ...] = field(default_factory=tuple)
    freq_masks: tuple[tuple[float, float], ...] = field(default_factory=tuple)


def view_seed(base_seed: int, clip_id: str, view: int) -> int:
    """The uint64 seed of (clip, view): stable across machines, runs and manifest order."""
    digest = hashlib.blake2b(f"{base_seed}\x00{clip_id}\x00{view}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def draw_view(policy: AugmentPolicy, seed: int, clip_index: int, num_clips: int, view: int = 1) -> ViewParams:
    """Draws one view's parameters. Pure: the same arguments give the same view everywhere."""
    if policy.clean_first_view and view == 0:
        return ViewParams()
    rng = np.random.Generator(np.random.Philox(key=int(seed) & (2**64 - 1)))
    # Draw every number in a fixed order whatever the policy switches, so a seed's meaning never shifts.
    crop, shift_u, gain_u, mix_u, partner_u, partner_crop, beta = (
        rng.random(),
        rng.random(),
        rng.random(),
        rng.random(),
        rng.random(),
        rng.random(),
        rng.beta(policy.mixup_alpha, policy.mixup_alpha),
    )
    time_masks = _masks(rng, policy.time_masks, policy.time_mask_max)
    freq_masks = _masks(rng, policy.freq_masks, policy.freq_mask_max)
    # Drawn last, and only by splicing policies, so that every older policy's seeds keep their meaning.
    cut_u, cut_start = (rng.random(), rng.random()) if policy.cutmix_prob else (1.0, 0.0)
    partner, splice = -1, None
    if num_clips > 1 and mix_u < policy.mixup_prob:
        partner = int(partner_u * (num_clips - 1))
        partner += partner >= clip_index
        if cut_u < policy.cutmix_prob:
            splice = float(cut_start)
    return ViewParams(
        crop=float(crop),
        shift=float((2 * shift_u - 1) * policy.shift_max),
        gain_db=float((2 * gain_u - 1) * policy.gain_db),
        partner=partner,
        partner_crop=float(partner_crop),
        mix_weight=float(max(beta, 1 - beta)) if partner >= 0 else 1.0,
        splice=splice,
        time_masks=time_masks,
        freq_masks=freq_masks,
    )


def _masks(rng: np.random.Generator, count: int, max_width: float) -> tuple[tuple[float, float], ...]:
    masks = []
    for _ in range(count):
        width = float(rng.random() * max_width)
        masks.append((float(rng.random() * (1 - width)), width))
    return tuple(masks)


def crop_window(duration: float, crop: float, policy: AugmentPolicy) -> tuple[float, float]:
    """The [start, end) seconds of a clip (relative to its own start) that a view with relative `crop` uses."""
    start = crop * max(0.0, duration - policy.clip_seconds)
    return start, min(duration, start + policy.clip_seconds)


def fit_length(wave: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Zero-pads or cuts `wave` [..., T] at the end to exactly `num_samples`."""
    if wave.shape[-1] >= num_samples:
        return wave[..., :num_samples]
    return torch.nn.functional.pad(wave, (0, num_samples - wave.shape[-1]))


def apply_view(
    wave: torch.Tensor, params: ViewParams, policy: AugmentPolicy, partner_wave: torch.Tensor | None = None
) -> torch.Tensor:
    """Applies shift, gain, mixup or splice, and time masks to cropped waveforms of exactly `policy.num_samples`.

    Deterministic: the same inputs give the same bits.
    """
    n = policy.num_samples
    out = fit_length(wave, n)
    if params.shift:
        out = torch.roll(out, int(round(params.shift * n)), dims=-1)
    if params.gain_db:
        out = out * float(10 ** (params.gain_db / 20))
    if params.partner >= 0:
        if partner_wave is None:
            raise ValueError("view mixes in a partner clip but no partner waveform was given")
        partner = fit_length(partner_wave, n)
        if params.splice is None:
            out = params.mix_weight * out + (1 - params.mix_weight) * partner
        else:
            width = int(round((1 - params.mix_weight) * n))
            a = int(params.splice * (n - width))
            out = out.clone()
            out[..., a : a + width] = partner[..., a : a + width]
    if params.time_masks:
        out = out.clone()
        for start, width in params.time_masks:
            a = int(start * n)
            out[..., a : a + int(width * n)] = 0
    return out


def apply_freq_masks(features: torch.Tensor, masks: tuple[tuple[float, float], ...]) -> torch.Tensor:
    """Zeroes relative frequency bands of features [..., frames, bins] (student side only)."""
    if not masks:
        return features
    out = features.clone()
    bins = features.shape[-1]
    for start, width in masks:
        a = int(start * bins)
        out[..., a : a + int(width * bins)] = 0
    return out
