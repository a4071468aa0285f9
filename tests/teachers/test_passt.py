"""PaSST teachers: upstream key layout, strict loading, PaSST's mel front end, and upstream outputs.

No real PaSST weights are here. tests/teachers/data/passt_keys.json holds upstream's key names and shapes for real
architectures (checked without allocating) and for a scaled-down one run here; passt_golden.json holds the logits
upstream's own PaSST and AugmentMelSTFT produced for it with synthetic weights, for a 10 s, a 3 s and a 15 s input.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchaudio

from kd.core.audio import load_audio
from kd.core.errors import WeightsError
from kd.core.frontends import EfficientATMel
from kd.teachers.base import TEACHERS
from kd.teachers.passt import PASST_MEL, PASST_MODELS, PasstConfig, PasstNetwork  # importing registers passt/*

DATA = Path(__file__).parent / "data"
KEYS = json.loads((DATA / "passt_keys.json").read_text())
GOLDEN = json.loads((DATA / "passt_golden.json").read_text())
SMALL = PasstConfig(embed_dim=96, depth=2, num_heads=3)


def synthetic_state_dict(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {key: torch.randn(shape, generator=g) * 0.05 for key, shape in shapes.items()}


@pytest.fixture(scope="module")
def speech(shared_data: Path) -> torch.Tensor:
    return load_audio(shared_data / "clips" / "efficientat-demo_speech.wav")  # 32 kHz mono, 10 s: no resampling


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("s10", "s_swa_p16_128_ap476"),
        ("l", "l_kd_p16_128_ap47"),
        ("s16", "s_p16_s16_128_ap468"),
        ("20sec", "s_f128_20sec_p16_s10_ap474_swa"),
    ],
)
def test_network_has_upstream_keys_and_shapes(name: str, model: str) -> None:
    with torch.device("meta"):
        network = PasstNetwork(PASST_MODELS[model][0])
    assert {k: list(v.shape) for k, v in network.state_dict().items()} == KEYS[f"keys/{name}"]


def test_frontend_matches_upstream_augment_mel_stft(speech: torch.Tensor) -> None:
    # Upstream's AugmentMelSTFT.forward in eval mode with ex_audioset.py's settings, written out.
    x = torch.nn.functional.conv1d(speech[None, None], torch.tensor([[[-0.97, 1.0]]])).squeeze(1)
    window = torch.hann_window(800, periodic=False)
    spec = torch.stft(x, 1024, hop_length=320, win_length=800, center=True, window=window, return_complex=True)
    power = spec.abs() ** 2
    bank, _ = torchaudio.compliance.kaldi.get_mel_banks(128, 1024, 32000, 0.0, 15000, 100.0, -500.0, 1.0)
    mel = torch.matmul(torch.nn.functional.pad(bank, (0, 1)), power)
    upstream = ((mel + 1e-5).log() + 4.5) / 5.0
    ours = EfficientATMel(PASST_MEL)(speech[None])
    assert ours.shape == upstream.shape == (1, 128, 1000)
    torch.testing.assert_close(ours, upstream, atol=1e-4, rtol=0)


def test_loads_strictly_and_reproduces_upstream(
    tmp_path: Path, speech: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The registered models are full size; swap in the scaled-down architecture the golden logits were made with.
    monkeypatch.setitem(PASST_MODELS, "s_swa_p16_128_ap476", (SMALL, PASST_MODELS["s_swa_p16_128_ap476"][1]))
    torch.save(synthetic_state_dict(KEYS["keys/small"]), tmp_path / "passt.pt")
    teacher = TEACHERS.create("passt/s_swa_p16_128_ap476", checkpoint=tmp_path / "passt.pt")
    assert teacher.card.sample_rate == 32000 and teacher.card.num_classes == 527 and len(teacher.labels) == 527
    assert teacher.card.frontend["type"] == "efficientat_mel" and teacher.card.weights.url.endswith("ap.476-swa.pt")
    classes = GOLDEN["classes"]
    inputs = {"10s": speech, "3s": speech[:96000], "15s": torch.cat([speech, speech[:160000]])}
    for tag, wave in inputs.items():
        logits = teacher.logits(wave[None])
        assert logits.shape == (1, 527)
        torch.testing.assert_close(logits[0, classes], torch.tensor(GOLDEN[tag]), atol=2e-5, rtol=0, msg=tag)
    # Longer inputs are cut to what the time embedding covers (upstream's behaviour): 15 s gives the 10 s logits.
    torch.testing.assert_close(teacher.logits(inputs["15s"][None]), teacher.logits(speech[None]))
    batch = teacher.logits(torch.stack([speech[:96000], speech[-96000:]]))
    torch.testing.assert_close(batch[:1], teacher.logits(speech[None, :96000]), atol=1e-5, rtol=0)
    assert torch.isfinite(teacher.logits(speech[None, :3200])).all()  # 0.1 s: fewer frames than one patch


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda sd: sd.pop("head_dist.weight"), "missing 1"),
        (lambda sd: sd.__setitem__("time_new_pos_embed", torch.zeros(1, 96, 1, 50)), "wrong shape 1"),
        (lambda sd: sd.__setitem__("pos_embed", torch.zeros(1)), "unexpected 1"),
    ],
)
def test_mismatched_checkpoints_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: object, message: str
) -> None:
    monkeypatch.setitem(PASST_MODELS, "s_swa_p16_128_ap476", (SMALL, PASST_MODELS["s_swa_p16_128_ap476"][1]))
    sd = synthetic_state_dict(KEYS["keys/small"])
    edit(sd)
    torch.save({"model": sd}, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match=message):
        TEACHERS.create("passt/s_swa_p16_128_ap476", checkpoint=tmp_path / "bad.pt")
