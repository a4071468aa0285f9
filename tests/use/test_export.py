"""kd export: a Hugging Face directory that transformers loads in a fresh process (after `import kd`, or with
trust_remote_code) and runs in its audio-classification pipeline like `kd predict`; an ONNX graph with a dynamic time
axis matching PyTorch that carries its own labels; and exports that refuse bad targets without writing anything."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from kd.core.errors import ConfigError
from kd.core.labels import audioset_labels
from tests.helpers import run_kd

DOG_CLIP = "clips/esc50_1-100032-A-0.wav"  # 5 s, ESC-50 "dog": one window for kd predict, one pass for the pipeline


@pytest.fixture(scope="module")
def student_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kd.students import create_student
    from kd.students.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = create_student("dass-tiny", num_classes=527)
    state = {
        "student": "dass-tiny",
        "student_kwargs": {"num_classes": 527},
        "labels": audioset_labels().to_json(),
        "step": 300,
        "config": {"store": "runs/store.zarr", "steps": 300, "lr": 1e-3, "loss": "kl", "label_weight": 0.0},
        # A KL student's readout, over fewer classes than the head: every export must carry it.
        "readout": {"kind": "softmax", "classes": list(range(500))},
        "ensemble": {"teachers": [["efficientat/mn04_as", 1.0]], "temperature": 1.0, "combine": "prob"},
        "teacher_sha256": {"efficientat/mn04_as": "899a8c62" + "0" * 56},
    }
    return save_checkpoint({**state, "model": model.state_dict(), "ema": None}, tmp_path_factory.mktemp("ck") / "s.pt")


@pytest.fixture(scope="module")
def onnx_export(student_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from kd.use.export import export_student

    # One export shared by the ONNX tests: tracing dass-tiny is the slow part.
    return export_student(student_checkpoint, "onnx", tmp_path_factory.mktemp("onnx") / "student.onnx")


def test_conv_fbank_equals_kaldi_fbank() -> None:
    from kd.core.frontends import KaldiFbank
    from kd.students.dass import DASS_FBANK
    from kd.use.export import ConvKaldiFbank

    waves = torch.randn(2, 16000 * 3) * 0.1 + 0.05  # a DC offset too
    np.testing.assert_allclose(ConvKaldiFbank(DASS_FBANK)(waves), KaldiFbank(DASS_FBANK)(waves), atol=2e-4)


def _fresh_python(script: str) -> dict:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_hf_export_loads_both_ways_and_its_pipeline_agrees_with_kd_predict(
    student_checkpoint: Path, tmp_path: Path, shared_data: Path
) -> None:
    pytest.importorskip("transformers")
    from kd.core.audio import load_audio
    from kd.use.export import export_student
    from kd.use.models import load_tagger
    from kd.use.predict import predict_file

    out = export_student(student_checkpoint, "hf", tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    assert (
        config["problem_type"] == "multi_label_classification"
        and "AutoModelForAudioClassification" in config["auto_map"]
    )
    assert json.loads((out / "preprocessor_config.json").read_text())["sampling_rate"] == 16000
    card = (out / "README.md").read_text()
    assert "pipeline_tag: audio-classification" in card and "library_name:" in card
    assert "efficientat/mn04_as" in card and "899a8c62" in card and "| 0 | `/m/09x0r` | Speech |" in card
    assert "logit(softmax)" in card and config["readout"]["kind"] == "softmax"

    wave = load_audio(shared_data / DOG_CLIP, sample_rate=16000)
    np.save(tmp_path / "dog.npy", wave.numpy().reshape(-1))
    clip = str(tmp_path / "dog.npy")
    # 1. `import kd` first, transformers later: the Auto classes and the pipeline know kd-dass without remote code.
    after_import = _fresh_python(
        f"""
        import json, numpy as np
        import kd
        from transformers import AutoModelForAudioClassification, pipeline
        model = AutoModelForAudioClassification.from_pretrained({str(out)!r})
        assert type(model).__module__ == "kd.use.hf", type(model).__module__
        tagger = pipeline("audio-classification", model={str(out)!r})
        tags = tagger({{"array": np.load({clip!r}), "sampling_rate": 16000}}, top_k=5)
        print(json.dumps({{"tags": [[t["label"], t["score"]] for t in tags]}}))
        """
    )
    # 2. No kd import: trust_remote_code loads through the directory's modeling_kd.py.
    remote = _fresh_python(
        f"""
        import json, sys, numpy as np, torch
        from transformers import AutoModelForAudioClassification
        assert "kd" not in sys.modules
        model = AutoModelForAudioClassification.from_pretrained({str(out)!r}, trust_remote_code=True).eval()
        with torch.no_grad():
            logits = model(input_values=torch.from_numpy(np.load({clip!r}))[None]).logits[0]
        print(json.dumps({{"class": type(model).__name__, "logits": logits.tolist()}}))
        """
    )
    assert remote["class"] == "KdStudentForAudioClassification"
    prediction = predict_file(load_tagger(str(student_checkpoint)), shared_data / DOG_CLIP)
    expected = prediction.top(5)
    assert [label for label, _ in after_import["tags"]] == [label for label, _ in expected]
    # The pipeline's sigmoid of the readout's logit(q) gives q, as kd predict does (a softmax would not).
    np.testing.assert_allclose([s for _, s in after_import["tags"]], [p for _, p in expected], atol=1e-4)
    np.testing.assert_allclose(torch.tensor(remote["logits"]).sigmoid(), prediction.clip_probs, atol=1e-4)

    # kd reads what kd writes: the export directory is a model name for eval, predict and niah.
    tagger = load_tagger(str(out))
    assert tagger.labels == audioset_labels() and tagger.sample_rate == 16000
    np.testing.assert_allclose(
        predict_file(tagger, shared_data / DOG_CLIP).clip_probs, prediction.clip_probs, atol=1e-5
    )


def test_onnx_export_has_dynamic_time_axis(student_checkpoint: Path, onnx_export: Path) -> None:
    import onnxruntime as ort

    from kd.students.checkpoint import load_student

    session = ort.InferenceSession(str(onnx_export))
    model, _ = load_student(student_checkpoint)
    for seconds, batch in ((10, 2), (60, 1)):
        wave = torch.randn(batch, 16000 * seconds) * 0.1
        (got,) = session.run(None, {"waveform": wave.numpy()})
        with torch.no_grad():
            expected = model(wave).numpy()
        assert got.shape == (batch, 527)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
        # The readout is in the graph: its probabilities are one distribution.
        np.testing.assert_allclose(torch.sigmoid(torch.from_numpy(got)).sum(-1), 1.0, atol=1e-4)


def test_onnx_export_carries_labels_and_rate_so_kd_reads_it(student_checkpoint: Path, onnx_export: Path) -> None:
    import onnx

    from kd.use.models import load_tagger

    props = {p.key: p.value for p in onnx.load(str(onnx_export)).metadata_props}
    declared = json.loads(props["kd_declaration"])
    assert declared["sample_rate"] == 16000 and declared["labels"]["names"][0] == "Speech"
    assert not onnx_export.with_suffix(".json").exists()  # no sidecar needed
    wave = torch.randn(1, 16000 * 3) * 0.1
    expected = load_tagger(str(student_checkpoint))(wave)
    for spec in (f"onnx:{onnx_export}", str(onnx_export)):
        tagger = load_tagger(spec)
        assert tagger.labels == audioset_labels() and tagger.sample_rate == 16000
        torch.testing.assert_close(tagger(wave), expected, atol=1e-4, rtol=0)


def test_torchscript_onnx_exporter_is_still_there() -> None:
    # kd's ONNX export needs the TorchScript exporter (dynamo=False): the dynamo exporter specialises the waveform
    # to the example's length. When torch drops it, this fails first; docs/commands-eval.md lists what the move needs.
    assert "dynamo" in inspect.signature(torch.onnx.export).parameters, (
        "torch.onnx.export lost its dynamo= switch: the TorchScript exporter kd.use.export uses is gone; "
        "port export_onnx to the dynamo exporter (see docs/commands-eval.md, 'Moving to the dynamo exporter')"
    )


def test_onnx_graph_time_axis_is_symbolic(onnx_export: Path) -> None:
    import onnx

    graph = onnx.load(str(onnx_export)).graph
    (waveform,) = graph.input
    dims = waveform.type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "samples"], "the exporter froze the input length"


def test_export_refuses_bad_formats(student_checkpoint: Path, tmp_path: Path) -> None:
    from kd.use.export import export_student

    with pytest.raises(ConfigError, match="--format"):
        export_student(student_checkpoint, "tflite", tmp_path / "x")
    with pytest.raises(ConfigError, match=".onnx"):
        export_student(student_checkpoint, "onnx", tmp_path / "x.bin")


def test_export_refuses_targets_in_the_way_and_bad_opsets_leaving_them_untouched(
    student_checkpoint: Path, tmp_path: Path
) -> None:
    existing = tmp_path / "notes.txt"
    existing.write_text("mine")
    other = tmp_path / "project"
    other.mkdir()
    (other / "data.csv").write_text("a,b\n")
    cases = [
        (["--format", "hf", "--out", str(existing)], "a file is in the way"),
        (["--format", "hf", "--out", str(other)], "holds other files"),
        (["--format", "hf", "--out", str(existing / "sub")], "is a file, not a directory"),
        (["--format", "onnx", "--out", str(tmp_path / "s.onnx"), "--opset", "3"], "--opset 3"),
        (["--format", "onnx", "--out", str(tmp_path / "s.onnx"), "--opset", "99"], "--opset 99"),
    ]
    for args, message in cases:
        done = run_kd("export", str(student_checkpoint), *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.startswith("kd: error:") and message in done.stderr and "Traceback" not in done.stderr
        assert "wrote" not in done.stdout
    assert existing.read_text() == "mine" and sorted(p.name for p in other.iterdir()) == ["data.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "project"]
