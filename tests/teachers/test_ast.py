"""AST teachers: the front end against transformers' extractor, and strict loading of HF and original checkpoints.

The original checkpoint layout is built here by hand from upstream's names (YuanGongND/ast `src/models/ast_models.py`,
commit 6fc7f9d9e2084a4396b806c394f14a2ae304e64d, a timm 0.4.5 DeiT saved through nn.DataParallel), and a functional
re-implementation of upstream's forward checks that the converted model computes the same thing.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kd.core.errors import WeightsError
from kd.core.labels import audioset_labels
from kd.teachers import create_teacher
from kd.teachers.ast import AstFeatures, ast_fbank_config, ast_hf, load_original_ast

transformers = pytest.importorskip("transformers")

HEADS = 2
TINY_FRAMES = 128


def tiny_hf_model(
    num_labels: int = 7, hidden: int = 32, max_length: int = TINY_FRAMES, stride: int = 10
) -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.ASTConfig(
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        intermediate_size=2 * hidden,
        max_length=max_length,
        frequency_stride=stride,
        time_stride=stride,
        num_mel_bins=128,
        layer_norm_eps=1e-6,
        num_labels=num_labels,
    )
    model = transformers.ASTForAudioClassification(config).eval()
    with torch.no_grad():  # random LayerNorm affine and biases, so a swapped tensor cannot go unnoticed
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def original_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights under upstream AST's names, with DeiT's unused ImageNet heads as upstream saves them."""
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    emb, body = "audio_spectrogram_transformer.embeddings.", "audio_spectrogram_transformer."
    out = {
        "v.cls_token": sd[emb + "cls_token"],
        "v.dist_token": sd[emb + "distillation_token"],
        "v.pos_embed": sd[emb + "position_embeddings"],
        "v.head.weight": torch.randn(1000, model.config.hidden_size),
        "v.head.bias": torch.randn(1000),
        "v.head_dist.weight": torch.randn(1000, model.config.hidden_size),
        "v.head_dist.bias": torch.randn(1000),
    }
    for p in ("weight", "bias"):
        out[f"v.patch_embed.proj.{p}"] = sd[f"{emb}patch_embeddings.projection.{p}"]
        out[f"v.norm.{p}"] = sd[f"{body}layernorm.{p}"]
        out[f"mlp_head.0.{p}"] = sd[f"classifier.layernorm.{p}"]
        out[f"mlp_head.1.{p}"] = sd[f"classifier.dense.{p}"]
        for i in range(model.config.num_hidden_layers):
            layer = f"{body}layers.{i}."
            qkv = [sd[f"{layer}attention.{n}_proj.{p}"] for n in "qkv"]
            out[f"v.blocks.{i}.attn.qkv.{p}"] = torch.cat(qkv)
            out[f"v.blocks.{i}.attn.proj.{p}"] = sd[f"{layer}attention.o_proj.{p}"]
            out[f"v.blocks.{i}.norm1.{p}"] = sd[f"{layer}layernorm_before.{p}"]
            out[f"v.blocks.{i}.norm2.{p}"] = sd[f"{layer}layernorm_after.{p}"]
            out[f"v.blocks.{i}.mlp.fc1.{p}"] = sd[f"{layer}mlp.fc1.{p}"]
            out[f"v.blocks.{i}.mlp.fc2.{p}"] = sd[f"{layer}mlp.fc2.{p}"]
    return {f"module.{k}": v for k, v in out.items()}


def upstream_forward(sd: dict[str, torch.Tensor], fbank: torch.Tensor, heads: int) -> torch.Tensor:
    """Upstream `ASTModel.forward` (timm 0.4.5 blocks) written with functional ops on the original weights."""
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    x = F.conv2d(fbank.unsqueeze(1).transpose(2, 3), sd["v.patch_embed.proj.weight"], sd["v.patch_embed.proj.bias"], 10)
    x = x.flatten(2).transpose(1, 2)
    b, _, dim = x.shape
    x = torch.cat([sd["v.cls_token"].expand(b, -1, -1), sd["v.dist_token"].expand(b, -1, -1), x], 1) + sd["v.pos_embed"]
    i = 0
    while f"v.blocks.{i}.norm1.weight" in sd:
        p = f"v.blocks.{i}."
        h = F.layer_norm(x, (dim,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], 1e-6)
        q, k, v = (
            F.linear(h, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"])
            .reshape(b, -1, 3, heads, dim // heads)
            .permute(2, 0, 3, 1, 4)
        )
        attn = ((q @ k.transpose(-2, -1)) * (dim // heads) ** -0.5).softmax(-1)
        x = x + F.linear(
            (attn @ v).transpose(1, 2).reshape(b, -1, dim), sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"]
        )
        h = F.layer_norm(x, (dim,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], 1e-6)
        h = F.linear(
            F.gelu(F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])),
            sd[p + "mlp.fc2.weight"],
            sd[p + "mlp.fc2.bias"],
        )
        x = x + h
        i += 1
    x = F.layer_norm(x, (dim,), sd["v.norm.weight"], sd["v.norm.bias"], 1e-6)
    x = (x[:, 0] + x[:, 1]) / 2
    x = F.layer_norm(x, (dim,), sd["mlp_head.0.weight"], sd["mlp_head.0.bias"], 1e-5)
    return F.linear(x, sd["mlp_head.1.weight"], sd["mlp_head.1.bias"])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path, Path]:
    model = tiny_hf_model()
    root = tmp_path_factory.mktemp("ast")
    model.save_pretrained(root / "hf")
    torch.save(original_state_dict(model), root / "original.pth")
    return model, root / "hf", root / "original.pth"


def waves(batch: int = 2, samples: int = 16000) -> torch.Tensor:
    return torch.randn(batch, samples, generator=torch.Generator().manual_seed(1)) * 0.1


def test_features_equal_transformers_extractor_on_real_clips(shared_data: Path) -> None:
    from kd.core.audio import load_audio

    extractor = transformers.ASTFeatureExtractor()
    ours = AstFeatures(ast_fbank_config(), max_length=1024)
    with (shared_data / "clips.csv").open(newline="", encoding="utf-8") as f:
        paths = [row["path"] for row in csv.DictReader(f)]
    # Short and long clips, padding and cutting, wav / ogg / mp3 decoders.
    chosen = [p for p in paths if p.endswith((".ogg", ".mp3"))] + [p for p in paths if "us8k_100032" in p][:1]
    chosen += [p for p in paths if "scaper_car-horn-1" in p or "esc50_1-" in p]
    assert len(chosen) >= 4
    for path in chosen:
        wave = load_audio(shared_data / path, sample_rate=16000)
        expected = extractor(wave.numpy(), sampling_rate=16000, return_tensors="pt").input_values
        got = ours(wave[None])
        assert got.shape == expected.shape == (1, 1024, 128)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)  # measured: identical


def test_features_pad_short_input_with_normalised_zero() -> None:
    feats = AstFeatures(ast_fbank_config(), max_length=20)(torch.randn(3, 100))
    assert feats.shape == (3, 20, 128)
    torch.testing.assert_close(feats, torch.full_like(feats, (0 + 4.2677393) / (4.5689974 * 2)))


def test_hf_directory_and_original_pth_give_the_same_logits(tiny) -> None:
    model, hf_dir, pth = tiny
    from_hf = ast_hf(checkpoint=hf_dir)
    from_pth = ast_hf(checkpoint=pth, num_attention_heads=HEADS)
    x = waves()
    expected = model(input_values=from_hf.module.features(x)).logits
    torch.testing.assert_close(from_hf.logits(x), expected)
    # The .pth head LayerNorm uses upstream's eps 1e-5 where the HF config says 1e-6: a ~1e-6 difference.
    torch.testing.assert_close(from_pth.logits(x), from_hf.logits(x), atol=1e-4, rtol=0)
    assert from_hf.card.num_classes == 7 and from_hf.card.frontend["max_length"] == TINY_FRAMES
    assert from_hf.labels.names == tuple(model.config.id2label[i] for i in range(7))
    assert len(from_hf.checkpoint_sha256) == 64 and from_hf.checkpoint_sha256 != from_pth.checkpoint_sha256


def test_original_pth_matches_upstream_forward(tiny) -> None:
    _, _, pth = tiny
    teacher = ast_hf(checkpoint=pth, num_attention_heads=HEADS)
    x = waves()
    fbank = teacher.module.features(x)
    expected = upstream_forward(torch.load(pth, weights_only=True), fbank, HEADS)
    torch.testing.assert_close(teacher.logits(x), expected, atol=1e-5, rtol=1e-5)


def test_config_is_read_from_original_shapes(tiny) -> None:
    _, _, pth = tiny
    config = load_original_ast(pth, num_attention_heads=HEADS, max_length=TINY_FRAMES).config
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (32, 2, 64)
    assert config.max_length == TINY_FRAMES and config.num_labels == 7
    # 12 time patches cover 126 frames; the 2 more the model was built with are never seen by a patch.
    assert load_original_ast(pth, num_attention_heads=HEADS).config.max_length == 126
    with pytest.raises(WeightsError, match="time patches"):
        load_original_ast(pth, num_attention_heads=HEADS, max_length=256)


@pytest.mark.parametrize("damage", ["drop", "extra", "shape"])
def test_original_pth_loads_strictly(tiny, tmp_path: Path, damage: str) -> None:
    _, _, pth = tiny
    sd = torch.load(pth, weights_only=True)
    if damage == "drop":
        del sd["module.v.blocks.1.mlp.fc2.bias"]
    elif damage == "extra":
        sd["module.v.blocks.0.attn.relative_bias"] = torch.zeros(3)
    else:
        sd["module.v.blocks.1.mlp.fc2.weight"] = torch.zeros(32, 65)
    torch.save(sd, tmp_path / "damaged.pth")
    with pytest.raises(WeightsError):
        ast_hf(checkpoint=tmp_path / "damaged.pth", num_attention_heads=HEADS)


def test_hf_directory_loads_strictly(tiny, tmp_path: Path) -> None:
    model, _, _ = tiny
    bigger = tiny_hf_model(num_labels=9)
    bigger.save_pretrained(tmp_path)
    # Weights of a 7-class model under a 9-class config: refused, never silently re-initialised.
    model.save_pretrained(tmp_path / "seven")
    (tmp_path / "seven" / "config.json").write_text((tmp_path / "config.json").read_text())
    with pytest.raises(WeightsError):
        ast_hf(checkpoint=tmp_path / "seven")
    # A tensor missing from the weights file: refused, never randomly initialised.
    from safetensors.torch import load_file, save_file

    weights = load_file(tmp_path / "model.safetensors")
    del weights["classifier.layernorm.bias"]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(WeightsError, match="missing_keys"):
        ast_hf(checkpoint=tmp_path)


def test_audioset_teacher_uses_audioset_labels(tmp_path: Path) -> None:
    # The named teacher builds AudioSet's 1024-frame input; the checkpoint's 101 time patches must agree.
    torch.save(original_state_dict(tiny_hf_model(num_labels=527, hidden=64, max_length=1024)), tmp_path / "tiny527.pth")
    teacher = create_teacher("ast/audioset-10-10-0.4593", checkpoint=tmp_path / "tiny527.pth")
    assert teacher.labels == audioset_labels() and teacher.card.sample_rate == 16000
    assert teacher.card.frontend["max_length"] == 1024
    assert teacher.logits(waves(1, 4000)).shape == (1, 527)
    torch.save(original_state_dict(tiny_hf_model(num_labels=5, hidden=64, max_length=1024)), tmp_path / "tiny5.pth")
    with pytest.raises(WeightsError, match="527"):
        create_teacher("ast/audioset-10-10-0.4593", checkpoint=tmp_path / "tiny5.pth")


def test_every_audioset_ast_is_registered_with_its_strides(tmp_path: Path) -> None:
    from kd.teachers import teacher_names
    from kd.teachers.ast import AUDIOSET_ASTS

    assert {spec.name for spec in AUDIOSET_ASTS} <= set(teacher_names())
    torch.save(original_state_dict(tiny_hf_model(527, hidden=64, max_length=1024, stride=16)), tmp_path / "s16.pth")
    teacher = create_teacher("ast/audioset-16-16-0.4422", checkpoint=tmp_path / "s16.pth")
    assert teacher.module.network.config.time_stride == 16
    assert teacher.logits(waves(1, 8000)).shape == (1, 527)
    # A 16x16 checkpoint is not a 10x10 one: its 7 x 63 patches don't tile 12 frequency rows.
    with pytest.raises(WeightsError):
        create_teacher("ast/audioset-10-10-0.4593", checkpoint=tmp_path / "s16.pth")
