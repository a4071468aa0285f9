"""CED teachers (Dinkel et al., "Consistent ensemble distillation for audio tagging", ICASSP 2024).

CED is a plain ViT over 64-bin mel spectrograms of 16 kHz audio with separate time and frequency positional
embeddings. Architecture, front end and checkpoint key names were read from RicherMans/CED
(`models/audiotransformer.py`, `models/layers.py` at commit 60a0f54214ea619265e16ee257925158be2675fd) and from the
Hugging Face port jimbozhang/hf_transformers_custom_model_ced (`ced_model/modeling_ced.py`,
`convert_ced_original_to_pytorch.py` at commit 1a9cd46bfc2b85e5fb756b9d55cb0974d582235b), which the `mispeech/ced-*`
checkpoints were saved from.

Our modules use the Hugging Face key names (`encoder.*`, `outputlayer.*`), so a `mispeech/ced-*` file loads as is;
an original Zenodo checkpoint goes through `original_to_hf`. Both load strictly: every key and shape must match.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from kd.core.errors import WeightsError
from kd.core.labels import audioset_labels
from kd.core.weights import WeightSource, file_sha256, load_strict, read_weights, resolve_weights
from kd.teachers.base import TeacherCard, TorchTeacher
from kd.teachers.catalog import TeacherEntry, meta_parameter_count, register_described
from kd.teachers.vit import Block, PatchEmbed


@dataclass(frozen=True)
class CedConfig:
    """One CED size; the defaults are those of every released checkpoint."""

    embed_dim: int
    num_heads: int
    depth: int = 12
    mlp_ratio: float = 4.0
    n_mels: int = 64
    patch_size: int = 16
    # Frames per chunk (about 10.1 s): the time positional embedding has target_length // patch_size entries.
    target_length: int = 1012
    num_classes: int = 527


CED_CONFIGS = {
    "tiny": CedConfig(embed_dim=192, num_heads=3),
    "mini": CedConfig(embed_dim=256, num_heads=4),
    "small": CedConfig(embed_dim=384, num_heads=6),
    "base": CedConfig(embed_dim=768, num_heads=12),
}

# Upstream's converter (convert_ced_original_to_pytorch.py) builds the mispeech/ced-* files from these Zenodo
# releases. No sha256 is pinned: the files can't be fetched from here to verify them.
_ZENODO = {
    "tiny": "https://zenodo.org/record/8275347/files/audiotransformer_tiny_mAP_4814.pt?download=1",
    "mini": "https://zenodo.org/record/8275347/files/audiotransformer_mini_mAP_4896.pt?download=1",
    "small": "https://zenodo.org/record/8275319/files/audiotransformer_small_mAP_4958.pt?download=1",
    "base": "https://zenodo.org/record/8275347/files/audiotransformer_base_mAP_4999.pt?download=1",
}


class CedMel(nn.Module):
    """CED's front end: waves [B, T] at 16 kHz -> mel power in dB [B, 64, frames].

    torchaudio MelSpectrogram (n_fft 512, periodic Hann window 512, hop 160, centred with reflect padding, power 2,
    64 HTK mel bins from 0 to 8 kHz, no filter normalisation) followed by AmplitudeToDB(top_db=120), exactly as
    upstream's `FrontEnd`. One deliberate difference: torchaudio applies top_db relative to the maximum of the whole
    [B, F, T] batch; we apply it per clip so a clip's features never depend on its batch mates. At batch size 1
    (upstream's inference.py) the two agree exactly.
    """

    sample_rate = 16000
    n_fft = 512
    win_length = 512
    hop_length = 160
    f_min = 0.0
    f_max = 8000.0
    top_db = 120.0

    def __init__(self, n_mels: int = 64) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=self.sample_rate,
            n_fft=self.n_fft,
            win_length=self.win_length,
            hop_length=self.hop_length,
            f_min=self.f_min,
            f_max=self.f_max,
            n_mels=n_mels,
            center=True,
        )

    def settings(self) -> dict:
        return {
            "type": "ced_mel",
            "sample_rate": self.sample_rate,
            "n_fft": self.n_fft,
            "win_length": self.win_length,
            "hop_length": self.hop_length,
            "window": "hann_periodic",
            "center": True,
            "n_mels": self.n_mels,
            "f_min": self.f_min,
            "f_max": self.f_max,
            "mel_scale": "htk",
            "power_to_db": {"amin": 1e-10, "top_db": self.top_db, "per_clip": True},
        }

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        # Autocast off: the power spectrum overflows float16 (upstream disables autocast here too).
        with torch.autocast(waves.device.type, enabled=False):
            power = self.mel(waves.float())
            db = 10.0 * torch.log10(power.clamp(min=1e-10))
            peak = db.amax(dim=(-2, -1), keepdim=True)
            return torch.maximum(db, peak - self.top_db)


class CedEncoder(nn.Module):
    """Mel chunks [N, 1, mels, frames <= target_length] (already batch-normed) -> tokens [N, patches, dim]."""

    def __init__(self, config: CedConfig) -> None:
        super().__init__()
        d = config.embed_dim
        self.init_bn = nn.BatchNorm2d(config.n_mels, momentum=0.01)
        self.patch_embed = PatchEmbed(config.patch_size, config.patch_size, d)
        self.time_pos_embed = nn.Parameter(torch.zeros(1, d, 1, config.target_length // config.patch_size))
        self.freq_pos_embed = nn.Parameter(torch.zeros(1, d, config.n_mels // config.patch_size, 1))
        self.blocks = nn.Sequential(*[Block(d, config.num_heads, config.mlp_ratio) for _ in range(config.depth)])
        self.norm = nn.LayerNorm(d, eps=1e-6)

    def normalise(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, mels, frames] -> [B, 1, mels, frames], batch-normed per mel bin (upstream's `init_bn`)."""
        return self.init_bn(mel.unsqueeze(1).transpose(1, 2)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = x + self.time_pos_embed[..., : x.shape[-1]] + self.freq_pos_embed
        x = x.flatten(2).transpose(1, 2)  # frequency-major token order, as upstream's 'b c f t -> b (f t) c'
        return self.norm(self.blocks(x))


class CedNetwork(nn.Module):
    """Mel dB [B, mels, frames] -> logits [B, classes]; key names are those of the Hugging Face checkpoints.

    Inputs longer than `target_length` frames are cut into consecutive chunks of that length, the last one
    zero-padded after batch norm (upstream's `pad_last`). Upstream averages the chunks' sigmoid outputs
    (`eval_avg='mean'`); we return the logit of that average, computed in log space so confident classes don't
    saturate. Two deliberate differences: upstream drops the last chunk when the length is an exact multiple of
    `target_length` (we keep it), and inputs shorter than one patch (16 frames, 0.15 s) are zero-padded to one patch
    instead of failing. The Hugging Face port averages tokens across chunks instead; we follow the original.
    """

    def __init__(self, config: CedConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = CedEncoder(config)
        self.outputlayer = nn.Sequential(
            nn.LayerNorm(config.embed_dim), nn.Linear(config.embed_dim, config.num_classes)
        )

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.encoder.normalise(mel)
        frames, chunk = x.shape[-1], self.config.target_length
        if frames <= chunk:
            return self._chunk_logits(F.pad(x, (0, max(0, self.config.patch_size - frames))))
        num_chunks = math.ceil(frames / chunk)
        x = F.pad(x, (0, num_chunks * chunk - frames))
        chunks = torch.stack(x.split(chunk, dim=-1))  # [chunks, B, 1, mels, chunk]
        logits = self._chunk_logits(chunks.flatten(0, 1)).unflatten(0, (num_chunks, -1))
        return _logit_of_mean_probability(logits, dim=0)

    def _chunk_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.outputlayer(self.encoder(x).mean(dim=1))


def _logit_of_mean_probability(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """logit(mean(sigmoid(logits))) along `dim`, without forming probabilities that round to 0 or 1."""
    log_n = math.log(logits.shape[dim])
    log_p = torch.logsumexp(F.logsigmoid(logits), dim=dim) - log_n
    log_not_p = torch.logsumexp(F.logsigmoid(-logits), dim=dim) - log_n
    return log_p - log_not_p


class CedTagger(nn.Module):
    """Waves [B, T] at 16 kHz -> AudioSet logits [B, 527]."""

    def __init__(self, config: CedConfig) -> None:
        super().__init__()
        self.frontend = CedMel(config.n_mels)
        self.network = CedNetwork(config)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return self.network(self.frontend(waves))


def original_to_hf(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Renames an original RicherMans/CED state_dict to the Hugging Face layout.

    Returns:
        The renamed network weights, and the front-end buffers the original file carries (`front_end.*`: the STFT
        window and mel filterbank), which the Hugging Face layout drops and we check against our own front end.
    """
    network, frontend = {}, {}
    for key, value in state_dict.items():
        if key.startswith("front_end."):
            frontend[key] = value
        elif key.startswith("outputlayer."):
            network[key] = value
        else:
            network["encoder." + key.replace("init_bn.1.", "init_bn.", 1)] = value
    return network, frontend


def hf_to_original(state_dict: dict[str, torch.Tensor], frontend: CedMel) -> dict[str, torch.Tensor]:
    """The inverse of `original_to_hf`; the original layout's front-end buffers are taken from `frontend`."""
    out = {
        "front_end.0.spectrogram.window": frontend.mel.spectrogram.window.clone(),
        "front_end.0.mel_scale.fb": frontend.mel.mel_scale.fb.clone(),
    }
    for key, value in state_dict.items():
        if key.startswith("encoder."):
            out[key.removeprefix("encoder.").replace("init_bn.", "init_bn.1.", 1)] = value
        else:
            out[key] = value
    return out


def load_ced_weights(tagger: CedTagger, state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Loads either layout into `tagger` strictly; raises WeightsError naming what does not match."""
    if any(k.startswith("encoder.") for k in state_dict):
        network_sd, frontend_sd = state_dict, {}
    elif "time_pos_embed" in state_dict:
        network_sd, frontend_sd = original_to_hf(state_dict)
    else:
        raise WeightsError(f"{source}: neither a CED checkpoint in the original layout nor in the Hugging Face one")
    ours = {
        "front_end.0.spectrogram.window": tagger.frontend.mel.spectrogram.window,
        "front_end.0.mel_scale.fb": tagger.frontend.mel.mel_scale.fb,
    }
    for key, value in frontend_sd.items():
        if key not in ours or value.shape != ours[key].shape or not torch.allclose(value, ours[key], atol=1e-6):
            raise WeightsError(f"{source}: front-end buffer {key} differs from CED's front end; not a CED checkpoint?")
    load_strict(tagger.network, network_sd, source, "the CED model")


def ced_weights(size: str) -> WeightSource:
    return WeightSource(f"ced_{size}.pt", url=_ZENODO[size], sha256=None)


def ced_card(size: str) -> TeacherCard:
    """The card of `ced/<size>`; it depends on the size alone, not on the weights."""
    return TeacherCard(
        name=f"ced/{size}",
        sample_rate=CedMel.sample_rate,
        num_classes=CED_CONFIGS[size].num_classes,
        label_space="audioset",
        frontend=CedMel(CED_CONFIGS[size].n_mels).settings(),
        weights=ced_weights(size),
        description=f"CED-{size.capitalize()} (ViT, 16x16 patches on 64 mels), 10.1 s chunks averaged",
    )


def build_ced(size: str, checkpoint: str | os.PathLike | None = None) -> TorchTeacher:
    """The CED teacher of `size` ('tiny', 'mini', 'small', 'base') with its AudioSet weights."""
    path = resolve_weights(ced_weights(size), checkpoint)
    tagger = CedTagger(CED_CONFIGS[size])
    load_ced_weights(tagger, read_weights(path), str(path))
    return TorchTeacher(ced_card(size), audioset_labels(), tagger, file_sha256(path))


def describe_ced(size: str) -> TeacherEntry:
    return TeacherEntry(ced_card(size), lambda: meta_parameter_count(CedNetwork, CED_CONFIGS[size]))


for _size in CED_CONFIGS:
    register_described(f"ced/{_size}", partial(build_ced, _size), partial(describe_ced, _size))
