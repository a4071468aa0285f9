"""ONNX teachers: tiny torch models exported to ONNX, declared by sidecar JSON or arguments, against torch outputs."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from kd.core.errors import ConfigError, LabelError, WeightsError
from kd.core.frontends import EfficientATMel, EfficientATMelConfig, KaldiFbank, KaldiFbankConfig
from kd.teachers import create_teacher
from kd.teachers.onnx import ONNX_METADATA_KEY, onnx_teacher, sidecar_path

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

NAMES = ["Speech", "Music", "Dog", "Not an AudioSet class"]


class WaveTagger(torch.nn.Module):
    """A fixed-length waveform model: 100 frames of 160 samples -> frame energies -> 4 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(100, len(NAMES))

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return self.linear(waves.reshape(waves.shape[0], 100, 160).pow(2).mean(-1))


class FeatureTagger(torch.nn.Module):
    """Features [batch, frames, bins] (or with a channel axis) -> mean over time -> 4 scores."""

    def __init__(self, bins: int, sigmoid: bool = False) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(bins, len(NAMES))
        self.sigmoid = sigmoid

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        logits = self.linear(feats.reshape(feats.shape[0], -1, feats.shape[-1]).mean(1))
        return torch.sigmoid(logits) if self.sigmoid else logits


def export(model: torch.nn.Module, example: torch.Tensor, path: Path, dynamic_batch: bool = True) -> Path:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    axes = {"x": {0: "batch"}, "y": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated but needs no extra packages
        torch.onnx.export(
            model.eval(), (example,), path, input_names=["x"], output_names=["y"], dynamic_axes=axes, dynamo=False
        )
    return path


def declare(model_path: Path, **settings: object) -> None:
    (model_path.parent / "labels.txt").write_text("\n".join(NAMES) + "\n")
    sidecar_path(model_path).write_text(json.dumps({"labels": "labels.txt", **settings}))


def test_waveform_model_pads_and_cuts_to_its_fixed_length(tmp_path: Path) -> None:
    model = WaveTagger()
    path = export(model, torch.randn(2, 16000), tmp_path / "wave.onnx")
    declare(path, sample_rate=16000)
    teacher = create_teacher("onnx", checkpoint=path)
    assert teacher.card.sample_rate == 16000 and teacher.labels.names == tuple(NAMES)
    assert len(teacher.checkpoint_sha256) == 64
    long, short = torch.randn(3, 20000), torch.randn(3, 9000)
    with torch.no_grad():
        torch.testing.assert_close(teacher.logits(long), model(long[:, :16000]), atol=1e-5, rtol=1e-5)
        padded = torch.nn.functional.pad(short, (0, 7000))
        torch.testing.assert_close(teacher.logits(short), model(padded), atol=1e-5, rtol=1e-5)


def test_kaldi_fbank_front_end_with_fixed_frames_and_probability_output(tmp_path: Path) -> None:
    settings = {"type": "kaldi_fbank", "num_mel_bins": 64, "mean": -4.0, "std": 9.0}
    model = FeatureTagger(64, sigmoid=True)
    path = export(model, torch.randn(2, 50, 64), tmp_path / "fbank.onnx")
    declare(path, sample_rate=16000, frontend=settings, num_frames=50, pad_value=0.5, output="probabilities")
    teacher = onnx_teacher(checkpoint=path)
    frontend = KaldiFbank(KaldiFbankConfig(num_mel_bins=64, mean=-4.0, std=9.0))
    assert teacher.card.frontend["frontend"] == frontend.settings()
    waves = torch.randn(2, 16000) * 0.1  # 98 frames, cut to 50
    with torch.no_grad():
        expected = model.linear(frontend(waves)[:, :50].mean(1))
        torch.testing.assert_close(teacher.logits(waves), expected, atol=1e-4, rtol=1e-4)
        short = torch.randn(1, 4000) * 0.1  # 23 frames, padded with 0.5
        feats = torch.nn.functional.pad(frontend(short), (0, 0, 0, 27), value=0.5)
        torch.testing.assert_close(teacher.logits(short), model.linear(feats.mean(1)), atol=1e-4, rtol=1e-4)


def test_channel_axis_and_batch_of_one_model(tmp_path: Path) -> None:
    config = EfficientATMelConfig(sample_rate=32000, n_mels=32, fmax=15000.0)
    model = FeatureTagger(100)  # treats [1, 1, 32 mel, 100 frames] as 32 rows of 100 frames
    path = export(model, torch.randn(1, 1, 32, 100), tmp_path / "mel.onnx", dynamic_batch=False)
    settings = {"type": "efficientat_mel", "n_mels": 32, "sample_rate": 32000}
    teacher = onnx_teacher(checkpoint=path, sample_rate=32000, frontend=settings, labels=_labels(tmp_path))
    waves = torch.randn(3, 32000) * 0.1  # 100 frames
    with torch.no_grad():
        expected = model(EfficientATMel(config)(waves)[:, None])
        torch.testing.assert_close(teacher.logits(waves), expected, atol=1e-4, rtol=1e-4)


def _labels(folder: Path) -> Path:
    path = folder / "names.txt"
    path.write_text("\n".join(NAMES) + "\n")
    return path


def test_arguments_override_the_sidecar(tmp_path: Path) -> None:
    path = export(WaveTagger(), torch.randn(1, 16000), tmp_path / "wave.onnx")
    declare(path, sample_rate=16000)
    assert onnx_teacher(checkpoint=path, sample_rate=22050).card.sample_rate == 22050


@pytest.mark.parametrize(
    ("sidecar", "error", "match"),
    [
        (None, ConfigError, "not declared"),
        ({"sample_rate": 16000, "labels": "labels.txt", "window": 3}, ConfigError, "unknown settings"),
        ({"sample_rate": 16000, "labels": "labels.txt", "frontend": {"type": "mfcc"}}, ConfigError, "unknown front"),
        ({"sample_rate": 16000, "labels": "labels.txt", "output": "softmax"}, ConfigError, "output"),
        ({"sample_rate": 16000, "labels": "three.txt"}, LabelError, "3 labels"),
        ({"sample_rate": 16000, "labels": "missing.txt"}, LabelError, "missing.txt"),
    ],
)
def test_bad_declarations_are_refused(tmp_path: Path, sidecar: dict | None, error: type, match: str) -> None:
    path = export(WaveTagger(), torch.randn(1, 16000), tmp_path / "wave.onnx")
    (tmp_path / "labels.txt").write_text("\n".join(NAMES))
    (tmp_path / "three.txt").write_text("\n".join(NAMES[:3]))
    if sidecar is not None:
        sidecar_path(path).write_text(json.dumps(sidecar))
    with pytest.raises(error, match=match):
        onnx_teacher(checkpoint=path)


def test_missing_or_broken_model_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        onnx_teacher(checkpoint=tmp_path / "none.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage")
    declare(broken, sample_rate=16000)
    with pytest.raises(WeightsError, match="not a loadable ONNX model"):
        onnx_teacher(checkpoint=broken)


def test_registry_prefix_names_the_file(tmp_path: Path) -> None:
    path = export(WaveTagger(), torch.randn(1, 16000), tmp_path / "wave.onnx")
    declare(path, sample_rate=16000)
    teacher = create_teacher(f"onnx:{path}")
    assert teacher.card.name == f"onnx:{path}"


def _embed(path: Path, text: str) -> None:
    import onnx

    graph = onnx.load(str(path))
    graph.metadata_props.add(key=ONNX_METADATA_KEY, value=text)
    onnx.save(graph, str(path))


def test_a_declaration_inside_the_file_needs_no_sidecar_and_a_sidecar_overrides_it(tmp_path: Path) -> None:
    model = WaveTagger()
    path = export(model, torch.randn(1, 16000), tmp_path / "wave.onnx")
    labels = {"name": "four", "mids": ["/m/09x0r", "/m/04rlf", "/m/0bt9lr", ""], "names": NAMES}
    _embed(path, json.dumps({"sample_rate": 16000, "frontend": "waveform", "labels": labels}))
    teacher = create_teacher(f"onnx:{path}")
    assert teacher.card.sample_rate == 16000 and teacher.labels.names == tuple(NAMES)
    assert teacher.labels.mids[0] == "/m/09x0r" and teacher.labels.name == "four"
    wave = torch.randn(2, 16000)
    with torch.no_grad():
        torch.testing.assert_close(teacher.logits(wave), model(wave), atol=1e-5, rtol=1e-5)
    sidecar_path(path).write_text(json.dumps({"sample_rate": 22050}))
    assert onnx_teacher(checkpoint=path).card.sample_rate == 22050


def test_a_broken_declaration_inside_the_file_is_refused(tmp_path: Path) -> None:
    path = export(WaveTagger(), torch.randn(1, 16000), tmp_path / "wave.onnx")
    _embed(path, "{not json")
    with pytest.raises(ConfigError, match=ONNX_METADATA_KEY):
        onnx_teacher(checkpoint=path)
    other = export(WaveTagger(), torch.randn(1, 16000), tmp_path / "other.onnx")
    _embed(other, json.dumps({"sample_rate": 16000, "labels": {"names": NAMES}}))
    with pytest.raises(ConfigError, match="declared labels"):
        onnx_teacher(checkpoint=other)
