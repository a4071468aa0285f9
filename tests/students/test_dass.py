"""DASS students: registry sizes, upstream checkpoint layouts, the SS2D function against upstream's form, any length."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kd.core.errors import ConfigError, WeightsError
from kd.students import create_student, dass, student_names
from kd.students.convert import convert_dass_state_dict, load_upstream_dass
from kd.students.dass import SS2D, DassConfig, PatchEmbed, build_dass
from kd.students.scan import selective_scan_reference

DATA = Path(__file__).parent / "data"


def _upstream(size: str) -> dict:
    # Key -> shape of released checkpoints, written from reading upstream's code (see the file's "source").
    return json.loads((DATA / f"dass_{size}_upstream_keys.json").read_text())


def _random_state(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(*shape, generator=g) for k, shape in shapes.items()}


def test_registry_names_and_interface() -> None:
    assert {"dass-tiny", "dass-small", "dass-medium"} <= set(student_names())
    model = create_student("dass-tiny", num_classes=10).eval()
    assert model.sample_rate == 16000 and model.num_classes == 10
    assert 100_000 < sum(p.numel() for p in model.parameters()) < 1_000_000
    waves = torch.randn(2, 16000)
    feats = model.frontend(waves)
    assert feats.shape == (2, 98, 128)
    with torch.no_grad():
        assert torch.equal(model(waves), model.forward_features(feats))


@pytest.mark.parametrize(
    ("name", "size", "expected"), [("dass-small", "small", 29.9e6), ("dass-medium", "medium", 48.7e6)]
)
def test_sizes_match_upstream(name: str, size: str, expected: float) -> None:
    model = create_student(name)
    count = sum(p.numel() for p in model.parameters())
    assert count == sum(math.prod(s) for s in _upstream(size)["original"].values())
    assert abs(count - expected) < 0.1e6


@pytest.mark.parametrize("layout", ["original", "hf"])
def test_upstream_checkpoints_load_strictly(layout: str) -> None:
    model = create_student("dass-small")
    state = _random_state(_upstream("small")[layout])
    assert load_upstream_dass(model, state) == layout
    ours = model.state_dict()
    prefix = "module.v." if layout == "original" else "dass."
    block = "layers.2.blocks.7.op."
    if layout == "original":
        assert torch.equal(ours[block + "x_proj_weight"], state[prefix + block + "x_proj_weight"])
        assert torch.equal(ours["patch_embed.conv2.weight"], state[prefix + "patch_embed.5.weight"])
        assert torch.equal(ours["layers.1.downsample.conv.weight"], state[prefix + "layers.1.downsample.1.weight"])
        assert torch.equal(ours["head.weight"], state["module.v.classifier.head.weight"])
    else:
        assert torch.equal(ours[block + "x_proj_weight"].flatten(0, 1), state[prefix + block + "x_proj.weight"])
        assert torch.equal(ours[block + "dt_projs_weight"].flatten(0, 1), state[prefix + block + "dt_projs.weight"])
        assert torch.equal(ours["patch_embed.norm2.weight"], state[prefix + "patch_embeddings.projection.4.weight"])
        assert torch.equal(ours["head.weight"], state["head.weight"])


def test_converted_original_and_hf_agree() -> None:
    original = _random_state(_upstream("small")["original"])
    # The HF conversion script's renaming applied to the same tensors (with its flattened grouped linears).
    names = dict(zip(_upstream("small")["original"], _upstream("small")["hf"], strict=True))
    hf = {names[k]: v.reshape(_upstream("small")["hf"][names[k]]) for k, v in original.items()}
    reference = create_student("dass-small").state_dict()
    a, b = convert_dass_state_dict(original, reference), convert_dass_state_dict(hf, reference)
    assert a.keys() == b.keys() == reference.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_wrong_size_is_refused() -> None:
    with pytest.raises(WeightsError, match="dass-small / dass-medium"):
        load_upstream_dass(create_student("dass-small"), _random_state(_upstream("medium")["original"]))
    with pytest.raises(WeightsError, match="not a DASS state_dict"):
        load_upstream_dass(create_student("dass-tiny"), {"encoder.weight": torch.zeros(1)})


def test_checkpoint_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "DASS_small.pth"
    torch.save(_random_state(_upstream("small")["original"]), path)
    model = create_student("dass-small")
    assert load_upstream_dass(model, path) == "original"


def _upstream_form_ss2d(op: SS2D, x: torch.Tensor) -> torch.Tensor:
    """SS2D as upstream's `forwardv2` + `forward_corev2` (v05_noz, channel-first) read, for one [B, C, H, W] input."""
    x = F.conv2d(x, op.in_proj.weight[:, :, None, None])
    x = F.silu(op.conv2d(x))
    b, d, h, w = x.shape
    k, length = 4, h * w
    xs = torch.stack([x.flatten(2), x.transpose(2, 3).flatten(2)], dim=1)
    xs = torch.cat([xs, xs.flip(-1)], dim=1)  # CrossScan: [b, 4, d, L]
    x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, op.x_proj_weight)
    dts, Bs, Cs = torch.split(x_dbl, [op.rank, op.d_state, op.d_state], dim=2)
    dts = torch.einsum("bkrl,kdr->bkdl", dts, op.dt_projs_weight)
    ys = selective_scan_reference(
        xs.reshape(b, -1, length), dts.reshape(b, -1, length), -torch.exp(op.A_logs), Bs, Cs, op.Ds,
        delta_bias=op.dt_projs_bias.reshape(-1), delta_softplus=True,
    ).view(b, k, d, length)  # fmt: skip
    ys = ys[:, 0:2] + ys[:, 2:4].flip(-1)  # CrossMerge
    y = ys[:, 0] + ys[:, 1].view(b, d, w, h).transpose(2, 3).reshape(b, d, length)
    y = F.layer_norm(y.transpose(1, 2), (d,), op.out_norm.weight, op.out_norm.bias).view(b, h, w, d)
    return F.linear(y, op.out_proj.weight)


def test_ss2d_matches_upstream_form() -> None:
    torch.manual_seed(0)
    op = SS2D(16, DassConfig(depths=(1,), dims=(16,), d_state=2)).double()
    with torch.no_grad():
        for p in op.parameters():
            p.add_(0.1 * torch.randn_like(p))
        x = torch.randn(2, 5, 7, 16, dtype=torch.float64)
        expected = _upstream_form_ss2d(op, x.permute(0, 3, 1, 2))
        assert torch.allclose(op(x), expected, rtol=1e-9, atol=1e-12)


def test_bounded_memory_paths_equal_batched(monkeypatch: pytest.MonkeyPatch) -> None:
    model = create_student("dass-tiny").eval()
    feats = torch.randn(2, 300, 128)
    monkeypatch.setattr(SS2D, "split_routes", False)  # all four routes in one grouped scan, as on CUDA
    expected = model.forward_features(feats).detach()
    monkeypatch.setattr(SS2D, "split_routes", True)
    monkeypatch.setattr(dass, "_ROWS_PER_PIECE", 7)
    with torch.inference_mode():
        got = model.forward_features(feats)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("samples", [1, 399, 400, 4321, 48000])
def test_any_length(samples: int) -> None:
    model = create_student("dass-tiny").eval()
    with torch.inference_mode():
        logits = model(torch.randn(1, samples))
    assert logits.shape == (1, 527) and torch.isfinite(logits).all()


def test_training_step_and_config_round_trip() -> None:
    model = create_student("dass-tiny", drop_path_rate=0.1).train()
    loss = model(torch.randn(2, 8000)).logsumexp(-1).mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    rebuilt = build_dass(DassConfig.from_dict(model.config.to_dict()), model.num_classes)
    assert rebuilt.config == model.config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="equal length"):
        DassConfig(depths=(1, 1), dims=(8,))
    with pytest.raises(ConfigError, match="drop_path_rate"):
        create_student("dass-tiny", drop_path_rate=1.5)


def test_dass_mini_sits_between_tiny_and_small() -> None:
    """dass-mini: four stages like dass-small, about 1.6 M parameters, any input length, trains (gradients flow)."""
    model = create_student("dass-mini")
    count = sum(p.numel() for p in model.parameters())
    assert count == 1_639_535
    assert [len(stage.blocks) for stage in model.layers] == [1, 1, 2, 1]
    logits = model(torch.randn(2, 12345))
    assert logits.shape == (2, 527)
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_dass_mini_p16_has_a_sixteenth_of_the_positions_and_takes_any_length() -> None:
    """dass-mini-p16: dass-mini's blocks on 16 x 16 patches (the CPU study student); inputs shorter than one patch
    (down to a single sample) are padded with silence instead of failing in the patch convolutions."""
    coarse, fine = create_student("dass-mini-p16"), create_student("dass-mini")
    assert [len(stage.blocks) for stage in coarse.layers] == [1, 1, 2, 1]
    image = torch.randn(1, 1, 128, 498)  # 5 s of fbank
    assert fine.patch_embed(image).shape[1:3] == (32, 125)
    assert coarse.patch_embed(image).shape[1:3] == (8, 31)
    for samples in (1, 400, coarse.min_samples - 1, coarse.min_samples, 80_000):
        logits = coarse(torch.randn(2, samples))
        assert logits.shape == (2, 527) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in coarse.parameters())


def test_dass_midi_p16_sits_between_mini_p16_and_small() -> None:
    """dass-midi-p16: dass-mini-p16's patching and first stages, its last two stages wider (192, 384) and deeper
    (4, 2): 3.5 times the parameters at the same 8 x 31 positions for 5 s."""
    midi = create_student("dass-midi-p16")
    assert sum(p.numel() for p in midi.parameters()) == 5_775_407
    assert [len(stage.blocks) for stage in midi.layers] == [1, 1, 4, 2]
    assert midi.patch_embed(torch.randn(1, 1, 128, 498)).shape[1:3] == (8, 31)
    logits = midi(torch.randn(2, 80_000))
    assert logits.shape == (2, 527) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in midi.parameters())


@pytest.mark.parametrize(("patch", "strides"), [(4, (2, 2)), (8, (2, 4)), (16, (4, 4)), (32, (4, 8))])
def test_patch_size_is_the_total_stride(patch: int, strides: tuple[int, int]) -> None:
    """Upstream strides both convolutions by patch / 2 (a total of `patch` only for 4); kd's split multiplies to it,
    and `min_frames` is the shortest input that still makes one position."""
    embed = PatchEmbed(16, patch)
    assert embed.strides == strides
    frames = embed.min_frames()
    assert embed(torch.randn(1, 1, 128, frames)).shape[2] == 1
    with pytest.raises(RuntimeError):
        embed(torch.randn(1, 1, 128, frames - 1)) if frames > 1 else embed(torch.randn(1, 1, 128, 0))
    assert embed(torch.randn(1, 1, 128, 64 * patch)).shape[1:3] == (128 // patch, 64)
