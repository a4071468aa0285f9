"""AST teachers (Audio Spectrogram Transformer, Gong et al. 2021) on transformers' `ASTForAudioClassification`.

Two weight formats load strictly into the same network:
- Hugging Face directories (config.json + weights), e.g. the hub's `MIT/ast-finetuned-audioset-10-10-0.4593`;
- the original `.pth` checkpoints of YuanGongND/ast (e.g. `audioset_10_10_0.4593.pth`), whose key names are those of
  upstream `src/models/ast_models.py` (commit 6fc7f9d9e2084a4396b806c394f14a2ae304e64d): a timm 0.4.5 DeiT under
  `module.v.` (the model was saved from `nn.DataParallel`) plus `module.mlp_head.{0,1}`; `convert_original_state_dict`
  renames them.

Front end (upstream `src/dataloader.py` and transformers' `ASTFeatureExtractor`): 16 kHz, kaldi fbank with 128 mel
bins, 25 ms Hanning windows every 10 ms, per-frame DC removal, no energy, no dither; zero-padded or cut to `max_length`
frames (1024 for the AudioSet models), then normalised as (x - (-4.2677393)) / (4.5689974 * 2). Upstream's dataloader
also subtracts the waveform's mean first; kaldi's per-frame DC removal already cancels any constant, so that step only
changes rounding (up to 3e-4 on the normalised features of the shared clips) and is skipped, as transformers does:
our features equal `ASTFeatureExtractor`'s exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from kd.core.download import sha256_of
from kd.core.errors import KdError, LabelError, WeightsError
from kd.core.frontends import KaldiFbank, KaldiFbankConfig
from kd.core.labels import LabelSpace, audioset_labels, load_label_names
from kd.core.weights import WeightSource, load_state_dict, weights_cache_dir
from kd.teachers.base import TeacherCard, TorchTeacher, register_teacher
from kd.teachers.catalog import ENTRIES, TeacherEntry, register_described

SAMPLE_RATE = 16000
AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974
# timm's ViT blocks use LayerNorm eps 1e-6; upstream AST's `mlp_head` LayerNorm keeps PyTorch's default 1e-5.
TIMM_LAYER_NORM_EPS = 1e-6
HEAD_LAYER_NORM_EPS = 1e-5
# DeiT's ImageNet classifier heads ride along in the original checkpoints; AST's forward never uses them.
UNUSED_ORIGINAL_KEYS = ("v.head.weight", "v.head.bias", "v.head_dist.weight", "v.head_dist.bias")

# Names of one transformer layer's tensors in transformers' `ASTForAudioClassification`, which were renamed in
# transformers 5 (`from_pretrained` renames old hub checkpoints itself; a raw state_dict must match the installed
# version). Keys: q, k, v (split from timm's fused qkv), o, fc1, fc2, ln1, ln2.
_HF_LAYER_NAMES = {
    "v5": (
        "audio_spectrogram_transformer.layers.{i}.",
        {
            "q": "attention.q_proj",
            "k": "attention.k_proj",
            "v": "attention.v_proj",
            "o": "attention.o_proj",
            "fc1": "mlp.fc1",
            "fc2": "mlp.fc2",
            "ln1": "layernorm_before",
            "ln2": "layernorm_after",
        },
    ),
    "v4": (
        "audio_spectrogram_transformer.encoder.layer.{i}.",
        {
            "q": "attention.attention.query",
            "k": "attention.attention.key",
            "v": "attention.attention.value",
            "o": "attention.output.dense",
            "fc1": "intermediate.dense",
            "fc2": "output.dense",
            "ln1": "layernorm_before",
            "ln2": "layernorm_after",
        },
    ),
}
_TIMM_LAYER_NAMES = {"o": "attn.proj", "fc1": "mlp.fc1", "fc2": "mlp.fc2", "ln1": "norm1", "ln2": "norm2"}


def ast_fbank_config(mean: float = AUDIOSET_MEAN, std: float = AUDIOSET_STD) -> KaldiFbankConfig:
    """AST's fbank settings; `std` is the dataset std, which AST doubles."""
    return KaldiFbankConfig(
        sample_rate=SAMPLE_RATE,
        num_mel_bins=128,
        frame_shift_ms=10.0,
        frame_length_ms=25.0,
        window_type="hanning",
        htk_compat=True,
        use_energy=False,
        remove_dc=False,  # kaldi's per-frame DC removal already cancels the waveform mean (see module docstring)
        mean=mean,
        std=std * 2,
    )


class AstFeatures(torch.nn.Module):
    """Waveforms [batch, samples] -> normalised fbank [batch, max_length, mel bins], padded or cut like upstream."""

    def __init__(self, config: KaldiFbankConfig, max_length: int) -> None:
        super().__init__()
        self.fbank = KaldiFbank(config)
        self.max_length = max_length
        # Upstream pads the raw fbank with zeros and normalises afterwards; KaldiFbank normalises first, so pad with
        # where zero lands after normalising.
        self.pad_value = (0.0 - config.mean) / config.std

    def settings(self) -> dict[str, Any]:
        return {**self.fbank.settings(), "max_length": self.max_length, "pad": "zeros before normalising, at the end"}

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        c = self.fbank.config
        min_samples = int(c.sample_rate * c.frame_length_ms / 1000)
        if waves.shape[-1] < min_samples:
            feats = waves.new_empty(waves.shape[0], 0, c.num_mel_bins)  # no complete frame: all padding
        else:
            feats = self.fbank(waves)[:, : self.max_length]
        missing = self.max_length - feats.shape[1]
        if missing > 0:
            feats = torch.nn.functional.pad(feats, (0, 0, 0, missing), value=self.pad_value)
        return feats


class AstWaveModel(torch.nn.Module):
    """Front end and `ASTForAudioClassification` as one module from waveforms to logits."""

    def __init__(self, features: AstFeatures, network: torch.nn.Module) -> None:
        super().__init__()
        self.features = features
        self.network = network

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return self.network(input_values=self.features(waves)).logits


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise KdError("AST teachers need transformers: pip install transformers") from None
    return transformers


def _hf_naming(model: torch.nn.Module, num_layers: int) -> tuple[str, dict[str, str]]:
    keys = set(model.state_dict())
    for prefix, names in _HF_LAYER_NAMES.values():
        if all(f"{prefix.format(i=i)}{names['q']}.weight" in keys for i in range(num_layers)):
            return prefix, names
    raise WeightsError(f"the installed transformers {_transformers().__version__} names AST's layers unrecognisably")


def _strip_data_parallel(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k.removeprefix("module."): v for k, v in state_dict.items()}
    return state_dict


def _num_original_layers(state_dict: dict[str, torch.Tensor]) -> int:
    indices = {int(k.split(".")[2]) for k in state_dict if k.startswith("v.blocks.")}
    if indices != set(range(len(indices))) or not indices:
        raise WeightsError(f"original AST checkpoint has transformer blocks {sorted(indices)}, expected 0..N-1")
    return len(indices)


def ast_config_from_original(
    state_dict: dict[str, torch.Tensor],
    num_attention_heads: int | None = None,
    frequency_stride: int = 10,
    time_stride: int = 10,
    num_mel_bins: int = 128,
    max_length: int | None = None,
    id2label: dict[int, str] | None = None,
) -> Any:
    """The `ASTConfig` an original checkpoint implies; heads are not in the weights (DeiT: one head per 64 dims).

    The positional embedding gives the number of time patches t, which `stride - 1` frame counts share (1016 to 1025
    for t = 101): frames past the last patch are never seen. `max_length` picks the count the model was trained with
    (upstream: 1024 for AudioSet); by default the smallest one, `(t - 1) * time_stride + patch`, which gives the same
    logits.
    """
    transformers = _transformers()
    sd = _strip_data_parallel(state_dict)
    for key in ("v.cls_token", "v.pos_embed", "v.blocks.0.mlp.fc1.weight", "mlp_head.1.weight"):
        if key not in sd:
            raise WeightsError(f"not an original AST checkpoint: key {key!r} missing (have e.g. {next(iter(sd))!r})")
    hidden = sd["v.cls_token"].shape[-1]
    patch = sd["v.patch_embed.proj.weight"].shape[-1]
    heads = num_attention_heads if num_attention_heads is not None else hidden // 64
    if heads <= 0 or hidden % heads:
        raise WeightsError(f"hidden size {hidden} does not split into {heads} heads; pass num_attention_heads")
    f_patches = (num_mel_bins - patch) // frequency_stride + 1
    num_patches = sd["v.pos_embed"].shape[1] - 2
    if num_patches % f_patches:
        raise WeightsError(
            f"{num_patches} positional embeddings do not tile {f_patches} frequency patches; check strides/mel bins"
        )
    t_patches = num_patches // f_patches
    if max_length is None:
        max_length = (t_patches - 1) * time_stride + patch
    elif (max_length - patch) // time_stride + 1 != t_patches:
        raise WeightsError(
            f"max_length {max_length} gives {(max_length - patch) // time_stride + 1} time patches, "
            f"the checkpoint has {t_patches}"
        )
    num_labels = sd["mlp_head.1.weight"].shape[0]
    labels = id2label or {i: f"LABEL_{i}" for i in range(num_labels)}
    return transformers.ASTConfig(
        hidden_size=hidden,
        num_hidden_layers=_num_original_layers(sd),
        num_attention_heads=heads,
        intermediate_size=sd["v.blocks.0.mlp.fc1.weight"].shape[0],
        patch_size=patch,
        frequency_stride=frequency_stride,
        time_stride=time_stride,
        max_length=max_length,
        num_mel_bins=num_mel_bins,
        layer_norm_eps=TIMM_LAYER_NORM_EPS,
        hidden_act="gelu",
        qkv_bias=True,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )


def convert_original_state_dict(
    state_dict: dict[str, torch.Tensor], model: torch.nn.Module, source: object = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Renames an original AST state_dict to `model`'s (an `ASTForAudioClassification`) key names.

    Strict: every original key is used or is one of DeiT's unused ImageNet heads, and every key of `model` is filled
    with a tensor of its shape.
    """
    sd = _strip_data_parallel(state_dict)
    num_layers = _num_original_layers(sd)
    prefix, names = _hf_naming(model, num_layers)
    emb = "audio_spectrogram_transformer.embeddings."
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set(k for k in UNUSED_ORIGINAL_KEYS if k in sd)

    def take(original: str, target: str) -> None:
        if original not in sd:
            raise WeightsError(f"{source}: original AST key {original!r} missing")
        used.add(original)
        out[target] = sd[original]

    take("v.cls_token", emb + "cls_token")
    take("v.dist_token", emb + "distillation_token")
    take("v.pos_embed", emb + "position_embeddings")
    for p in ("weight", "bias"):
        take(f"v.patch_embed.proj.{p}", f"{emb}patch_embeddings.projection.{p}")
        take(f"v.norm.{p}", f"audio_spectrogram_transformer.layernorm.{p}")
        take(f"mlp_head.0.{p}", f"classifier.layernorm.{p}")
        take(f"mlp_head.1.{p}", f"classifier.dense.{p}")
    for i in range(num_layers):
        src, dst = f"v.blocks.{i}.", prefix.format(i=i)
        for p in ("weight", "bias"):
            qkv_key = f"{src}attn.qkv.{p}"
            if qkv_key not in sd:
                raise WeightsError(f"{source}: original AST key {qkv_key!r} missing")
            used.add(qkv_key)
            # timm's fused projection stacks query, key and value along the output dimension, in that order.
            for role, part in zip(("q", "k", "v"), sd[qkv_key].chunk(3, dim=0), strict=True):
                out[f"{dst}{names[role]}.{p}"] = part.contiguous()
            for role, original in _TIMM_LAYER_NAMES.items():
                take(f"{src}{original}.{p}", f"{dst}{names[role]}.{p}")
    if leftover := sorted(set(sd) - used):
        raise WeightsError(f"{source}: {len(leftover)} original AST keys have no place in the model: {leftover[:5]}")
    expected = model.state_dict()
    if missing := sorted(set(expected) - set(out)):
        raise WeightsError(f"{source}: model keys not filled by the conversion: {missing[:5]}")
    for key, tensor in out.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise WeightsError(
                f"{source}: {key} has shape {tuple(tensor.shape)}, model expects {tuple(expected[key].shape)}"
            )
    return out


def load_original_ast(path: str | os.PathLike, **settings: Any) -> torch.nn.Module:
    """An `ASTForAudioClassification` with the weights of an original YuanGongND/ast `.pth`, loaded strictly.

    `settings` go to `ast_config_from_original` (heads, strides, mel bins, max_length).
    """
    transformers = _transformers()
    state_dict = load_state_dict(path)
    config = ast_config_from_original(state_dict, **settings)
    model = transformers.ASTForAudioClassification(config)
    model.load_state_dict(convert_original_state_dict(state_dict, model, source=path), strict=True)
    # transformers gives the head's LayerNorm the blocks' eps; upstream's `mlp_head` uses nn.LayerNorm's default.
    model.classifier.layernorm.eps = HEAD_LAYER_NORM_EPS
    return model.eval()


def load_hf_ast(directory: str | os.PathLike) -> torch.nn.Module:
    """An `ASTForAudioClassification` from a Hugging Face directory; refuses missing, unexpected or misshapen keys."""
    transformers = _transformers()
    try:
        model, info = transformers.ASTForAudioClassification.from_pretrained(
            str(directory), output_loading_info=True, local_files_only=True
        )
    except (OSError, ValueError, RuntimeError) as e:  # RuntimeError: transformers' refusal of mismatched shapes
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise WeightsError(f"{directory}: not a loadable Hugging Face AST directory ({reason})") from None
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if problems:
        raise WeightsError(f"{directory}: weights do not match the AST config: {problems}")
    return model.eval()


def hf_weights_sha256(directory: str | os.PathLike) -> str:
    """sha256 of the weights file of a Hugging Face directory (of 'name:sha256' lines when sharded)."""
    files = sorted(
        p for p in Path(directory).iterdir() if p.suffix in (".safetensors", ".bin") and not p.name.startswith(".")
    )
    if not files:
        raise WeightsError(f"{directory}: no .safetensors or .bin weights")
    if len(files) == 1:
        return sha256_of(files[0])
    import hashlib

    return hashlib.sha256("\n".join(f"{p.name}:{sha256_of(p)}" for p in files).encode()).hexdigest()


def hub_snapshot(repo_id: str) -> Path:
    """A local directory holding the hub repository `repo_id`: the Hugging Face cache, else a download."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise KdError("loading from the Hugging Face hub needs huggingface_hub: pip install huggingface_hub") from None
    patterns = ["config.json", "*.safetensors", "preprocessor_config.json"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached: fall through to a download
        pass
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as e:  # noqa: BLE001 - huggingface_hub raises many types for offline / unknown repos
        raise WeightsError(
            f"cannot get {repo_id} from the Hugging Face hub ({type(e).__name__}); pass checkpoint=DIR or .pth"
        ) from None


def load_ast(checkpoint: str | os.PathLike, **original_config: Any) -> tuple[torch.nn.Module, str]:
    """Loads an HF directory or an original `.pth`; returns the network and the sha256 of its weights.

    `original_config` (heads, strides, max_length: see `ast_config_from_original`) only applies to original `.pth`
    files; an HF directory's config states all of it.
    """
    path = Path(checkpoint)
    if path.is_dir():
        return load_hf_ast(path), hf_weights_sha256(path)
    if path.is_file():
        network = load_original_ast(path, **original_config)
        return network, sha256_of(path)
    raise WeightsError(f"{path}: checkpoint not found (expected a Hugging Face directory or an original AST .pth)")


def _labels_from_config(network: torch.nn.Module, labels_path: str | os.PathLike | None) -> LabelSpace:
    num_labels = network.config.num_labels
    if labels_path is not None:
        labels = load_label_names(labels_path, "ast")
    else:
        names = tuple(network.config.id2label[i] for i in range(num_labels))
        labels = LabelSpace(name="ast", mids=("",) * num_labels, names=names)
    if len(labels) != num_labels:
        raise LabelError(f"{labels_path}: {len(labels)} labels for a model with {num_labels} outputs")
    return labels


def ast_card(
    name: str,
    shape: tuple[int, int, int, int],
    max_length: int,
    num_classes: int,
    label_space: str,
    weights: WeightSource | None,
) -> TeacherCard:
    """An AST's card; `shape` is (layers, hidden size, frequency stride, time stride)."""
    layers, hidden, f_stride, t_stride = shape
    return TeacherCard(
        name=name,
        sample_rate=SAMPLE_RATE,
        num_classes=num_classes,
        label_space=label_space,
        frontend=AstFeatures(ast_fbank_config(), max_length=max_length).settings(),
        weights=weights,
        description=f"AST: {layers} layers, hidden {hidden}, strides {f_stride}x{t_stride}, {max_length} frames",
    )


def ast_parameter_count(
    stride: int,
    num_classes: int,
    layers: int = 12,
    hidden: int = 768,
    patch: int = 16,
    mels: int = 128,
    frames: int = 1024,
) -> int:
    """Parameters of a DeiT-style AST with square strides, from its config (transformers need not be imported)."""
    patches = ((mels - patch) // stride + 1) * ((frames - patch) // stride + 1)
    embeddings = 2 * hidden + (patches + 2) * hidden + patch * patch * hidden + hidden
    layer = 4 * (hidden * hidden + hidden) + 2 * (hidden * 4 * hidden) + 4 * hidden + hidden + 2 * 2 * hidden
    head = 2 * hidden + hidden * num_classes + num_classes
    return embeddings + layers * layer + 2 * hidden + head


def _teacher(
    name: str, network: torch.nn.Module, sha256: str, labels: LabelSpace, weights: WeightSource | None
) -> TorchTeacher:
    config = network.config
    features = AstFeatures(ast_fbank_config(), max_length=config.max_length)
    if config.num_mel_bins != features.fbank.config.num_mel_bins:
        raise WeightsError(f"{name}: model expects {config.num_mel_bins} mel bins, AST's front end gives 128")
    card = ast_card(
        name,
        (config.num_hidden_layers, config.hidden_size, config.frequency_stride, config.time_stride),
        config.max_length,
        config.num_labels,
        labels.name,
        weights,
    )
    return TorchTeacher(card, labels, AstWaveModel(features, network), sha256)


@dataclass(frozen=True)
class AudioSetAst:
    """One of upstream's full-AudioSet AST checkpoints: its `.pth` name, patch stride and Hugging Face hub id."""

    name: str
    filename: str
    stride: int
    hub_id: str


# Upstream README (YuanGongND/ast) lists the .pth files; the hub ids are those transformers' conversion script
# (`convert_audio_spectrogram_transformer_original_to_pytorch.py`) gives each of them.
AUDIOSET_ASTS = (
    AudioSetAst(
        "ast/audioset-10-10-0.4593", "audioset_10_10_0.4593.pth", 10, "MIT/ast-finetuned-audioset-10-10-0.4593"
    ),
    AudioSetAst("ast/audioset-10-10-0.4495", "audioset_10_10_0.4495.pth", 10, "MIT/ast-finetuned-audioset-10-10-0.450"),
    AudioSetAst("ast/audioset-10-10-0.4483", "audioset_10_10_0.4483.pth", 10, "MIT/ast-finetuned-audioset-10-10-0.448"),
    AudioSetAst(
        "ast/audioset-10-10-0.4475", "audioset_10_10_0.4475.pth", 10, "MIT/ast-finetuned-audioset-10-10-0.448-v2"
    ),
    AudioSetAst("ast/audioset-12-12-0.4467", "audioset_12_12_0.4467.pth", 12, "MIT/ast-finetuned-audioset-12-12-0.447"),
    AudioSetAst("ast/audioset-14-14-0.4431", "audioset_14_14_0.4431.pth", 14, "MIT/ast-finetuned-audioset-14-14-0.443"),
    AudioSetAst("ast/audioset-16-16-0.4422", "audioset_16_16_0.4422.pth", 16, "MIT/ast-finetuned-audioset-16-16-0.442"),
)


def build_audioset_ast(spec: AudioSetAst, checkpoint: str | os.PathLike | None = None) -> TorchTeacher:
    """An AudioSet AST (527 AudioSet classes, 1024 frames) from `checkpoint`, the kd cache, or the hub.

    Args:
        spec: which checkpoint.
        checkpoint: an HF directory or upstream's original `.pth`; default the kd cache (`weights/<pth name>` or
            `weights/<hub repository name>/`), else the hub repository through the Hugging Face cache. Upstream's
            Dropbox links publish no checksum, so kd does not download `.pth` files itself.
    """
    if checkpoint is None:
        checkpoint = _cached_audioset_ast(spec) or hub_snapshot(spec.hub_id)
    network, sha256 = load_ast(checkpoint, max_length=1024, frequency_stride=spec.stride, time_stride=spec.stride)
    if (network.config.frequency_stride, network.config.time_stride) != (spec.stride, spec.stride):
        raise WeightsError(f"{checkpoint}: strides are not {spec.stride}x{spec.stride}; is it {spec.name}?")
    labels = audioset_labels()
    if network.config.num_labels != len(labels):
        raise WeightsError(f"{checkpoint}: {network.config.num_labels} outputs, AudioSet has {len(labels)} classes")
    return _teacher(spec.name, network, sha256, labels, WeightSource(filename=spec.filename))


def describe_audioset_ast(spec: AudioSetAst) -> TeacherEntry:
    weights = WeightSource(filename=spec.filename)
    card = ast_card(spec.name, (12, 768, spec.stride, spec.stride), 1024, 527, "audioset", weights)
    return TeacherEntry(
        card,
        partial(ast_parameter_count, spec.stride, 527),
        weights_origin=f"hf:{spec.hub_id}",
        cached=partial(_cached_audioset_ast, spec),
    )


def _cached_audioset_ast(spec: AudioSetAst) -> Path | None:
    candidates = [weights_cache_dir() / spec.filename, weights_cache_dir() / spec.hub_id.split("/")[1]]
    return next((c for c in candidates if c.exists()), None)


for _spec in AUDIOSET_ASTS:
    register_described(_spec.name, partial(build_audioset_ast, _spec), partial(describe_audioset_ast, _spec))


@register_teacher("ast/hf")
def ast_hf(
    checkpoint: str | os.PathLike | None = None,
    labels_path: str | os.PathLike | None = None,
    num_attention_heads: int | None = None,
    max_length: int | None = None,
) -> TorchTeacher:
    """Any AST: an HF directory, a hub repository id, or an original `.pth` (`ast/hf:PATH_OR_REPO` in the registry).

    Args:
        checkpoint: a local HF directory or original `.pth`, else a hub repository id.
        labels_path: one class name per line; default the config's `id2label` (original `.pth`: 'LABEL_i').
        num_attention_heads: for original `.pth` files, whose weights don't say (default: hidden size / 64, DeiT's).
        max_length: frames per input for original `.pth` files (see `ast_config_from_original`).
    """
    if checkpoint is None:
        raise WeightsError(
            "ast/hf needs checkpoint=DIR, .pth or hub id (e.g. 'ast/hf:MIT/ast-finetuned-audioset-10-10-0.4593')"
        )
    source = Path(checkpoint) if Path(checkpoint).exists() else hub_snapshot(str(checkpoint))
    network, sha256 = load_ast(source, num_attention_heads=num_attention_heads, max_length=max_length)
    return _teacher(f"ast/hf:{checkpoint}", network, sha256, _labels_from_config(network, labels_path), None)


ENTRIES["ast/hf"] = lambda: TeacherEntry(
    None,
    weights_origin="checkpoint required (ast/hf:DIR, .pth or hub id)",
    description="any AST: a Hugging Face directory or hub id, or an original YuanGongND/ast .pth",
)
