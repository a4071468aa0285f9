"""BEATs teachers: upstream key layout, `{'cfg', 'model'}` checkpoints loaded strictly with weights_only, front end,
and upstream outputs.

No real BEATs weights are here. tests/teachers/data/beats_keys.json holds upstream's key names and shapes for the
released fine-tuned architecture ('real', checked without allocating) and for a scaled-down cfg ('small', run here);
beats_golden.json holds the logits upstream's own code produced for the small cfg with synthetic weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchaudio

from kd.core.audio import load_audio
from kd.core.errors import WeightsError
from kd.core.frontends import KaldiFbank
from kd.teachers.base import TEACHERS
from kd.teachers.beats import BEATS_FBANK, BeatsConfig, BeatsNetwork  # importing registers beats/*

DATA = Path(__file__).parent / "data"
KEYS = json.loads((DATA / "beats_keys.json").read_text())
GOLDEN = json.loads((DATA / "beats_golden.json").read_text())


def synthetic_state_dict(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic weights of the given shapes; BEATs's shared bias table is equal in every layer, as saved."""
    g = torch.Generator().manual_seed(seed)
    out = {key: torch.randn(shape, generator=g) * 0.05 for key, shape in shapes.items()}
    out["encoder.pos_conv.0.weight_g"] = out["encoder.pos_conv.0.weight_g"].abs() + 0.5  # a norm: positive, O(1)
    table = out["encoder.layers.0.self_attn.relative_attention_bias.weight"]
    for key in out:
        if key.endswith("relative_attention_bias.weight"):
            out[key] = table
    return out


def save_checkpoint(path: Path, cfg: dict | None = None, **edits: torch.Tensor) -> Path:
    state_dict = synthetic_state_dict(KEYS["keys/small"])
    state_dict.update(edits)
    torch.save({"cfg": KEYS["cfg/small"] if cfg is None else cfg, "model": state_dict}, path)
    return path


@pytest.fixture(scope="module")
def speech(shared_data: Path) -> torch.Tensor:
    return load_audio(shared_data / "clips" / "tflite_speech.wav")  # 16 kHz mono, 4.27 s: no resampling involved


@pytest.mark.parametrize("size", ["real", "small"])
def test_network_has_upstream_keys_and_shapes(size: str) -> None:
    with torch.device("meta"):
        network = BeatsNetwork(BeatsConfig.from_checkpoint(KEYS[f"cfg/{size}"], size))
    assert {k: list(v.shape) for k, v in network.state_dict().items()} == KEYS[f"keys/{size}"]


def test_real_cfg_is_the_default() -> None:
    assert BeatsConfig.from_checkpoint(KEYS["cfg/real"], "real") == BeatsConfig()


def test_frontend_matches_upstream_preprocess(speech: torch.Tensor) -> None:
    # Upstream's BEATs.preprocess, written out.
    fbank = torchaudio.compliance.kaldi.fbank(
        speech[None] * 2**15, num_mel_bins=128, sample_frequency=16000, frame_length=25, frame_shift=10
    )
    upstream = (fbank - 15.41663) / (2 * 6.55582)
    ours = KaldiFbank(BEATS_FBANK)(speech[None])[0]
    assert ours.shape == (1 + (len(speech) - 400) // 160, 128)
    torch.testing.assert_close(ours, upstream, atol=1e-5, rtol=0)


def test_cfg_checkpoint_loads_strictly_and_reproduces_upstream(tmp_path: Path, speech: torch.Tensor) -> None:
    path = save_checkpoint(tmp_path / "BEATs_small.pt")
    teacher = TEACHERS.create("beats/iter3_plus_as2m_cpt2", checkpoint=path)
    assert teacher.card.sample_rate == 16000 and teacher.card.num_classes == 527 and len(teacher.labels) == 527
    assert teacher.card.frontend["num_mel_bins"] == 128 and teacher.card.frontend["waveform_scale"] == 32768.0
    logits = teacher.logits(speech[None])
    assert logits.shape == (1, 527)
    expected = torch.tensor(GOLDEN["logits"], dtype=torch.float32)
    torch.testing.assert_close(logits[0, GOLDEN["classes"]], expected, atol=2e-5, rtol=0)
    # Batches are independent; a 0.1 s input (fewer frames than one patch) still gives finite logits.
    batch = teacher.logits(torch.stack([speech, speech.flip(0)]))
    torch.testing.assert_close(batch[:1], logits, atol=1e-5, rtol=0)
    assert torch.isfinite(teacher.logits(speech[None, :1600])).all()


@pytest.mark.parametrize(
    ("edits", "cfg", "message"),
    [
        ({"predictor.weight": torch.zeros(527, 7)}, None, "wrong shape 1"),
        ({"encoder.layers.1.self_attn.relative_attention_bias.weight": torch.zeros(320, 3)}, None, "tables differ"),
        ({}, {**KEYS["cfg/small"], "encoder_layers": 3}, "missing"),
        ({}, {**KEYS["cfg/small"], "finetuned_model": False}, "finetuned_model"),
    ],
)
def test_mismatched_checkpoints_are_refused(tmp_path: Path, edits: dict, cfg: dict | None, message: str) -> None:
    path = save_checkpoint(tmp_path / "bad.pt", cfg, **edits)
    with pytest.raises(WeightsError, match=message):
        TEACHERS.create("beats/iter3_plus_as2m_cpt2", checkpoint=path)
