"""DASS students: a VMamba (VSSM) backbone with 2-D selective scan over log-mel patches, written for kd.

Architecture as read from upstream, written anew here:
- DASS (github.com/Saurabhbhati/DASS @ 246c9f419caed161243d97da933dcbf90159b93c): `src/models/ast_models.py`
  (class DASS: spectrogram [B, T, F] -> image [B, 1, F, T]; small = depths 2-2-8-2, medium = 2-2-20-2; dims 96..768;
  ssm_d_state 1, ssm_ratio 1.0, no conv bias, forward_type v05_noz, downsample v3, patch embed v2, LN2D; first conv
  1 -> 48 channels) and `src/models/vmamba.py` (VSSM, VSSBlock, SS2D `forward_corev2`, cross scan / merge).
- VMamba (github.com/MzeroMiko/VMamba), the origin of that `vmamba.py`.
- The Hugging Face port (github.com/Saurabhbhati/transformers-DASS @ 026609335df78498406a154f947c30e5b1b06fa6,
  `src/transformers/models/dass/`): same network, its feature extractor fixes the front end (16 kHz kaldi fbank,
  128 bins, 10 ms shift, hanning, htk_compat, DC removed, (x + 4.2677393) / (2 * 4.5689974)).

Differences from upstream, none of which changes the function: activations are channels-last [B, H, W, C] (upstream
LN2D runs channels-first; a LayerNorm over C is the same either way), the selective scan is `kd.students.scan`
(pure PyTorch off CUDA), and without autograd long inputs are processed in bounded pieces (scan segments, MLP rows,
one scan direction at a time). No positional embedding, no crop: any input length works.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kd.core.errors import ConfigError
from kd.core.frontends import KaldiFbank, KaldiFbankConfig
from kd.students import register_student
from kd.students.readout import Readout
from kd.students.scan import selective_scan

# AudioSet statistics of the DASS/AST fbank, as in upstream's make_features and the HF feature extractor.
DASS_FBANK = KaldiFbankConfig(
    sample_rate=16000, num_mel_bins=128, frame_shift_ms=10.0, mean=-4.2677393, std=4.5689974 * 2
)

_ROWS_PER_PIECE = 1 << 13
"""Without autograd, position-wise parts (MLP) run on at most this many positions at a time to bound memory."""

_DIRECTION_SPLIT_ELEMENTS = 1 << 22
"""On CUDA without autograd, SS2D scans its four routes one at a time once batch * positions * channels exceeds this."""


@dataclass(frozen=True)
class DassConfig:
    """Everything that defines a DASS network; recorded in checkpoints, `build_dass` rebuilds the model from it.

    Attributes:
        depths: VSS blocks per stage.
        dims: channels per stage.
        d_state: state size N of the selective scan.
        ssm_ratio: SS2D inner channels / block channels.
        dt_rank: rank of the delta projection; None means ceil(dim / 16) as upstream's "auto".
        d_conv: depthwise convolution kernel in SS2D.
        conv_bias: whether that convolution has a bias.
        mlp_ratio: MLP hidden channels / block channels.
        patch_size: total stride of the two-convolution patch embedding (a power of two >= 4).
        drop_path_rate: stochastic depth at the last block (linear from 0).
        frontend: the log-mel front end.
        scan_backend: `kd.students.scan.selective_scan` backend ('auto' picks mamba_ssm on CUDA when present).
    """

    depths: tuple[int, ...] = (2, 2, 8, 2)
    dims: tuple[int, ...] = (96, 192, 384, 768)
    d_state: int = 1
    ssm_ratio: float = 1.0
    dt_rank: int | None = None
    d_conv: int = 3
    conv_bias: bool = False
    mlp_ratio: float = 4.0
    patch_size: int = 4
    drop_path_rate: float = 0.2
    frontend: KaldiFbankConfig = DASS_FBANK
    scan_backend: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", tuple(self.depths))
        object.__setattr__(self, "dims", tuple(self.dims))
        if isinstance(self.frontend, dict):
            object.__setattr__(self, "frontend", KaldiFbankConfig(**self.frontend))
        if not self.depths or len(self.depths) != len(self.dims):
            raise ConfigError(f"DASS: depths {self.depths} and dims {self.dims} must be non-empty and of equal length")
        if min(self.depths) < 1 or min(self.dims) < 2 or self.d_state < 1:
            raise ConfigError(f"DASS: depths, dims and d_state must be positive (got {self})")
        if self.patch_size < 4 or self.patch_size & (self.patch_size - 1):
            raise ConfigError(f"DASS: patch_size must be a power of two >= 4, got {self.patch_size}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ConfigError(f"DASS: drop_path_rate must be in [0, 1), got {self.drop_path_rate}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> DassConfig:
        return cls(**values)


class DropPath(nn.Module):
    """Stochastic depth: in training, drops the whole residual branch of a sample with probability `rate`."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - self.rate)
        return x * keep / (1.0 - self.rate)


class PatchEmbed(nn.Module):
    """Upstream `patchembed_version="v2"`: two strided 3x3 convolutions (kernel stride + 1) with LayerNorm and GELU
    between. Upstream strides both by patch / 2, which is a total stride of `patch` only for 4; here the strides
    split `patch` as evenly as powers of two allow (4: 2 x 2 as upstream, 8: 2 x 4, 16: 4 x 4)."""

    def __init__(self, dim: int, patch_size: int) -> None:
        super().__init__()
        first = 1 << (patch_size.bit_length() - 1) // 2
        self.strides = (first, patch_size // first)
        self.conv1 = nn.Conv2d(1, dim // 2, kernel_size=first + 1, stride=first, padding=1)
        self.norm1 = nn.LayerNorm(dim // 2)
        self.conv2 = nn.Conv2d(dim // 2, dim, kernel_size=self.strides[1] + 1, stride=self.strides[1], padding=1)
        self.norm2 = nn.LayerNorm(dim)

    def min_frames(self) -> int:
        """The fewest input frames that leave one position (a kernel s + 1, stride s, padding 1 convolution turns
        L >= m * s - 1 frames into m)."""
        needed = 1
        for stride in reversed(self.strides):
            needed = max(1, needed * stride - 1)
        return needed

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 1, freq, time] -> [B, H, W, C]."""
        x = self.norm1(self.conv1(image).permute(0, 2, 3, 1))
        x = F.gelu(x).permute(0, 3, 1, 2)
        return self.norm2(self.conv2(x).permute(0, 2, 3, 1))


class Downsample(nn.Module):
    """Upstream `downsample_version="v3"`: a stride-2 3x3 convolution, then LayerNorm."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, out_dim, kernel_size=3, stride=2, padding=1)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SS2D(nn.Module):
    """2-D selective scan in upstream's `v05_noz` form: in_proj (no z gate), depthwise conv, SiLU, a selective scan
    along four routes over the H x W grid (row-major, column-major, and both reversed), merge by sum, LayerNorm,
    out_proj. Each route k has its own x/dt projections, A, D and delta bias, shaped as upstream's parameters."""

    directions = 4
    split_routes: bool | None = None
    """Scan the four routes one at a time (True), all at once (False), or choose by device and size (None)."""

    def __init__(self, dim: int, config: DassConfig) -> None:
        super().__init__()
        inner = int(config.ssm_ratio * dim)
        rank = config.dt_rank or math.ceil(dim / 16)
        k, n = self.directions, config.d_state
        self.inner, self.rank, self.d_state, self.scan_backend = inner, rank, n, config.scan_backend
        self.in_proj = nn.Linear(dim, inner, bias=False)
        self.conv2d = nn.Conv2d(
            inner, inner, config.d_conv, padding=(config.d_conv - 1) // 2, groups=inner, bias=config.conv_bias
        )
        self.x_proj_weight = nn.Parameter(torch.empty(k, rank + 2 * n, inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(k, inner, rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(k, inner))
        self.A_logs = nn.Parameter(torch.empty(k * inner, n))
        self.Ds = nn.Parameter(torch.empty(k * inner))
        self.out_norm = nn.LayerNorm(inner)
        self.out_proj = nn.Linear(inner, dim, bias=False)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self, dt_min: float = 1e-3, dt_max: float = 0.1, dt_floor: float = 1e-4) -> None:
        """Mamba's initialisation (upstream `mamba_init`): S4D-real A, D = 1, dt spread log-uniformly."""
        k, inner, rank = self.dt_projs_weight.shape
        bound = 1.0 / math.sqrt(self.x_proj_weight.shape[-1])
        self.x_proj_weight.uniform_(-bound, bound)
        self.dt_projs_weight.uniform_(-(rank**-0.5), rank**-0.5)
        dt = torch.exp(torch.rand(k, inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus
        self.A_logs.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).expand_as(self.A_logs))
        self.Ds.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, H, W, C] -> [B, H, W, C]."""
        batch, height, width, _ = x.shape
        x = self.in_proj(x).permute(0, 3, 1, 2)
        u = F.silu(self.conv2d(x)).permute(0, 2, 3, 1).contiguous()  # [B, H, W, inner]
        del x
        # One route at a time is faster for the pure-PyTorch scan (time-major inputs, no route concatenation) and
        # bounds memory; on CUDA one grouped scan over all four routes is one kernel launch, as upstream does.
        split = self.split_routes
        if split is None:
            split = not u.is_cuda or (not torch.is_grad_enabled() and u.numel() > _DIRECTION_SPLIT_ELEMENTS)
        groups = [[k] for k in range(self.directions)] if split else [list(range(self.directions))]
        y = None
        for routes in groups:
            part = self._scan_routes(u, routes)
            y = part if y is None else y.add_(part)
            del part
        del u
        return self.out_proj(self.out_norm(y))

    def _scan_routes(self, u: torch.Tensor, routes: list[int]) -> torch.Tensor:
        """Scans u [B, H, W, inner] along the given routes in one selective scan; returns their merged sum."""
        batch, height, width, inner = u.shape
        length, k, n = height * width, len(routes), self.d_state
        xs = torch.cat([_route(u, r) for r in routes], dim=-1) if k > 1 else _route(u, routes[0])  # [B, L, k*inner]
        index = torch.tensor(routes, device=u.device) if k < self.directions else None
        pick = (lambda p: p) if index is None else (lambda p: p.index_select(0, index))
        x_dbl = torch.einsum("blkd,kcd->blkc", xs.view(batch, length, k, inner), pick(self.x_proj_weight))
        dts, Bs, Cs = torch.split(x_dbl, [self.rank, n, n], dim=-1)
        dts = torch.einsum("blkr,kdr->blkd", dts, pick(self.dt_projs_weight)).reshape(batch, length, k * inner)
        A = -torch.exp(pick(self.A_logs.view(self.directions, inner, n)).reshape(k * inner, n))
        ys = selective_scan(
            xs.transpose(1, 2),
            dts.transpose(1, 2),
            A,
            Bs.permute(0, 2, 3, 1),
            Cs.permute(0, 2, 3, 1),
            D=pick(self.Ds.view(self.directions, inner)).reshape(-1),
            delta_bias=pick(self.dt_projs_bias).reshape(-1),
            delta_softplus=True,
            backend=self.scan_backend,
        )
        del xs, dts, x_dbl
        ys = ys.transpose(1, 2).reshape(batch, length, k, inner)
        merged = None
        for i, r in enumerate(routes):
            part = _unroute(ys[:, :, i], r, height, width)
            merged = part.contiguous() if merged is None else merged.add_(part)
        return merged.to(u.dtype)


def _route(u: torch.Tensor, route: int) -> torch.Tensor:
    """[B, H, W, C] -> [B, H*W, C] in scan order: 0 row-major, 1 column-major, 2 and 3 the same reversed."""
    batch, height, width, channels = u.shape
    seq = (
        u.reshape(batch, height * width, channels) if route % 2 == 0 else u.transpose(1, 2).reshape(batch, -1, channels)
    )
    return seq.flip(1) if route >= 2 else seq


def _unroute(seq: torch.Tensor, route: int, height: int, width: int) -> torch.Tensor:
    """Inverse of `_route`: [B, H*W, C] in scan order -> [B, H, W, C] (possibly a strided view)."""
    batch, _, channels = seq.shape
    if route >= 2:
        seq = seq.flip(1)
    if route % 2 == 0:
        return seq.reshape(batch, height, width, channels)
    return seq.reshape(batch, width, height, channels).transpose(1, 2)


class VSSBlock(nn.Module):
    """x + drop_path(SS2D(LN(x))), then x + drop_path(MLP(LN(x)))."""

    def __init__(self, dim: int, drop_path: float, config: DassConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.op = SS2D(dim, config)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.op(self.norm(x)))
        if torch.is_grad_enabled():
            return x + self.drop_path(self.mlp(self.norm2(x)))
        # Without autograd, the position-wise MLP (4x wider than x) runs on bounded pieces of positions, in place.
        flat = x.view(-1, x.shape[-1])
        for start in range(0, flat.shape[0], _ROWS_PER_PIECE):
            rows = flat[start : start + _ROWS_PER_PIECE]
            rows.add_(self.mlp(self.norm2(rows)))
        return x


class Stage(nn.Module):
    def __init__(self, dim: int, out_dim: int | None, drop_paths: list[float], config: DassConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(VSSBlock(dim, rate, config) for rate in drop_paths)
        self.downsample = Downsample(dim, out_dim) if out_dim is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


class Dass(nn.Module):
    """A DASS student: waveforms [B, samples] at 16 kHz -> logits [B, num_classes], for any length.

    Attributes:
        sample_rate: the input sample rate.
        num_classes: output classes.
        config: the `DassConfig` it was built from.
        frontend: waveforms [B, samples] -> normalised fbank [B, frames, 128].
        readout: training logits -> inference logits (`kd.students.readout`); `forward` applies it,
            `forward_features` (what training optimises) does not.
    """

    def __init__(self, config: DassConfig, num_classes: int = 527) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"DASS: num_classes must be positive, got {num_classes}")
        self.config = config
        self.num_classes = num_classes
        self.sample_rate = config.frontend.sample_rate
        self.frontend = KaldiFbank(config.frontend)
        dims = config.dims
        rates = torch.linspace(0, config.drop_path_rate, sum(config.depths)).tolist()
        self.patch_embed = PatchEmbed(dims[0], config.patch_size)
        self.layers = nn.ModuleList()
        for i, depth in enumerate(config.depths):
            first = sum(config.depths[:i])
            out_dim = dims[i + 1] if i + 1 < len(dims) else None
            self.layers.append(Stage(dims[i], out_dim, rates[first : first + depth], config))
        self.norm = nn.LayerNorm(dims[-1])
        self.head = nn.Linear(dims[-1], num_classes)
        self.readout = Readout(num_classes)
        self.apply(_init_weights)
        # Shorter waveforms are padded with silence to the fewest samples that make one patch.
        fbank, frames = config.frontend, self.patch_embed.min_frames()
        self.min_samples = int(fbank.sample_rate * (fbank.frame_length_ms + (frames - 1) * fbank.frame_shift_ms) / 1000)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """Waveforms [B, samples] at `sample_rate` -> inference logits [B, num_classes] (after the readout)."""
        if waves.shape[-1] < self.min_samples:  # too short for one patch: pad with silence so that one exists
            waves = F.pad(waves, (0, self.min_samples - waves.shape[-1]))
        return self.readout(self.forward_features(self.frontend(waves)))

    def forward_features(self, feats: torch.Tensor) -> torch.Tensor:
        """Normalised fbank [B, frames, mel bins] -> training logits [B, num_classes] (before the readout)."""
        x = self.patch_embed(feats.transpose(1, 2).unsqueeze(1))  # upstream's image: [B, 1, freq, time]
        for stage in self.layers:
            x = stage(x)
        return self.head(self.norm(x).mean(dim=(1, 2)))


def _init_weights(module: nn.Module) -> None:
    # Upstream VSSM._init_weights: truncated-normal Linear weights, zero biases, unit LayerNorms.
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def build_dass(config: DassConfig, num_classes: int = 527) -> Dass:
    """Builds a randomly initialised DASS network from its config."""
    return Dass(config, num_classes)


DASS_SMALL = DassConfig(depths=(2, 2, 8, 2), drop_path_rate=0.2)
DASS_MEDIUM = DassConfig(depths=(2, 2, 20, 2), drop_path_rate=0.3)
DASS_TINY = DassConfig(depths=(1, 1), dims=(48, 96), drop_path_rate=0.0)
DASS_MINI = DassConfig(depths=(1, 1, 2, 1), dims=(32, 64, 128, 256), drop_path_rate=0.0)
DASS_MINI_P16 = DassConfig(depths=(1, 1, 2, 1), dims=(32, 64, 128, 256), patch_size=16, drop_path_rate=0.0)
DASS_MIDI_P16 = DassConfig(depths=(1, 1, 4, 2), dims=(32, 64, 192, 384), patch_size=16, drop_path_rate=0.0)


@register_student("dass-small")
def dass_small(num_classes: int = 527, drop_path_rate: float = 0.2) -> Dass:
    """DASS-small (upstream `model_size='small'`): about 29.9 M parameters with a 527-class head."""
    return build_dass(_with_drop_path(DASS_SMALL, drop_path_rate), num_classes)


@register_student("dass-medium")
def dass_medium(num_classes: int = 527, drop_path_rate: float = 0.3) -> Dass:
    """DASS-medium (upstream `model_size='medium'`): about 48.7 M parameters with a 527-class head."""
    return build_dass(_with_drop_path(DASS_MEDIUM, drop_path_rate), num_classes)


@register_student("dass-tiny")
def dass_tiny(num_classes: int = 527, drop_path_rate: float = 0.0) -> Dass:
    """A two-stage DASS of a few hundred thousand parameters, for tests."""
    return build_dass(_with_drop_path(DASS_TINY, drop_path_rate), num_classes)


@register_student("dass-mini")
def dass_mini(num_classes: int = 527, drop_path_rate: float = 0.0) -> Dass:
    """A four-stage DASS of about 1.3 M parameters: the hierarchy of dass-small at CPU cost close to dass-tiny's
    (its first stage, where most positions are, is narrower)."""
    return build_dass(_with_drop_path(DASS_MINI, drop_path_rate), num_classes)


@register_student("dass-mini-p16")
def dass_mini_p16(num_classes: int = 527, drop_path_rate: float = 0.0) -> Dass:
    """dass-mini on 16 x 16 patches (two stride-4 convolutions): a sixteenth of its positions per stage and about 3x
    its training samples/s on a CPU (benchmarks/student_step.py), for the same 1.6 M parameters. The student of the
    ESC-50 study (docs/experiments/distillation.md)."""
    return build_dass(_with_drop_path(DASS_MINI_P16, drop_path_rate), num_classes)


@register_student("dass-midi-p16")
def dass_midi_p16(num_classes: int = 527, drop_path_rate: float = 0.0) -> Dass:
    """dass-mini-p16 with its last two stages wider and deeper: 5.8 M parameters where a 16 x 16-patched clip has
    few positions, so at about half its training samples/s on a CPU (20 against 45 in the ESC-50 study, two runs
    side by side on 2 cores)."""
    return build_dass(_with_drop_path(DASS_MIDI_P16, drop_path_rate), num_classes)


def _with_drop_path(config: DassConfig, rate: float) -> DassConfig:
    return DassConfig(**{**config.to_dict(), "drop_path_rate": rate})
