"""HTS-AT: upstream checkpoint keys and shapes, the slaney mel front end, strict loading, outputs on real audio, and
upstream's two paths for short clips (stretch, tile)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from kd.core.audio import load_audio
from kd.core.errors import WeightsError
from kd.teachers.base import TEACHERS
from kd.teachers.htsat import HtsatConfig, HtsatMel, HtsatNetwork, HtsatTagger

HEADS, DEPTHS = (4, 8, 16, 32), (2, 2, 6, 2)


def upstream_keys() -> dict[str, tuple[int, ...]]:
    """state_dict keys and shapes of upstream's SEDWrapper(HTSAT_Swin_Transformer) with config.py's AudioSet values,
    written out from RetroCirce/HTS-Audio-Transformer model/htsat.py and model/layers.py (commit 798cf54)."""
    keys: dict[str, tuple[int, ...]] = {
        "spectrogram_extractor.stft.conv_real.weight": (513, 1, 1024),
        "spectrogram_extractor.stft.conv_imag.weight": (513, 1, 1024),
        "logmel_extractor.melW": (513, 64),
        "bn0.weight": (64,), "bn0.bias": (64,), "bn0.running_mean": (64,), "bn0.running_var": (64,),
        "bn0.num_batches_tracked": (),
        "patch_embed.proj.weight": (96, 1, 4, 4), "patch_embed.proj.bias": (96,),
        "patch_embed.norm.weight": (96,), "patch_embed.norm.bias": (96,),
        "norm.weight": (768,), "norm.bias": (768,),
        "tscam_conv.weight": (527, 768, 2, 3), "tscam_conv.bias": (527,),
        "head.weight": (527, 527), "head.bias": (527,),
    }  # fmt: skip
    for i, (depth, heads) in enumerate(zip(DEPTHS, HEADS, strict=True)):
        dim, resolution = 96 * 2**i, 64 // 2**i
        for j in range(depth):
            p = f"layers.{i}.blocks.{j}."
            for norm in ("norm1", "norm2"):
                keys[p + norm + ".weight"] = keys[p + norm + ".bias"] = (dim,)
            keys[p + "attn.relative_position_bias_table"] = (225, heads)
            keys[p + "attn.relative_position_index"] = (64, 64)
            keys[p + "attn.qkv.weight"], keys[p + "attn.qkv.bias"] = (3 * dim, dim), (3 * dim,)
            keys[p + "attn.proj.weight"], keys[p + "attn.proj.bias"] = (dim, dim), (dim,)
            keys[p + "mlp.fc1.weight"], keys[p + "mlp.fc1.bias"] = (4 * dim, dim), (4 * dim,)
            keys[p + "mlp.fc2.weight"], keys[p + "mlp.fc2.bias"] = (dim, 4 * dim), (dim,)
            if j % 2 == 1 and resolution > 8:  # shifted windows; the 8x8 last stage is one unshifted window
                keys[p + "attn_mask"] = ((resolution // 8) ** 2, 64, 64)
        if i < 3:
            keys[f"layers.{i}.downsample.reduction.weight"] = (2 * dim, 4 * dim)
            keys[f"layers.{i}.downsample.norm.weight"] = keys[f"layers.{i}.downsample.norm.bias"] = (4 * dim,)
    return keys


def slaney_mel_bank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """librosa.filters.mel(htk=False, norm='slaney') re-derived in numpy: [freqs, mels] as torchlibrosa's melW."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return np.where(f < 1000, f * 3 / 200, 15 + np.log(np.maximum(f, 1e-10) / 1000) / (np.log(6.4) / 27))

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return np.where(m < 15, m * 200 / 3, 1000 * np.exp((np.log(6.4) / 27) * (m - 15)))

    mel_f = mel_to_hz(np.linspace(hz_to_mel(np.array(fmin)), hz_to_mel(np.array(fmax)), n_mels + 2))
    fft_f = np.linspace(0, sr / 2, n_fft // 2 + 1)
    ramps = mel_f[:, None] - fft_f[None, :]
    fdiff = np.diff(mel_f)
    weights = np.maximum(0, np.minimum(-ramps[:-2] / fdiff[:-1, None], ramps[2:] / fdiff[1:, None]))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return weights.T


def upstream_checkpoint(seed: int = 0) -> dict:
    """A Lightning-style checkpoint with upstream's keys: random network weights, upstream's front-end tensors."""
    generator = torch.Generator().manual_seed(seed)
    sd = {}
    reference = HtsatNetwork().state_dict()
    for key, shape in upstream_keys().items():
        if key in reference and ("relative_position_index" in key or "attn_mask" in key):
            sd["sed_model." + key] = reference[key].clone()
        elif key.endswith(("running_var", "norm.weight", "norm1.weight", "norm2.weight")):
            sd["sed_model." + key] = 1 + 0.1 * torch.rand(shape, generator=generator)
        elif key.endswith("num_batches_tracked"):
            sd["sed_model." + key] = torch.tensor(0)
        else:
            sd["sed_model." + key] = 0.02 * torch.randn(shape, generator=generator)
    n = torch.arange(1024).double()
    window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / 1024)  # periodic Hann (librosa 'hann', fftbins=True)
    angle = 2 * math.pi * torch.outer(torch.arange(513).double(), n) / 1024
    sd["sed_model.spectrogram_extractor.stft.conv_real.weight"] = (torch.cos(angle) * window).float()[:, None]
    sd["sed_model.spectrogram_extractor.stft.conv_imag.weight"] = (-torch.sin(angle) * window).float()[:, None]
    sd["sed_model.logmel_extractor.melW"] = torch.from_numpy(slaney_mel_bank(32000, 1024, 64, 50, 14000)).float()
    return {"state_dict": sd, "epoch": 1}


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("htsat") / "htsat.ckpt"
    torch.save(upstream_checkpoint(), path)
    return path


def test_network_keys_and_shapes_are_upstreams() -> None:
    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in HtsatNetwork().state_dict().items()}
    upstream = {k: v for k, v in upstream_keys().items() if not k.startswith(("spectrogram_", "logmel_"))}
    assert ours == upstream


def test_mel_bank_and_front_end_match_a_numpy_rederivation() -> None:
    mel = HtsatMel()
    reference = torch.from_numpy(slaney_mel_bank(32000, 1024, 64, 50, 14000)).float()
    torch.testing.assert_close(mel.mel_bank, reference, rtol=1e-4, atol=1e-7)
    wave = torch.randn(1, 16000, generator=torch.Generator().manual_seed(1))
    padded = np.pad(wave[0].double().numpy(), 512, mode="reflect")
    frames = np.stack([padded[i : i + 1024] for i in range(0, len(padded) - 1023, 320)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    expected = 10 * np.log10(np.maximum(power @ reference.double().numpy(), 1e-10))
    torch.testing.assert_close(mel(wave)[0].double(), torch.from_numpy(expected), atol=2e-3, rtol=0)


def test_lightning_checkpoint_loads_strictly_and_tags_a_real_clip(checkpoint_path: Path, shared_data: Path) -> None:
    teacher = TEACHERS.create("htsat/audioset", checkpoint=checkpoint_path)
    wave = load_audio(shared_data / "clips" / "freesound_dog.wav", sample_rate=32000)[:96000]
    logits = teacher.logits(wave[None])
    assert logits.shape == (1, 527) and torch.isfinite(logits).all()
    batch = teacher.logits(torch.stack([wave, wave.flip(0)]))
    torch.testing.assert_close(batch[:1], logits, atol=1e-4, rtol=0)
    assert torch.isfinite(teacher.logits(wave[None, :300])).all()  # shorter than half an STFT window


def test_tiled_name_follows_upstream_inference_on_short_clips(checkpoint_path: Path, shared_data: Path) -> None:
    stretch = TEACHERS.create("htsat/audioset", checkpoint=checkpoint_path)
    tile = TEACHERS.create("htsat/audioset-tiled", checkpoint=checkpoint_path)
    assert (stretch.card.name, stretch.card.frontend["short_clips"]) == ("htsat/audioset", "stretch")
    assert (tile.card.name, tile.card.frontend["short_clips"]) == ("htsat/audioset-tiled", "tile")
    short = load_audio(shared_data / "clips" / "freesound_dog.wav", sample_rate=32000)[None, :96000]
    assert (tile.logits(short) - stretch.logits(short)).abs().max() > 1e-2  # 3 s: 301 frames, 3 copies


def test_clips_from_5_12_s_on_fill_one_image_at_most_once() -> None:
    # 512 frames still tile twice into 1024; 513 frames tile once, where both paths are the same stretch.
    mel = HtsatMel()
    assert [mel(torch.zeros(1, n)).shape[1] for n in (512 * 320 - 1, 512 * 320)] == [512, 513]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda sd: sd.pop("sed_model.head.bias"), "missing 1"),
        (lambda sd: sd.__setitem__("sed_model.tscam_conv.bias", torch.zeros(50)), "wrong shape 1"),
        (lambda sd: sd.__setitem__("sed_model.absolute_pos_embed", torch.zeros(1)), "unexpected 1"),
        (lambda sd: sd.__setitem__("sed_model.logmel_extractor.melW", torch.ones(513, 64)), "front-end tensor"),
    ],
)
def test_mismatched_checkpoints_are_refused(tmp_path: Path, edit: object, message: str) -> None:
    ckpt = upstream_checkpoint()
    edit(ckpt["state_dict"])
    torch.save(ckpt, tmp_path / "bad.ckpt")
    with pytest.raises(WeightsError, match=message):
        TEACHERS.create("htsat/audioset", checkpoint=tmp_path / "bad.ckpt")


TINY = HtsatConfig(spec_size=64, embed_dim=8, depths=(2, 2), num_heads=(1, 2), window_size=4, n_mels=16, num_classes=5)


def test_fold_stacks_four_time_strips_along_frequency() -> None:
    network = HtsatNetwork(TINY)
    x = torch.arange(256 * 16).float().view(1, 1, 256, 16)  # [B, 1, frames, mels]
    image = network.fold(x)[0, 0]
    for strip in range(4):
        torch.testing.assert_close(image[16 * strip : 16 * (strip + 1)], x[0, 0, 64 * strip : 64 * (strip + 1)].T)


@pytest.mark.parametrize("frames", [100, 256, 400, 700])
def test_any_length_gives_finite_logits(frames: int) -> None:
    network = HtsatNetwork(TINY).eval()
    with torch.no_grad():
        logits = network(torch.randn(2, frames, 16))
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()


def test_tiling_repeats_short_mels_whole_before_the_stretch() -> None:
    stretch = HtsatNetwork(TINY).eval()
    tile = HtsatNetwork(TINY, short_clips="tile").eval()
    tile.load_state_dict(stretch.state_dict())
    mel = torch.randn(2, 100, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        tiled = tile(mel)
        torch.testing.assert_close(tiled, stretch(mel.repeat(1, 2, 1)))  # floor(256 / 100) = 2 copies
        assert (tiled - stretch(mel)).abs().max() > 1e-3
        torch.testing.assert_close(tile(mel[:, :64]), stretch(mel[:, :64].repeat(1, 4, 1)))
        assert (tile(mel[:, :64]) - stretch(mel[:, :64])).abs().max() > 1e-3
        for frames in (129, 256, 400):  # at most one copy fits, or the input is cropped: both paths agree
            longer = torch.randn(2, frames, 16, generator=torch.Generator().manual_seed(frames))
            torch.testing.assert_close(tile(longer), stretch(longer), atol=0, rtol=0)
    with pytest.raises(ValueError, match="short_clips"):
        HtsatNetwork(TINY, short_clips="loop")


def test_long_inputs_average_upstreams_crops() -> None:
    network = HtsatNetwork(TINY).eval()
    mel = torch.randn(1, 400, 16)
    with torch.no_grad():
        x = network.bn0(mel.transpose(1, 2)[..., None]).squeeze(-1).transpose(1, 2)[:, None]
        crop, hop = 399 // 2, 399 // 4  # upstream: (T - 1) // 2 long, hop (T - 1) // 4, starts < T - crop - 1
        probs = torch.stack(
            [torch.sigmoid(network._image_logits(x[:, :, s : s + crop])) for s in range(0, 400 - crop - 1, hop)]
        )
        torch.testing.assert_close(torch.sigmoid(network(mel)), probs.mean(0), atol=1e-5, rtol=1e-4)


def test_tagger_parameter_count_is_upstreams() -> None:
    # HTS-AT reports 31 M parameters (paper, Table 1); the unused 527x527 head is included, as in the checkpoints.
    assert sum(p.numel() for p in HtsatTagger().parameters()) == pytest.approx(31e6, rel=0.05)
