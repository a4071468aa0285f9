"""Feature front ends shared by teachers and students; each is an `nn.Module` from waveforms to features.

A model's front end is part of its identity: its settings are recorded in the model's card and in every store.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torchaudio

from kd.core.errors import ConfigError


@dataclass(frozen=True)
class KaldiFbankConfig:
    """Kaldi-compatible log-mel filterbanks as used by AST, DASS, BEATs and others.

    Normalisation is `(fbank - mean) / std`; models that divide by twice their dataset std pass that as `std`.
    """

    sample_rate: int = 16000
    num_mel_bins: int = 128
    frame_shift_ms: float = 10.0
    frame_length_ms: float = 25.0
    window_type: str = "hanning"
    htk_compat: bool = True
    use_energy: bool = False
    waveform_scale: float = 1.0
    remove_dc: bool = True
    mean: float = 0.0
    std: float = 1.0


class KaldiFbank(torch.nn.Module):
    """Waveforms [batch, samples] -> normalised fbank [batch, frames, mel bins]; any length, no padding."""

    def __init__(self, config: KaldiFbankConfig) -> None:
        super().__init__()
        self.config = config

    def settings(self) -> dict:
        return {"type": "kaldi_fbank", **asdict(self.config)}

    def num_frames(self, num_samples: int) -> int:
        c = self.config
        shift = int(c.sample_rate * c.frame_shift_ms / 1000)
        length = int(c.sample_rate * c.frame_length_ms / 1000)
        return 0 if num_samples < length else 1 + (num_samples - length) // shift

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        c = self.config
        feats = []
        for wave in waves.float():
            wave = wave * c.waveform_scale
            if c.remove_dc:
                wave = wave - wave.mean()
            fbank = torchaudio.compliance.kaldi.fbank(
                wave[None],
                sample_frequency=c.sample_rate,
                num_mel_bins=c.num_mel_bins,
                frame_shift=c.frame_shift_ms,
                frame_length=c.frame_length_ms,
                window_type=c.window_type,
                htk_compat=c.htk_compat,
                use_energy=c.use_energy,
                dither=0.0,
            )
            feats.append(fbank)
        return (torch.stack(feats) - c.mean) / c.std


@dataclass(frozen=True)
class EfficientATMelConfig:
    """Log-mel spectrogram of EfficientAT and PaSST (upstream `AugmentMelSTFT` in eval mode).

    Taken from fschmid56/EfficientAT `models/preprocess.py` (commit a425fdc): pre-emphasis, a centred STFT with a
    non-periodic Hann window shorter than `n_fft`, power, a kaldi triangular mel bank, `log(x + log_offset)`, then
    `(x + shift) / scale`. Upstream leaves `fmax` None, which means `sample_rate // 2 - 1000` (15 kHz at 32 kHz).
    """

    sample_rate: int = 32000
    n_mels: int = 128
    n_fft: int = 1024
    win_length: int = 800
    hop_length: int = 320
    fmin: float = 0.0
    fmax: float = 15000.0
    preemphasis: float = 0.97
    log_offset: float = 1e-5
    shift: float = 4.5
    scale: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.win_length <= self.n_fft:
            raise ConfigError(f"win_length {self.win_length} must be in (0, n_fft={self.n_fft}]")
        if self.hop_length <= 0 or self.n_mels <= 0:
            raise ConfigError(f"hop_length ({self.hop_length}) and n_mels ({self.n_mels}) must be positive")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ConfigError(f"need 0 <= fmin < fmax <= sample_rate / 2, got fmin={self.fmin}, fmax={self.fmax}")


class EfficientATMel(torch.nn.Module):
    """Waveforms [batch, samples] -> normalised log-mel [batch, mel bins, frames] (upstream's layout).

    Frames: `1 + (samples - 1) // hop_length` (pre-emphasis drops one sample, the STFT is centred). Inputs too short
    for the STFT's reflect padding are zero-padded on the right, where upstream would raise.
    """

    def __init__(self, config: EfficientATMelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.register_buffer("window", torch.hann_window(c.win_length, periodic=False), persistent=False)
        # Upstream builds the same bank on every eval forward; it depends only on the config, so build it once.
        bank, _ = torchaudio.compliance.kaldi.get_mel_banks(
            c.n_mels, c.n_fft, float(c.sample_rate), c.fmin, c.fmax, 100.0, -500.0, 1.0
        )
        # get_mel_banks covers n_fft // 2 bins; the Nyquist bin gets weight 0, as upstream pads it.
        self.register_buffer("mel_bank", torch.nn.functional.pad(bank.float(), (0, 1)), persistent=False)

    def settings(self) -> dict:
        return {"type": "efficientat_mel", **asdict(self.config)}

    def num_frames(self, num_samples: int) -> int:
        return 1 + (max(num_samples, self._min_samples()) - 1) // self.config.hop_length

    def _min_samples(self) -> int:
        # Reflect padding needs more than n_fft // 2 samples after pre-emphasis removed one.
        return self.config.n_fft // 2 + 2

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        c = self.config
        waves = waves.float()
        if waves.shape[-1] < self._min_samples():
            waves = torch.nn.functional.pad(waves, (0, self._min_samples() - waves.shape[-1]))
        # The trained models saw fp32 features (upstream disables autocast around the mel projection).
        with torch.autocast(device_type=waves.device.type, enabled=False):
            emphasised = waves[:, 1:] - c.preemphasis * waves[:, :-1]
            spec = torch.stft(
                emphasised,
                c.n_fft,
                hop_length=c.hop_length,
                win_length=c.win_length,
                window=self.window,
                center=True,
                normalized=False,
                return_complex=True,
            )
            power = torch.view_as_real(spec).pow(2).sum(-1)
            mel = torch.matmul(self.mel_bank, power)
            return ((mel + c.log_offset).log() + c.shift) / c.scale


# Front ends by the `type` their settings() report, so a declared or recorded front end can be rebuilt from settings.
FRONTEND_TYPES: dict[str, tuple[type[torch.nn.Module], type]] = {
    "kaldi_fbank": (KaldiFbank, KaldiFbankConfig),
    "efficientat_mel": (EfficientATMel, EfficientATMelConfig),
}


def build_frontend(settings: dict) -> torch.nn.Module:
    """Rebuilds a front end from a settings dict: {'type': name, **config fields}, as its `settings()` reports.

    Unknown types or fields raise ConfigError; fields left out take the config's defaults.
    """
    settings = dict(settings)
    kind = settings.pop("type", None)
    if kind not in FRONTEND_TYPES:
        raise ConfigError(f"unknown front end type {kind!r}; known: {', '.join(sorted(FRONTEND_TYPES))}")
    module, config_class = FRONTEND_TYPES[kind]
    try:
        config = config_class(**settings)
    except TypeError as e:
        raise ConfigError(f"front end {kind!r}: bad settings {sorted(settings)} ({e})") from None
    return module(config)
