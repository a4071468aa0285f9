"""EfficientAT MobileNetV3 teachers (`efficientat/mn04_as` ... `efficientat/mn40_as_ext`): AudioSet taggers at 32 kHz.

Our own implementation of the architecture of fschmid56/EfficientAT `models/mn/` (read at commit a425fdc, which is
also where the module names, and so the state_dict keys, come from): a MobileNetV3-Large whose channels are scaled by
`width_mult`, channel-wise squeeze-and-excitation, and an MLP head, fed by the `EfficientATMel` front end. Only the
released AudioSet configuration is built (channel SE with reduction 4, MLP head, strides 2-2-2-2), so the upstream
checkpoints load with `strict=True`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import cache, partial

import torch
from torch import nn

from kd.core.frontends import EfficientATMel, EfficientATMelConfig
from kd.core.labels import audioset_labels
from kd.core.weights import WeightSource, file_sha256, load_state_dict, load_strict, resolve_weights
from kd.teachers.base import Teacher, TeacherCard, TorchTeacher
from kd.teachers.catalog import TeacherEntry, meta_parameter_count, register_described

RELEASE_URL = "https://github.com/fschmid56/EfficientAT/releases/download/v0.0.1/"
NUM_CLASSES = 527


def make_divisible(value: float, divisor: int = 8) -> int:
    """Rounds a scaled channel count to a multiple of `divisor`, never more than 10 % below `value` (as MobileNet)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual block of MobileNetV3-Large at width 1 (Table 1 of the MobileNetV3 paper)."""

    in_channels: int
    kernel: int
    expanded: int
    out_channels: int
    squeeze_excite: bool
    hardswish: bool
    stride: int


# The four stride-2 blocks (C1..C4) take their stride from `MobileNetConfig.strides`; stride 0 marks them here.
MOBILENET_V3_LARGE = (
    BlockSpec(16, 3, 16, 16, False, False, 1),
    BlockSpec(16, 3, 64, 24, False, False, 0),
    BlockSpec(24, 3, 72, 24, False, False, 1),
    BlockSpec(24, 5, 72, 40, True, False, 0),
    BlockSpec(40, 5, 120, 40, True, False, 1),
    BlockSpec(40, 5, 120, 40, True, False, 1),
    BlockSpec(40, 3, 240, 80, False, True, 0),
    BlockSpec(80, 3, 200, 80, False, True, 1),
    BlockSpec(80, 3, 184, 80, False, True, 1),
    BlockSpec(80, 3, 184, 80, False, True, 1),
    BlockSpec(80, 3, 480, 112, True, True, 1),
    BlockSpec(112, 3, 672, 112, True, True, 1),
    BlockSpec(112, 5, 672, 160, True, True, 0),
    BlockSpec(160, 5, 960, 160, True, True, 1),
    BlockSpec(160, 5, 960, 160, True, True, 1),
)


@dataclass(frozen=True)
class MobileNetConfig:
    """Size of an EfficientAT MobileNetV3: `width_mult` scales every channel count."""

    width_mult: float = 1.0
    num_classes: int = NUM_CLASSES
    strides: tuple[int, int, int, int] = (2, 2, 2, 2)
    se_reduction: int = 4
    head_width: int = 1280
    dropout: float = 0.2

    def channels(self, width1: int) -> int:
        return make_divisible(width1 * self.width_mult)


class ConvBNAct(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> optional activation, indexed 0, 1, 2 like torchvision's `ConvNormActivation`."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int = 1,
        stride: int = 1,
        groups: int = 1,
        activation: type[nn.Module] | None = None,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            # Upstream's BatchNorm settings; eps matters at inference, momentum only for fine-tuning.
            nn.BatchNorm2d(out_channels, eps=0.001, momentum=0.01),
        ]
        if activation is not None:
            layers.append(activation())
        super().__init__(*layers)


class ChannelSqueezeExcite(nn.Module):
    """Rescales each channel by a gate computed from its mean over frequency and time."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, squeeze)
        self.fc2 = nn.Linear(squeeze, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * gate[:, :, None, None]


class SqueezeExciteBlock(nn.Module):
    """Holds the SE layer under `conc_se_layers.0`, the key upstream uses.

    Upstream can run SE over channels, frequency and time concurrently and merge them with a max; the released
    AudioSet models use the channel one alone, where that max is the identity.
    """

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.conc_se_layers = nn.ModuleList([ChannelSqueezeExcite(channels, squeeze)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conc_se_layers[0](x)


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise (k x k) -> optional SE -> project (1x1), with a skip when shapes allow."""

    def __init__(self, spec: BlockSpec, config: MobileNetConfig, stride: int) -> None:
        super().__init__()
        in_ch, mid, out_ch = (config.channels(c) for c in (spec.in_channels, spec.expanded, spec.out_channels))
        activation = nn.Hardswish if spec.hardswish else nn.ReLU
        layers: list[nn.Module] = []
        if mid != in_ch:
            layers.append(ConvBNAct(in_ch, mid, activation=activation))
        layers.append(ConvBNAct(mid, mid, spec.kernel, stride, groups=mid, activation=activation))
        if spec.squeeze_excite:
            layers.append(SqueezeExciteBlock(mid, make_divisible(mid // config.se_reduction)))
        layers.append(ConvBNAct(mid, out_ch))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return y + x if self.residual else y


class MobileNetV3(nn.Module):
    """Log-mel [batch, 1, mel bins, frames] -> logits [batch, classes]; any number of frames."""

    def __init__(self, config: MobileNetConfig) -> None:
        super().__init__()
        self.config = config
        strides = iter(config.strides)
        layers: list[nn.Module] = [ConvBNAct(1, config.channels(16), 3, 2, activation=nn.Hardswish)]
        for spec in MOBILENET_V3_LARGE:
            layers.append(InvertedResidual(spec, config, spec.stride or next(strides)))
        last = config.channels(MOBILENET_V3_LARGE[-1].out_channels)
        layers.append(ConvBNAct(last, 6 * last, activation=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        hidden = config.channels(config.head_width)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
            nn.Linear(6 * last, hidden),
            nn.Hardswish(),
            nn.Dropout(config.dropout),
            nn.Linear(hidden, config.num_classes),
        )

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(spec))


class EfficientATTagger(nn.Module):
    """Waveforms [batch, samples] at 32 kHz -> logits [batch, classes]: front end then network."""

    def __init__(self, frontend: EfficientATMel, net: MobileNetV3) -> None:
        super().__init__()
        self.frontend = frontend
        self.net = net

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return self.net(self.frontend(waves)[:, None])


@dataclass(frozen=True)
class Variant:
    """One released checkpoint: its name, release file, width, reported AudioSet mAP, front end."""

    name: str
    release_file: str
    width_mult: float
    audioset_map: float
    sha256: str | None = None
    frontend: EfficientATMelConfig = field(default_factory=EfficientATMelConfig)
    note: str = ""

    @property
    def weights(self) -> WeightSource:
        return WeightSource(
            filename=f"efficientat_{self.name}.pt", url=RELEASE_URL + self.release_file, sha256=self.sha256
        )


def _hop_variant(ms: int, release_map: int) -> Variant:
    frontend = replace(EfficientATMelConfig(), hop_length=32 * ms)  # 32 samples per ms at 32 kHz
    name = f"mn10_as_hop_{ms}"
    return Variant(name, f"{name}_mAP_{release_map}.pt", 1.0, release_map / 1000, frontend=frontend, note=_INFERRED)


def _mels_variant(n_mels: int, release_map: int) -> Variant:
    frontend = replace(EfficientATMelConfig(), n_mels=n_mels)
    name = f"mn10_as_mels_{n_mels}"
    return Variant(name, f"{name}_mAP_{release_map}.pt", 1.0, release_map / 1000, frontend=frontend, note=_INFERRED)


# Release files from upstream `models/mn/model.py` `pretrained_models` (mAP is in each file name). Only mn04_as's
# sha256 is pinned, computed from a copy of its release file (the project's shared test weights); the others could not
# be fetched here (no network), so their downloads go unverified (sha256=None) until someone pins them.
# Upstream's "(2)"/"(3)" replicas are named "_2"/"_3" here.
# The hop/mels variants share mn10's network; their front-end settings follow from the names and upstream's README
# ("our default is 128 mel bands and a hop size of 10 ms"; the MACs it lists scale accordingly) but were not checked
# against their checkpoints, which carry no front-end settings.
_INFERRED = "front end inferred from the variant name, not verified"
_NO_IM = "no ImageNet pre-training"
_EXT = "extended training, 300 epochs"
VARIANTS = (
    Variant("mn01_as", "mn01_as_mAP_298.pt", 0.1, 0.298),
    Variant("mn02_as", "mn02_as_mAP_378.pt", 0.2, 0.378),
    Variant(
        "mn04_as", "mn04_as_mAP_432.pt", 0.4, 0.432, "899a8c6217063f6941793102a2780b3dd788ab11fce468d9cf5f0577c453321c"
    ),
    Variant("mn05_as", "mn05_as_mAP_443.pt", 0.5, 0.443),
    Variant("mn10_as", "mn10_as_mAP_471.pt", 1.0, 0.471),
    Variant("mn20_as", "mn20_as_mAP_478.pt", 2.0, 0.478),
    Variant("mn30_as", "mn30_as_mAP_482.pt", 3.0, 0.482),
    Variant("mn40_as", "mn40_as_mAP_484.pt", 4.0, 0.484),
    Variant("mn40_as_2", "mn40_as_mAP_483.pt", 4.0, 0.483),
    Variant("mn40_as_3", "mn40_as_mAP_483(2).pt", 4.0, 0.483),
    Variant("mn40_as_no_im_pre", "mn40_as_no_im_pre_mAP_483.pt", 4.0, 0.483, note=_NO_IM),
    Variant("mn40_as_no_im_pre_2", "mn40_as_no_im_pre_mAP_483(2).pt", 4.0, 0.483, note=_NO_IM),
    Variant("mn40_as_no_im_pre_3", "mn40_as_no_im_pre_mAP_482.pt", 4.0, 0.482, note=_NO_IM),
    Variant("mn40_as_ext", "mn40_as_ext_mAP_487.pt", 4.0, 0.487, note=_EXT),
    Variant("mn40_as_ext_2", "mn40_as_ext_mAP_486.pt", 4.0, 0.486, note=_EXT),
    Variant("mn40_as_ext_3", "mn40_as_ext_mAP_485.pt", 4.0, 0.485, note=_EXT),
    _hop_variant(5, 475),
    _hop_variant(15, 463),
    _hop_variant(20, 456),
    _hop_variant(25, 447),
    _mels_variant(40, 453),
    _mels_variant(64, 461),
    _mels_variant(256, 474),
)


def build_network(variant: Variant) -> EfficientATTagger:
    """The front end and randomly initialised network of `variant` (weights are loaded by `build_efficientat`)."""
    return EfficientATTagger(
        EfficientATMel(variant.frontend), MobileNetV3(MobileNetConfig(width_mult=variant.width_mult))
    )


@cache
def _frontend_settings(config: EfficientATMelConfig) -> dict:
    return EfficientATMel(config).settings()  # building the mel bank costs ~60 ms; cards are built per variant


def efficientat_parameters(variant: Variant) -> int:
    return meta_parameter_count(MobileNetV3, MobileNetConfig(width_mult=variant.width_mult))


def efficientat_card(variant: Variant) -> TeacherCard:
    """The card of `efficientat/<variant>`; it depends on the variant alone, not on the weights."""
    extra = f", {variant.note}" if variant.note else ""
    return TeacherCard(
        name=f"efficientat/{variant.name}",
        sample_rate=variant.frontend.sample_rate,
        num_classes=NUM_CLASSES,
        label_space="audioset",
        frontend=dict(_frontend_settings(variant.frontend)),
        weights=variant.weights,
        description=(
            f"EfficientAT MobileNetV3 width_mult={variant.width_mult} ({efficientat_parameters(variant) / 1e6:.2f} M "
            f"params, AudioSet mAP {variant.audioset_map:.3f} reported upstream{extra})"
        ),
    )


def build_efficientat(variant: Variant, checkpoint: str | os.PathLike | None = None) -> Teacher:
    """Builds the teacher of `variant` with its released weights (from `checkpoint`, the cache or the release URL)."""
    path = resolve_weights(variant.weights, checkpoint)
    state = load_state_dict(path)
    module = build_network(variant)
    load_strict(module.net, state, path, f"the EfficientAT {variant.name} model")
    return TorchTeacher(efficientat_card(variant), audioset_labels(), module, checkpoint_sha256=file_sha256(path))


def describe_efficientat(variant: Variant) -> TeacherEntry:
    return TeacherEntry(efficientat_card(variant), partial(efficientat_parameters, variant))


for _variant in VARIANTS:
    register_described(
        f"efficientat/{_variant.name}", partial(build_efficientat, _variant), partial(describe_efficientat, _variant)
    )
