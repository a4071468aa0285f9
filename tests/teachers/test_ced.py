"""CED teachers: upstream key layouts (original and Hugging Face), strict loading, front end, and upstream outputs.

No real CED weights are here. Key names and shapes come from upstream code (tests/teachers/data/ced_keys.json says
which commits); weights are synthetic but deterministic. `ced_golden.json` holds logits that upstream's own
`ced_tiny` (RicherMans/CED @ 60a0f54) produced with those weights on tflite_speech.wav: our model must reproduce them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchaudio

from kd.core.audio import load_audio
from kd.core.errors import WeightsError
from kd.teachers.base import TEACHERS
from kd.teachers.ced import CED_CONFIGS, CedMel, CedNetwork, original_to_hf  # importing registers ced/*

DATA = Path(__file__).parent / "data"
KEYS = json.loads((DATA / "ced_keys.json").read_text())
GOLDEN = json.loads((DATA / "ced_golden.json").read_text())


def synthetic_state_dict(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic weights of the given shapes, with batch-norm statistics in a sane range."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in shapes.items():
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            out[key] = torch.tensor(0)
        elif leaf == "running_var":
            out[key] = 0.5 + torch.rand(shape, generator=g)
        elif leaf == "running_mean":
            out[key] = torch.randn(shape, generator=g) * 10 - 40
        else:
            out[key] = torch.randn(shape, generator=g) * 0.05
    return out


def original_checkpoint(size: str = "tiny") -> dict[str, torch.Tensor]:
    """An original-layout state_dict; its front-end buffers are torchaudio's, as upstream saved them."""
    shapes = KEYS[f"original/{size}"]
    sd = synthetic_state_dict({k: v for k, v in shapes.items() if not k.startswith("front_end.")})
    mel = CedMel().mel
    sd["front_end.0.spectrogram.window"] = mel.spectrogram.window.clone()
    sd["front_end.0.mel_scale.fb"] = mel.mel_scale.fb.clone()
    return {k: sd[k] for k in shapes}


@pytest.fixture(scope="module")
def speech(shared_data: Path) -> torch.Tensor:
    return load_audio(shared_data / "clips" / "tflite_speech.wav")  # 16 kHz mono, 4.27 s: no resampling involved


@pytest.mark.parametrize("size", ["tiny", "base"])
def test_network_has_upstream_keys_and_shapes(size: str) -> None:
    with torch.device("meta"):
        network = CedNetwork(CED_CONFIGS[size])
    ours = {k: list(v.shape) for k, v in network.state_dict().items()}
    assert ours == KEYS[f"hf/{size}"]
    original = {k: torch.empty(s, device="meta") for k, s in KEYS[f"original/{size}"].items()}
    renamed, frontend = original_to_hf(original)
    assert {k: list(v.shape) for k, v in renamed.items()} == ours
    assert sorted(frontend) == ["front_end.0.mel_scale.fb", "front_end.0.spectrogram.window"]


def test_frontend_matches_upstream_definition(speech: torch.Tensor) -> None:
    # Upstream's FrontEnd: torchaudio MelSpectrogram + AmplitudeToDB(top_db=120), run on one clip.
    upstream = torch.nn.Sequential(
        torchaudio.transforms.MelSpectrogram(
            f_min=0, sample_rate=16000, win_length=512, center=True, n_fft=512, f_max=8000, hop_length=160, n_mels=64
        ),
        torchaudio.transforms.AmplitudeToDB(top_db=120),
    )
    ours = CedMel()(speech[None])
    assert ours.shape == (1, 64, 1 + len(speech) // 160)
    torch.testing.assert_close(ours, upstream(speech[None]), atol=1e-4, rtol=0)
    # top_db is applied per clip: a quiet clip's features don't change when batched with a loud one.
    quiet = speech * 1e-4
    batched = CedMel()(torch.stack([quiet, speech]))
    torch.testing.assert_close(batched[0], CedMel()(quiet[None])[0])


def test_original_and_hf_layouts_load_strictly_and_reproduce_upstream(tmp_path: Path, speech: torch.Tensor) -> None:
    original = original_checkpoint()
    torch.save(original, tmp_path / "audiotransformer_tiny.pt")
    teacher = TEACHERS.create("ced/tiny", checkpoint=tmp_path / "audiotransformer_tiny.pt")
    assert teacher.card.sample_rate == 16000 and teacher.card.num_classes == 527 and len(teacher.labels) == 527
    assert teacher.card.frontend["n_mels"] == 64 and teacher.card.weights.url.startswith("https://zenodo.org/")

    short = teacher.logits(speech[None])
    long = teacher.logits(speech.repeat(3)[None])  # 12.8 s: two chunks, the second zero-padded
    assert short.shape == (1, 527) and torch.isfinite(short).all()
    classes = GOLDEN["classes"]
    torch.testing.assert_close(short[0, classes], torch.tensor(GOLDEN["short"]), atol=2e-5, rtol=0)
    torch.testing.assert_close(long[0, classes], torch.tensor(GOLDEN["long"]), atol=2e-5, rtol=0)

    from safetensors.torch import save_file

    hf, _ = original_to_hf(original)
    save_file(hf, tmp_path / "model.safetensors")
    hf_teacher = TEACHERS.create("ced/tiny", checkpoint=tmp_path / "model.safetensors")
    torch.testing.assert_close(hf_teacher.logits(speech[None]), short)


def test_batch_and_very_short_inputs(tmp_path: Path, speech: torch.Tensor) -> None:
    torch.save(original_checkpoint(), tmp_path / "ced.pt")
    teacher = TEACHERS.create("ced/tiny", checkpoint=tmp_path / "ced.pt")
    batch = torch.stack([speech, speech.flip(0)])
    torch.testing.assert_close(teacher.logits(batch)[:1], teacher.logits(speech[None]), atol=1e-5, rtol=0)
    assert torch.isfinite(teacher.logits(speech[None, :1600])).all()  # 0.1 s: fewer frames than one patch


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda sd: sd.pop("blocks.3.mlp.fc1.bias"), "missing 1"),
        (lambda sd: sd.__setitem__("norm.weight", torch.ones(7)), "wrong shape 1"),
        (lambda sd: sd.__setitem__("extra.weight", torch.ones(1)), "unexpected 1"),
        (lambda sd: sd.__setitem__("front_end.0.mel_scale.fb", torch.ones(257, 64)), "front-end buffer"),
    ],
)
def test_mismatched_checkpoints_are_refused(tmp_path: Path, edit: object, message: str) -> None:
    sd = original_checkpoint()
    edit(sd)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match=message):
        TEACHERS.create("ced/tiny", checkpoint=tmp_path / "bad.pt")
