"""kd export: a Hugging Face directory that AutoModelForAudioClassification loads in a fresh process (after
`import kd.hf`, no trust_remote_code), and an ONNX graph with a dynamic time axis matching PyTorch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from kd.errors import ConfigError
from kd.labels import audioset_labels


@pytest.fixture(scope="module")
def student_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kd.checkpoint import save_checkpoint
    from kd.students import create_student

    torch.manual_seed(0)
    model = create_student("dass-tiny", num_classes=527)
    state = {"student": "dass-tiny", "student_kwargs": {"num_classes": 527}, "labels": audioset_labels().to_json()}
    return save_checkpoint({**state, "model": model.state_dict(), "ema": None}, tmp_path_factory.mktemp("ck") / "s.pt")


def test_conv_fbank_equals_kaldi_fbank() -> None:
    from kd.export import ConvKaldiFbank
    from kd.frontends import KaldiFbank
    from kd.students.dass import DASS_FBANK

    waves = torch.randn(2, 16000 * 3) * 0.1 + 0.05  # a DC offset too
    np.testing.assert_allclose(ConvKaldiFbank(DASS_FBANK)(waves), KaldiFbank(DASS_FBANK)(waves), atol=2e-4)


def test_hf_export_loads_with_auto_class_in_a_fresh_process(student_checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from kd.export import export_student

    out = export_student(student_checkpoint, "hf", tmp_path / "hf")
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    wave = torch.randn(1, 16000 * 2) * 0.1
    torch.save(wave, tmp_path / "wave.pt")
    script = textwrap.dedent(
        f"""
        import torch, transformers
        import kd.hf  # registers model type kd-dass with the Auto classes
        model = transformers.AutoModelForAudioClassification.from_pretrained({str(out)!r}).eval()
        assert type(model).__name__ == "KdStudentForAudioClassification"
        assert model.config.id2label[0] == "Speech" and model.config.num_labels == 527
        with torch.no_grad():
            logits = model(input_values=torch.load({str(tmp_path / "wave.pt")!r})).logits
        torch.save(logits, {str(tmp_path / "logits.pt")!r})
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    from kd.checkpoint import load_student

    model, _ = load_student(student_checkpoint)
    with torch.no_grad():
        expected = model(wave)
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected, atol=1e-5, rtol=1e-5)


def test_onnx_export_has_dynamic_time_axis(student_checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from kd.checkpoint import load_student
    from kd.export import export_student

    path = export_student(student_checkpoint, "onnx", tmp_path / "student.onnx")
    session = ort.InferenceSession(str(path))
    model, _ = load_student(student_checkpoint)
    for seconds, batch in ((10, 2), (60, 1)):
        wave = torch.randn(batch, 16000 * seconds) * 0.1
        (got,) = session.run(None, {"waveform": wave.numpy()})
        with torch.no_grad():
            expected = model(wave).numpy()
        assert got.shape == (batch, 527)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_export_refuses_bad_formats(student_checkpoint: Path, tmp_path: Path) -> None:
    from kd.export import export_student

    with pytest.raises(ConfigError, match="--format"):
        export_student(student_checkpoint, "tflite", tmp_path / "x")
    with pytest.raises(ConfigError, match=".onnx"):
        export_student(student_checkpoint, "onnx", tmp_path / "x.bin")
