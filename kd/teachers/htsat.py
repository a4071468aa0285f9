"""HTS-AT teacher (Chen et al., "HTS-AT: A Hierarchical Token-Semantic Audio Transformer", ICASSP 2022), AudioSet.

A 4-stage Swin transformer over a 256x256 "image" folded from a 1024-frame, 64-bin log-mel spectrogram (four
256-frame strips stacked along frequency), ending in a token-semantic convolution whose time average is the clip
logit. Architecture, front end and key names were read from RetroCirce/HTS-Audio-Transformer `model/htsat.py`,
`model/layers.py` and `config.py` at commit 798cf54da9dae9eb6cd00fcb08a116ba08936c1b; both model files are unchanged
at 2e29471 (the newest), where `sed_model.py` and `predict.py` were read for the inference path. The released
`HTSAT_AudioSet_Saved_*.ckpt` files are PyTorch Lightning checkpoints whose `state_dict` keys carry the wrapper's
`sed_model.` prefix.

Clips shorter than 5.12 s (512 frames or fewer) are where upstream's two inference paths part. `forward()`, which
its validation and test steps call, stretches the mel to 1024 frames (bicubic). `inference()` and `predict.py` pass
`infer_mode=True`, which first tiles the mel floor(1024 / frames) times, then stretches what is left.
`htsat/audioset` follows `forward()`, `htsat/audioset-tiled` follows `inference()`, and the card's front-end
settings say which (`short_clips`). From 10.24 s on, `infer_mode` tiles zero times and fails, so both names take
`forward()`'s crops there. Checked against upstream's `model/htsat.py` (2e29471) with a seeded checkpoint, fed this
module's mel: both names match their upstream path within 2e-7 in probability on 1, 3, 5.1 and 7 s of real audio.
The two paths differed by up to 0.04-0.10 logit below 5.12 s, and not at all at 7 s.

Upstream's `head` (a 527x527 Linear) is stored in the checkpoints but unused when the token-semantic head is on (the
released configuration), as here. The STFT kernels and mel bank stored in the checkpoint (torchlibrosa's frozen
`spectrogram_extractor` / `logmel_extractor`) are compared with ours at load time, then dropped.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from functools import partial

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from kd.core.errors import WeightsError
from kd.core.labels import audioset_labels
from kd.core.weights import WeightSource, file_sha256, load_state_dict, load_strict, resolve_weights
from kd.teachers.base import TeacherCard, TorchTeacher
from kd.teachers.catalog import TeacherEntry, meta_parameter_count, register_described
from kd.teachers.ced import _logit_of_mean_probability
from kd.teachers.vit import Mlp

CHECKPOINT_PREFIX = "sed_model."
# How clips shorter than one image are brought to 1024 frames, by registered name (see the module docstring).
SHORT_CLIPS = {"stretch": "htsat/audioset", "tile": "htsat/audioset-tiled"}


@dataclass(frozen=True)
class HtsatMelConfig:
    """Upstream config.py: 32 kHz, 1024-point STFT (periodic Hann 1024, hop 320, centred, reflect), 64 slaney mels."""

    sample_rate: int = 32000
    n_fft: int = 1024
    hop_length: int = 320
    n_mels: int = 64
    f_min: float = 50.0
    f_max: float = 14000.0
    amin: float = 1e-10


class HtsatMel(nn.Module):
    """Waves [B, T] -> log-mel power in dB [B, frames, 64]: 10 log10(max(mel, 1e-10)), no top_db (upstream's ref 1)."""

    def __init__(self, config: HtsatMelConfig = HtsatMelConfig()) -> None:
        super().__init__()
        self.config = c = config
        self.register_buffer("window", torch.hann_window(c.n_fft, periodic=True), persistent=False)
        # librosa.filters.mel(htk=False, norm='slaney'), which torchlibrosa's LogmelFilterBank uses: [freqs, mels].
        bank = torchaudio.functional.melscale_fbanks(
            c.n_fft // 2 + 1, c.f_min, c.f_max, c.n_mels, c.sample_rate, norm="slaney", mel_scale="slaney"
        )
        self.register_buffer("mel_bank", bank, persistent=False)

    def settings(self) -> dict:
        return {"type": "htsat_mel", **asdict(self.config), "window": "hann_periodic", "center": "reflect"}

    def stft_kernels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The real and imaginary DFT kernels [freqs, 1, n_fft] torchlibrosa stores (window folded in)."""
        n = self.config.n_fft
        angle = 2 * math.pi * torch.outer(torch.arange(n // 2 + 1), torch.arange(n)).double() / n
        window = self.window.double()
        return (torch.cos(angle) * window).float()[:, None], (-torch.sin(angle) * window).float()[:, None]

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        c = self.config
        waves = waves.float()
        if waves.shape[-1] <= c.n_fft // 2:  # reflect padding needs more samples; upstream would fail
            waves = F.pad(waves, (0, c.n_fft // 2 + 1 - waves.shape[-1]))
        with torch.autocast(waves.device.type, enabled=False):
            spec = torch.stft(waves, c.n_fft, c.hop_length, window=self.window, center=True, return_complex=True)
            power = spec.real.pow(2) + spec.imag.pow(2)  # [B, freqs, frames]
            mel = torch.matmul(power.transpose(1, 2), self.mel_bank)
            return 10.0 * torch.log10(mel.clamp(min=c.amin))


@dataclass(frozen=True)
class HtsatConfig:
    """The released AudioSet HTS-AT (config.py's htsat_* values)."""

    spec_size: int = 256
    patch_size: int = 4
    patch_stride: int = 4
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    window_size: int = 8
    mlp_ratio: float = 4.0
    n_mels: int = 64
    num_classes: int = 527

    @property
    def freq_ratio(self) -> int:
        return self.spec_size // self.n_mels

    @property
    def frames(self) -> int:
        """Spectrogram frames one image holds (1024: 10.24 s)."""
        return self.spec_size * self.freq_ratio


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """[B, H, W, C] -> [B * windows, window * window, C]."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def window_merge(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """The inverse of `window_partition`."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def relative_position_index(window: int) -> torch.Tensor:
    """Swin's index [window^2, window^2] into the (2 * window - 1)^2 bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return relative[..., 0] * (2 * window - 1) + relative[..., 1]


def shifted_window_mask(h: int, w: int, window: int, shift: int) -> torch.Tensor:
    """[windows, window^2, window^2]: -100 between tokens that the cyclic shift brought from different regions."""
    regions = torch.zeros(1, h, w, 1)
    bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for i, (hs, ws) in enumerate((hs, ws) for hs in bounds for ws in bounds):
        regions[:, hs, ws, :] = i
    ids = window_partition(regions, window).squeeze(-1)
    differ = ids[:, None, :] != ids[:, :, None]
    return torch.zeros(differ.shape).masked_fill(differ, -100.0)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        bias = bias.permute(2, 0, 1)[None]  # [1, heads, n, n]
        if mask is not None:  # windows of the batch are grouped per image: [B * nW] -> [B, nW]
            bias = (bias[None] + mask[None, :, None]).expand(b // mask.shape[0], -1, -1, -1, -1).flatten(0, 1)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class SwinBlock(nn.Module):
    """(Shifted-)window attention block; a stage no larger than a window uses one unshifted window, as upstream."""

    def __init__(self, dim: int, resolution: int, num_heads: int, window: int, shift: int, mlp_ratio: float) -> None:
        super().__init__()
        if resolution <= window:
            window, shift = resolution, 0
        self.resolution, self.window, self.shift = resolution, window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = shifted_window_mask(resolution, resolution, window, shift) if shift else None
        self.register_buffer("attn_mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        r, s = self.resolution, self.shift
        y = self.norm1(x).view(b, r, r, c)
        if s:
            y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
        y = self.attn(window_partition(y, self.window), self.attn_mask)
        y = window_merge(y, self.window, r, r)
        if s:
            y = torch.roll(y, shifts=(s, s), dims=(1, 2))
        x = x + y.reshape(b, n, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, resolution: int, dim: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        x = x.view(b, self.resolution, self.resolution, c)
        # Upstream's order: (even, even), (odd, even), (even, odd), (odd, odd) rows/columns.
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class Stage(nn.Module):
    def __init__(self, config: HtsatConfig, index: int) -> None:
        super().__init__()
        dim = config.embed_dim * 2**index
        resolution = config.spec_size // config.patch_stride // 2**index
        w = config.window_size
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, config.num_heads[index], w, 0 if i % 2 == 0 else w // 2, config.mlp_ratio)
            for i in range(config.depths[index])
        )
        self.downsample = PatchMerging(resolution, dim) if index < len(config.depths) - 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class HtsatPatchEmbed(nn.Module):
    def __init__(self, config: HtsatConfig) -> None:
        super().__init__()
        p, s = config.patch_size, config.patch_stride
        self.proj = nn.Conv2d(1, config.embed_dim, kernel_size=p, stride=s, padding=(p - s) // 2)
        self.norm = nn.LayerNorm(config.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class HtsatNetwork(nn.Module):
    """Log-mel dB [B, frames, 64] -> logits [B, 527]; key names are upstream's without `sed_model.`.

    Up to 1024 frames: one image. Longer: upstream's eval crops (length (T-1)//2, hop (T-1)//4) averaged in
    probability; we return the logit of that mean. Upstream fails past 2049 frames (crops exceed one image); there we
    keep its 50 % overlap with 1024-frame crops, the last one flush with the end (a deliberate extension).

    Args:
        config: the architecture.
        short_clips: for inputs shorter than one image, 'stretch' (upstream `forward()`) stretches them to 1024
            frames; 'tile' (upstream `inference()`) first repeats them floor(1024 / frames) times.
    """

    def __init__(self, config: HtsatConfig = HtsatConfig(), short_clips: str = "stretch") -> None:
        super().__init__()
        if short_clips not in SHORT_CLIPS:
            raise ValueError(f"short_clips must be one of {sorted(SHORT_CLIPS)}, not {short_clips!r}")
        self.config = config
        self.short_clips = short_clips
        self.bn0 = nn.BatchNorm2d(config.n_mels)
        self.patch_embed = HtsatPatchEmbed(config)
        self.layers = nn.ModuleList(Stage(config, i) for i in range(len(config.depths)))
        features = config.embed_dim * 2 ** (len(config.depths) - 1)
        self.norm = nn.LayerNorm(features)
        grid_freq = config.spec_size // 2 ** (len(config.depths) - 1) // config.patch_stride // config.freq_ratio
        self.tscam_conv = nn.Conv2d(features, config.num_classes, kernel_size=(grid_freq, 3), padding=(0, 1))
        self.head = nn.Linear(config.num_classes, config.num_classes)  # in the checkpoints; unused, as upstream

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.bn0(mel.transpose(1, 2)[..., None]).squeeze(-1).transpose(1, 2)[:, None]  # per mel bin
        frames, limit = x.shape[2], self.config.frames
        if frames <= limit:
            if self.short_clips == "tile":  # whole copies first; `fold` stretches the remainder, as upstream
                x = x.repeat(1, 1, limit // frames, 1)
            return self._image_logits(x)
        if frames <= 2 * limit + 1:
            crop, hop = (frames - 1) // 2, (frames - 1) // 4
            starts = list(range(0, frames - crop - 1, hop))
        else:
            crop, hop = limit, limit // 2
            starts = list(range(0, frames - crop, hop)) + [frames - crop]
        logits = torch.stack([self._image_logits(x[:, :, s : s + crop]) for s in starts])
        return _logit_of_mean_probability(logits, dim=0)

    def fold(self, x: torch.Tensor) -> torch.Tensor:
        """Upstream's `reshape_wav2img`: [B, 1, T <= 1024, 64] -> [B, 1, 256, 256], four 256-frame strips stacked."""
        c = self.config
        if x.shape[2] < c.frames:
            x = F.interpolate(x, (c.frames, x.shape[3]), mode="bicubic", align_corners=True)
        x = x.transpose(2, 3)  # [B, 1, mels, frames]
        x = x.reshape(x.shape[0], 1, c.n_mels, c.freq_ratio, c.spec_size).transpose(2, 3)
        return x.reshape(x.shape[0], 1, c.spec_size, c.spec_size)

    def _image_logits(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        x = self.patch_embed(self.fold(x))
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)
        b, n, d = x.shape
        side = int(math.isqrt(n))
        x = x.transpose(1, 2).reshape(b, d, side, side)
        # Token-semantic layout: the frequency rows of each stacked strip go side by side in time.
        rows = side // c.freq_ratio
        x = x.reshape(b, d, c.freq_ratio, rows, side).transpose(2, 3).reshape(b, d, rows, -1)
        return self.tscam_conv(x).flatten(2).mean(dim=-1)


class HtsatTagger(nn.Module):
    """Waves [B, T] at 32 kHz -> AudioSet logits [B, 527]."""

    def __init__(self, config: HtsatConfig = HtsatConfig(), short_clips: str = "stretch") -> None:
        super().__init__()
        self.frontend = HtsatMel()
        self.network = HtsatNetwork(config, short_clips)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return self.network(self.frontend(waves))


def load_htsat_weights(tagger: HtsatTagger, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Strict load of a `sed_model.`-prefixed (Lightning) or bare state_dict; the front-end tensors must be ours."""
    if any(k.startswith(CHECKPOINT_PREFIX) for k in state_dict):
        state_dict = {k.removeprefix(CHECKPOINT_PREFIX): v for k, v in state_dict.items()}
    real, imag = tagger.frontend.stft_kernels()
    ours = {
        "spectrogram_extractor.stft.conv_real.weight": real,
        "spectrogram_extractor.stft.conv_imag.weight": imag,
        "logmel_extractor.melW": tagger.frontend.mel_bank,
    }
    network = {}
    for key, value in state_dict.items():
        if key in ours:
            if value.shape != ours[key].shape or not torch.allclose(value.float(), ours[key], rtol=1e-3, atol=1e-6):
                raise WeightsError(f"{source}: front-end tensor {key} differs from HTS-AT's front end")
        elif not key.startswith(("spectrogram_extractor.", "logmel_extractor.")):
            network[key] = value
    load_strict(tagger.network, network, source, "the HTS-AT model")


HTSAT_WEIGHTS = WeightSource("HTSAT_AudioSet_Saved_1.ckpt", url=None, sha256=None)
# Upstream's README links the checkpoints on Google Drive (a page, not a file): pass the file with --checkpoint.
RELEASE_PAGE = "https://github.com/RetroCirce/HTS-Audio-Transformer#model-checkpoints"


_SHORT_CLIPS_DESCRIPTION = {
    "stretch": "clips under 5.12 s stretched to 1024 frames (upstream forward())",
    "tile": "clips under 5.12 s tiled floor(1024 / frames) times, then stretched (upstream inference(), predict.py)",
}


def htsat_card(short_clips: str = "stretch") -> TeacherCard:
    return TeacherCard(
        name=SHORT_CLIPS[short_clips],
        sample_rate=HtsatMelConfig.sample_rate,
        num_classes=HtsatConfig.num_classes,
        label_space="audioset",
        frontend={**HtsatMel().settings(), "short_clips": short_clips},
        weights=HTSAT_WEIGHTS,
        description=(
            "HTS-AT (Swin 96, depths 2-2-6-2, token-semantic head), 10.24 s images; "
            f"{_SHORT_CLIPS_DESCRIPTION[short_clips]}; longer inputs cropped"
        ),
    )


def build_htsat(short_clips: str, checkpoint: str | os.PathLike | None = None) -> TorchTeacher:
    """HTS-AT with upstream's AudioSet weights (a Lightning .ckpt read with weights_only=True, or a state_dict)."""
    path = resolve_weights(HTSAT_WEIGHTS, checkpoint)
    tagger = HtsatTagger(short_clips=short_clips)
    load_htsat_weights(tagger, load_state_dict(path), str(path))
    return TorchTeacher(htsat_card(short_clips), audioset_labels(), tagger, file_sha256(path))


def describe_htsat(short_clips: str) -> TeacherEntry:
    return TeacherEntry(
        htsat_card(short_clips),
        partial(meta_parameter_count, HtsatNetwork, HtsatConfig()),
        weights_origin=f"manual: {RELEASE_PAGE}",
    )


for _mode, _name in SHORT_CLIPS.items():
    register_described(_name, partial(build_htsat, _mode), partial(describe_htsat, _mode))
