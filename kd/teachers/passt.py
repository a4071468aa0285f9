"""PaSST teachers (Koutini et al., "Efficient Training of Audio Transformers with Patchout", Interspeech 2022).

A DeiT-style ViT (class and distillation tokens) over overlapping 16x16 patches of EfficientAT-style 128-bin log-mels
at 32 kHz, with separate frequency and time positional embeddings. Architecture, front end and key names were read
from kkoutini/PaSST `models/passt.py` and `models/preprocess.py` at commit 2a5c818afcc2a215b2a1aaf1ed8be71f89d43201.
Logits are `head((cls + dist) / 2)`; `head_dist` is stored in the checkpoints but unused at inference, as upstream.

The time positional embedding has a fixed length (99 patches = 998 frames, about 10 s, for the 10 s models). Like
upstream's `forward_features` in eval mode, shorter inputs use its first entries and longer inputs are cut to the
patches it covers, so only the first ~10 s (20 s, 30 s for those models) of a longer input count.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from kd.core.frontends import EfficientATMel, EfficientATMelConfig
from kd.core.labels import audioset_labels
from kd.core.weights import WeightSource, file_sha256, load_state_dict, load_strict, resolve_weights
from kd.teachers.base import TeacherCard, TorchTeacher
from kd.teachers.catalog import TeacherEntry, meta_parameter_count, register_described
from kd.teachers.vit import Block, PatchEmbed

# Upstream's AugmentMelSTFT in eval mode as configured in ex_audioset.py: 32 kHz, pre-emphasis 0.97, 1024-point STFT
# with an 800-sample symmetric Hann window and hop 320, 128 kaldi mel bins from 0 to 15 kHz (fmax = sr/2 -
# fmax_aug_range/2 with fmax_aug_range 2000), log(x + 1e-5), (x + 4.5) / 5: EfficientATMelConfig's defaults.
PASST_MEL = EfficientATMelConfig()
PASST_FRONTEND_SETTINGS = {"type": "efficientat_mel", **asdict(PASST_MEL)}  # EfficientATMel.settings(), unbuilt


@dataclass(frozen=True)
class PasstConfig:
    """One PaSST architecture; the patch grid follows from the mel size, the patch stride and the frame count."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    stride: int = 10
    n_mels: int = 128
    frames: int = 998  # upstream's input_tdim: the spectrogram length the time positional embedding covers
    num_classes: int = 527

    @property
    def grid(self) -> tuple[int, int]:
        """(frequency, time) sizes of the positional embeddings, as upstream's PatchEmbed.grid_size."""
        return self.n_mels // self.stride, self.frames // self.stride


class PasstNetwork(nn.Module):
    """Log-mel [B, 128, frames] -> logits [B, classes]; key names are upstream's."""

    def __init__(self, config: PasstConfig) -> None:
        super().__init__()
        self.config = config
        d = config.embed_dim
        freq, time = config.grid
        self.patch_embed = PatchEmbed(config.patch_size, config.stride, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, d))
        self.new_pos_embed = nn.Parameter(torch.zeros(1, 2, d))
        self.freq_new_pos_embed = nn.Parameter(torch.zeros(1, d, freq, 1))
        self.time_new_pos_embed = nn.Parameter(torch.zeros(1, d, 1, time))
        self.blocks = nn.Sequential(*[Block(d, config.num_heads, config.mlp_ratio) for _ in range(config.depth)])
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, config.num_classes))
        self.head_dist = nn.Linear(d, config.num_classes)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        # Fewer frames than one patch would fail in the convolution; pad with the log-mel of silence.
        short = self.config.patch_size - mel.shape[-1]
        if short > 0:
            silence = (torch.log(torch.tensor(PASST_MEL.log_offset)) + PASST_MEL.shift) / PASST_MEL.scale
            mel = F.pad(mel, (0, short), value=float(silence))
        x = self.patch_embed(mel.unsqueeze(1))  # [B, D, freq patches, time patches]
        x = x[..., : self.time_new_pos_embed.shape[-1]]  # upstream cuts what the time embedding doesn't cover
        x = x + self.time_new_pos_embed[..., : x.shape[-1]] + self.freq_new_pos_embed
        x = x.flatten(2).transpose(1, 2)
        b = x.shape[0]
        cls = self.cls_token.expand(b, -1, -1) + self.new_pos_embed[:, :1]
        dist = self.dist_token.expand(b, -1, -1) + self.new_pos_embed[:, 1:]
        x = self.norm(self.blocks(torch.cat([cls, dist, x], dim=1)))
        return self.head((x[:, 0] + x[:, 1]) / 2)


class PasstTagger(nn.Module):
    """Waves [B, T] at 32 kHz -> AudioSet logits [B, 527]."""

    def __init__(self, config: PasstConfig) -> None:
        super().__init__()
        self.frontend = EfficientATMel(PASST_MEL)
        self.network = PasstNetwork(config)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return self.network(self.frontend(waves))


_RELEASE = "https://github.com/kkoutini/PaSST/releases/download/"
# name -> (config, file in upstream's release). No sha256 pinned: the files can't be fetched from here to verify.
# Not registered: the stfthop100/160 models (they need another STFT hop) and the OpenMIC ones (not AudioSet).
PASST_MODELS: dict[str, tuple[PasstConfig, str]] = {
    "s_swa_p16_128_ap476": (PasstConfig(), "v0.0.1-audioset/passt-s-f128-p16-s10-ap.476-swa.pt"),
    "s_swa_p16_128_ap4761": (PasstConfig(), "v0.0.2-audioset/passt-s-f128-p16-s10-ap.4761-swa.pt"),
    "s_p16_128_ap472": (PasstConfig(), "v0.0.2-audioset/passt-s-f128-p16-s10-ap.472.pt"),
    "s_kd_p16_128_ap486": (PasstConfig(), "v.0.0.9/passt-s-kd-ap.486.pt"),
    "l_kd_p16_128_ap47": (PasstConfig(depth=7), "v.0.0.10/passt-l-kd-ap.47.pt"),
    "s_p16_s16_128_ap468": (PasstConfig(stride=16), "v0.0.2-audioset/passt-s-f128-p16-s16-ap.468.pt"),
    "s_swa_p16_s16_128_ap473": (PasstConfig(stride=16), "v0.0.2-audioset/passt-s-f128-p16-s16-ap.473-swa.pt"),
    "s_swa_p16_s14_128_ap471": (PasstConfig(stride=14), "v0.0.2-audioset/passt-s-f128-p16-s14-ap.471-swa.pt"),
    "s_p16_s14_128_ap469": (PasstConfig(stride=14), "v0.0.2-audioset/passt-s-f128-p16-s14-ap.469.pt"),
    "s_swa_p16_s12_128_ap473": (PasstConfig(stride=12), "v0.0.2-audioset/passt-s-f128-p16-s12-ap.473-swa.pt"),
    "s_p16_s12_128_ap470": (PasstConfig(stride=12), "v0.0.2-audioset/passt-s-f128-p16-s12-ap.470.pt"),
    "s_f128_20sec_p16_s10_ap474_swa": (PasstConfig(frames=2000), "v0.0.5/passt-s-f128-20sec-p16-s10-ap.474-swa.pt"),
    "s_f128_30sec_p16_s10_ap473_swa": (PasstConfig(frames=3000), "v0.0.5/passt-s-f128-30sec-p16-s10-ap.473-swa.pt"),
}


def passt_weights(name: str) -> WeightSource:
    release_file = PASST_MODELS[name][1]
    return WeightSource(release_file.rsplit("/", 1)[-1], url=_RELEASE + release_file, sha256=None)


def passt_card(name: str) -> TeacherCard:
    """The card of `passt/<name>`; it depends on the release alone, not on the weights."""
    config = PASST_MODELS[name][0]
    seconds = (config.frames * PASST_MEL.hop_length) / PASST_MEL.sample_rate
    return TeacherCard(
        name=f"passt/{name}",
        sample_rate=PASST_MEL.sample_rate,
        num_classes=config.num_classes,
        label_space="audioset",
        frontend=dict(PASST_FRONTEND_SETTINGS),
        weights=passt_weights(name),
        description=f"PaSST {name}: depth {config.depth}, patch stride {config.stride}; inputs cut to {seconds:.1f} s",
    )


def build_passt(name: str, checkpoint: str | os.PathLike | None = None) -> TorchTeacher:
    """The PaSST teacher `name` (a key of PASST_MODELS) with its AudioSet weights."""
    path = resolve_weights(passt_weights(name), checkpoint)
    tagger = PasstTagger(PASST_MODELS[name][0])
    load_strict(tagger.network, load_state_dict(path), path, "the PaSST model")
    return TorchTeacher(passt_card(name), audioset_labels(), tagger, file_sha256(path))


def describe_passt(name: str) -> TeacherEntry:
    return TeacherEntry(passt_card(name), lambda: meta_parameter_count(PasstNetwork, PASST_MODELS[name][0]))


for _name in PASST_MODELS:
    register_described(f"passt/{_name}", partial(build_passt, _name), partial(describe_passt, _name))
