"""BEATs teachers (Chen et al., "BEATs: Audio Pre-Training with Acoustic Tokenizers", ICML 2023), AudioSet fine-tuned.

A post-norm ("deep norm") transformer over 16x16 patches of 128-bin Kaldi fbanks, with a convolutional positional
embedding and gated, bucketed relative position biases, so any input length works without padding or chunking.
Architecture, front end and key names were read from microsoft/unilm `beats/BEATs.py` and `beats/backbone.py` at
commit 768a3c873f598bb9b4d4dfb9267b099e35f8fe56. A released checkpoint is `{'cfg': dict, 'model': state_dict}`;
the cfg holds only plain values, so it loads with `torch.load(weights_only=True)`, and we build the network from it.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from kd.core.errors import WeightsError
from kd.core.frontends import KaldiFbank, KaldiFbankConfig
from kd.core.labels import audioset_labels
from kd.core.weights import WeightSource, file_sha256, load_checkpoint_object, load_strict, resolve_weights
from kd.teachers.base import TeacherCard, TorchTeacher
from kd.teachers.catalog import TeacherEntry, meta_parameter_count, register_described

# Upstream's `preprocess`: kaldi fbank of waveform * 2**15 with torchaudio's defaults (povey window, no htk_compat,
# per-frame DC removal and pre-emphasis 0.97, no dither), then (fbank - 15.41663) / (2 * 6.55582).
BEATS_FBANK = KaldiFbankConfig(
    sample_rate=16000,
    num_mel_bins=128,
    frame_shift_ms=10.0,
    frame_length_ms=25.0,
    window_type="povey",
    htk_compat=False,
    use_energy=False,
    waveform_scale=32768.0,
    remove_dc=False,
    mean=15.41663,
    std=2 * 6.55582,
)


@dataclass(frozen=True)
class BeatsConfig:
    """The architecture fields of upstream's BEATsConfig; defaults are those of the AudioSet fine-tuned releases."""

    input_patch_size: int = 16
    embed_dim: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_norm_first: bool = False
    deep_norm: bool = True
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = True
    num_buckets: int = 320
    max_distance: int = 800
    gru_rel_pos: bool = True
    finetuned_model: bool = True
    predictor_class: int = 527

    @classmethod
    def from_checkpoint(cls, cfg: dict, source: str) -> BeatsConfig:
        """Picks the architecture fields from a checkpoint's cfg (training-only fields such as dropout are ignored)."""
        defaults = cls()
        config = cls(**{f.name: cfg.get(f.name, getattr(defaults, f.name)) for f in fields(cls)})
        # Only what the released fine-tuned checkpoints use is implemented; refuse the rest rather than guess.
        required = {
            "finetuned_model": True,
            "activation_fn": "gelu",
            "layer_norm_first": False,
            "relative_position_embedding": True,
            "gru_rel_pos": True,
        }
        for name, value in required.items():
            if getattr(config, name) != value:
                raise WeightsError(f"{source}: BEATs cfg has {name}={getattr(config, name)!r}; kd supports {value!r}")
        return config


class PositionalConv(nn.Module):
    """Grouped Conv1d, weight-normalised over dim 2 (fairseq's `weight_norm(conv, dim=2)`: weight_g, weight_v)."""

    def __init__(self, dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.kernel, self.groups = kernel, groups
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel))
        self.weight_v = nn.Parameter(torch.zeros(dim, dim // groups, kernel))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_v * (self.weight_g / self.weight_v.norm(dim=(0, 1), keepdim=True))
        x = F.conv1d(x, weight, self.bias, padding=self.kernel // 2, groups=self.groups)
        if self.kernel % 2 == 0:  # upstream's SamePad: an even kernel yields one frame too many
            x = x[..., :-1]
        return F.gelu(x)


def relative_position_buckets(length: int, num_buckets: int, max_distance: int) -> torch.Tensor:
    """T5-style bidirectional buckets [length, length], computed as upstream's `_relative_positions_bucket`."""
    position = torch.arange(length)
    relative = position[None, :] - position[:, None]
    half = num_buckets // 2
    buckets = (relative > 0).long() * half
    relative = relative.abs()
    max_exact = half // 2
    large = (
        max_exact
        + (torch.log(relative.float() / max_exact) / math.log(max_distance / max_exact) * (half - max_exact)).long()
    )
    large = large.clamp(max=half - 1)
    return buckets + torch.where(relative < max_exact, relative, large)


class BeatsAttention(nn.Module):
    """Multi-head self-attention with a relative position bias scaled by a per-query gate (`gru_rel_pos`)."""

    def __init__(self, dim: int, num_heads: int, relative_bias: nn.Embedding) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.grep_linear = nn.Linear(dim // num_heads, 8)
        self.grep_a = nn.Parameter(torch.ones(1, num_heads, 1, 1))
        # Upstream keeps one bias table, in layer 0, and aliases it from every layer; state_dicts repeat it per layer.
        self.relative_attention_bias = relative_bias

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        heads = lambda t: t.view(b, n, self.num_heads, -1).transpose(1, 2)  # noqa: E731
        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        gate_a, gate_b = torch.sigmoid(self.grep_linear(q).view(b, self.num_heads, n, 2, 4).sum(-1)).chunk(2, dim=-1)
        gate = gate_a * (gate_b * self.grep_a - 1.0) + 2.0
        # Upstream's q * scaling / 32, max subtraction and * 32 cancel out: this is softmax(q.k / sqrt(d) + bias).
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=gate * position_bias)
        return self.out_proj(x.transpose(1, 2).reshape(b, n, d))


class BeatsLayer(nn.Module):
    """Post-norm block; with deep norm the residual is scaled by (2 * layers) ** 0.25."""

    def __init__(self, config: BeatsConfig, relative_bias: nn.Embedding) -> None:
        super().__init__()
        d = config.encoder_embed_dim
        self.self_attn = BeatsAttention(d, config.encoder_attention_heads, relative_bias)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, config.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_embed_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.alpha = (2 * config.encoder_layers) ** 0.25 if config.deep_norm else 1.0

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor) -> torch.Tensor:
        x = self.self_attn_layer_norm(x * self.alpha + self.self_attn(x, position_bias))
        return self.final_layer_norm(x * self.alpha + self.fc2(F.gelu(self.fc1(x))))


class BeatsEncoder(nn.Module):
    def __init__(self, config: BeatsConfig) -> None:
        super().__init__()
        d = config.encoder_embed_dim
        self.config = config
        self.pos_conv = nn.Sequential(PositionalConv(d, config.conv_pos, config.conv_pos_groups))
        relative_bias = nn.Embedding(config.num_buckets, config.encoder_attention_heads)
        self.layers = nn.ModuleList(BeatsLayer(config, relative_bias) for _ in range(config.encoder_layers))
        self.layer_norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        x = self.layer_norm(x)
        c = self.config
        buckets = relative_position_buckets(x.shape[1], c.num_buckets, c.max_distance).to(x.device)
        position_bias = self.layers[0].self_attn.relative_attention_bias(buckets).permute(2, 0, 1).to(x.dtype)
        for layer in self.layers:
            x = layer(x, position_bias)
        return x


class BeatsNetwork(nn.Module):
    """Normalised fbank [B, frames, 128] -> logits [B, classes] (the mean of per-patch logits, as upstream)."""

    def __init__(self, config: BeatsConfig) -> None:
        super().__init__()
        self.config = config
        p = config.input_patch_size
        self.patch_embedding = nn.Conv2d(1, config.embed_dim, kernel_size=p, stride=p, bias=config.conv_bias)
        self.layer_norm = nn.LayerNorm(config.embed_dim)
        self.post_extract_proj = (
            nn.Linear(config.embed_dim, config.encoder_embed_dim)
            if config.embed_dim != config.encoder_embed_dim
            else None
        )
        self.encoder = BeatsEncoder(config)
        self.predictor = nn.Linear(config.encoder_embed_dim, config.predictor_class)

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        # Under one patch of frames (0.175 s) upstream fails; we zero-pad the normalised fbank to one patch.
        fbank = F.pad(fbank, (0, 0, 0, max(0, self.config.input_patch_size - fbank.shape[1])))
        x = self.patch_embedding(fbank.unsqueeze(1))  # [B, C, time patches, freq patches]
        x = self.layer_norm(x.flatten(2).transpose(1, 2))  # time-major tokens, as upstream's reshape
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        return self.predictor(self.encoder(x)).mean(dim=1)


class BeatsTagger(nn.Module):
    """Waves [B, T] at 16 kHz -> AudioSet logits [B, 527]; upstream returns their sigmoid."""

    def __init__(self, config: BeatsConfig) -> None:
        super().__init__()
        self.frontend = KaldiFbank(BEATS_FBANK)
        self.network = BeatsNetwork(config)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return self.network(self.frontend(waves))


def read_beats_checkpoint(path: str | os.PathLike) -> tuple[dict | None, dict[str, torch.Tensor]]:
    """(cfg or None, state_dict) from an upstream `{'cfg', 'model'}` file or a bare state_dict; weights_only."""
    obj = load_checkpoint_object(path)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        cfg = obj.get("cfg")
        return (cfg if isinstance(cfg, dict) else None), obj["model"]
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return None, obj
    raise WeightsError(f"{path}: expected BEATs's {{'cfg': ..., 'model': ...}} or a state_dict")


def load_beats_weights(network: BeatsNetwork, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Strict load; the per-layer copies of the shared relative-bias table must all be equal."""
    shared = [k for k in state_dict if k.endswith("self_attn.relative_attention_bias.weight")]
    if shared and any(not torch.equal(state_dict[k], state_dict[shared[0]]) for k in shared[1:]):
        raise WeightsError(f"{source}: the layers' relative_attention_bias tables differ; BEATs shares one table")
    load_strict(network, state_dict, source, "the BEATs model")


# Upstream publishes OneDrive share links (README table), which are pages, not files: no URL can be fetched
# automatically and no sha256 can be verified here, so these sources name the file to pass with --checkpoint.
_RELEASES = {
    "iter3_plus_as2m_cpt1": "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt1.pt",
    "iter3_plus_as2m_cpt2": "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt",
    "iter3_cpt1": "BEATs_iter3_finetuned_on_AS2M_cpt1.pt",
    "iter3_cpt2": "BEATs_iter3_finetuned_on_AS2M_cpt2.pt",
}
RELEASE_PAGE = "https://github.com/microsoft/unilm/tree/master/beats"


def beats_card(release: str, config: BeatsConfig) -> TeacherCard:
    """The card of `beats/<release>` with the architecture `config` (the checkpoint's cfg, else the default)."""
    return TeacherCard(
        name=f"beats/{release}",
        sample_rate=BEATS_FBANK.sample_rate,
        num_classes=config.predictor_class,
        label_space="audioset",
        frontend=KaldiFbank(BEATS_FBANK).settings(),
        weights=WeightSource(_RELEASES[release], url=None, sha256=None),
        description=f"BEATs {release} ({RELEASE_PAGE}); architecture {asdict(config)}",
    )


def build_beats(release: str, checkpoint: str | os.PathLike | None = None) -> TorchTeacher:
    """The BEATs teacher `release`; the architecture comes from the checkpoint's cfg (or the released default)."""
    path = resolve_weights(WeightSource(_RELEASES[release], url=None, sha256=None), checkpoint)
    cfg, state_dict = read_beats_checkpoint(path)
    config = BeatsConfig.from_checkpoint(cfg, str(path)) if cfg is not None else BeatsConfig()
    if config.predictor_class != 527:
        raise WeightsError(f"{path}: BEATs predicts {config.predictor_class} classes; an AudioSet teacher needs 527")
    tagger = BeatsTagger(config)
    load_beats_weights(tagger.network, state_dict, str(path))
    return TorchTeacher(beats_card(release, config), audioset_labels(), tagger, file_sha256(path))


def describe_beats(release: str) -> TeacherEntry:
    """The catalog entry of the released architecture (every AudioSet release uses the default BeatsConfig)."""
    return TeacherEntry(
        beats_card(release, BeatsConfig()),
        lambda: meta_parameter_count(BeatsNetwork, BeatsConfig()),
        weights_origin=f"manual: {RELEASE_PAGE}",
    )


for _release in _RELEASES:
    register_described(f"beats/{_release}", partial(build_beats, _release), partial(describe_beats, _release))
