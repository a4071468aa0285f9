"""kd eval: label resolution, exact mAP through the whole pipeline, real mn04 figures, student checkpoints, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from kd.core.errors import ConfigError
from kd.core.labels import LabelSpace, audioset_labels, resolve_labels
from kd.use.evaluate import evaluate
from kd.use.models import Tagger, load_tagger


def _length_oracle(table: dict[int, list[float]]) -> Tagger:
    """A tagger whose probabilities are looked up by input length in seconds (16 kHz)."""
    labels = LabelSpace("abc", ("/m/a", "/m/b", "/m/c"), ("Alpha", "Beta", "Gamma"))

    def forward(waves: torch.Tensor) -> torch.Tensor:
        probs = torch.tensor([table[round(waves.shape[-1] / 16000)]])
        return torch.logit(probs.double()).float()

    return Tagger("oracle", "teacher", 16000, labels, torch.device("cpu"), forward)


def _manifest(tmp_path: Path, rows: list[tuple[float, str]]) -> Path:
    lines = ["path,labels"]
    for i, (seconds, labels) in enumerate(rows):
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, np.zeros(int(seconds * 16000), dtype=np.float32), 16000)
        lines.append(f"{path.name},{labels}")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "m.csv"


def test_exact_map_through_the_pipeline(tmp_path: Path) -> None:
    # Alpha ranks its clips positive, negative, positive, negative -> AP 5/6; Beta's one positive ranks first -> 1.
    # Gamma has no positive clip: left out and counted. Clips are told apart by their lengths (1..4 s).
    manifest = _manifest(tmp_path, [(1, "Alpha"), (2, "/m/b"), (3, "Alpha"), (4, "")])
    table = {1: [0.9, 0.2, 0.5], 2: [0.8, 0.7, 0.5], 3: [0.7, 0.1, 0.5], 4: [0.1, 0.3, 0.5]}
    report = evaluate(_length_oracle(table), manifest, progress=False)
    # Clip 4 has no labels and is skipped: Alpha over clips 1-3 ranks 1, 0, 1 -> AP (1 + 2/3) / 2.
    assert report.clips == 3
    assert report.metrics.ap[0] == pytest.approx((1 + 2 / 3) / 2)
    assert report.metrics.ap[1] == pytest.approx(1.0)
    assert report.metrics.mAP == pytest.approx(((1 + 2 / 3) / 2 + 1.0) / 2)
    assert report.metrics.classes_without_positives == 1
    assert report.seconds == pytest.approx(6.0)


def test_labels_resolve_by_name_mid_or_through_audioset() -> None:
    audioset = audioset_labels()
    names_only = LabelSpace("names", ("", ""), ("Dog", "Speech"))
    resolved = resolve_labels([["Dog"], [audioset.mids[audioset.index("Speech")]], ["Music", "Dog"]], names_only)
    assert resolved.targets.tolist() == [[True, False], [False, True], [True, False]]
    assert resolved.unresolved == {"Music": 1}


def test_unknown_model_specs_are_user_errors() -> None:
    with pytest.raises(ConfigError, match="checkpoint not found"):
        load_tagger("missing/student.pt")
    with pytest.raises(ConfigError, match="not a checkpoint file"):
        load_tagger("no/such-teacher")


def test_a_folder_that_is_not_a_kd_export_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no config.json"):
        load_tagger(str(tmp_path))
    (tmp_path / "config.json").write_text('{"model_type": "wav2vec2"}')
    with pytest.raises(ConfigError, match="not a kd export"):
        load_tagger(str(tmp_path))


def test_student_checkpoint_evaluates(tmp_path: Path, shared_data: Path) -> None:
    from kd.students import create_student
    from kd.students.checkpoint import save_checkpoint

    model = create_student("dass-tiny", num_classes=527)
    state = {"student": "dass-tiny", "student_kwargs": {"num_classes": 527}, "labels": audioset_labels().to_json()}
    path = save_checkpoint({**state, "model": model.state_dict(), "ema": None}, tmp_path / "student.pt")
    tagger = load_tagger(str(path))
    assert (tagger.kind, tagger.sample_rate, len(tagger.labels)) == ("student", 16000, 527)
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,start,end,labels\n"
        f"{shared_data}/clips/freesound_dog.wav,0,2,Dog\n"
        f"{shared_data}/clips/efficientat-demo_speech.wav,0,2,Speech\n"
    )
    report = evaluate(tagger, manifest, progress=False)
    assert report.clips == 2 and 0.0 < report.metrics.mAP <= 1.0
    with torch.no_grad():
        wave = torch.randn(1, 16000)
        assert torch.allclose(tagger(wave), model.eval()(wave), atol=1e-5)
    # The same checkpoint named as a teacher (dass:PATH.pt) is not mistaken for a missing student file.
    as_teacher = load_tagger(f"dass:{path}")
    assert as_teacher.kind == "teacher" and as_teacher.labels == tagger.labels
    torch.testing.assert_close(as_teacher(wave), tagger(wave), atol=1e-5, rtol=1e-5)


def _short_clips(shared_data: Path, count: int) -> list[tuple[str, str]]:
    import csv

    rows = list(csv.DictReader((shared_data / "clips.csv").open()))
    rows.sort(key=lambda r: (shared_data / r["path"]).stat().st_size)
    return [(str(shared_data / r["path"]), r["labels"]) for r in rows if r["labels"]][:count]


def test_mn04_teacher_on_real_clips_and_cli(tmp_path: Path, shared_data: Path) -> None:
    from typer.testing import CliRunner

    from kd.cli import app

    manifest = tmp_path / "real.csv"
    lines = ["path,labels"] + [f'{p},"{labels}"' for p, labels in _short_clips(shared_data, 10)]
    manifest.write_text("\n".join(lines) + "\n")
    out = tmp_path / "eval.json"
    weights = shared_data / "weights" / "efficientat_mn04_as.pt"
    result = CliRunner().invoke(
        app, ["eval", "efficientat/mn04_as", str(manifest), "--checkpoint", str(weights), "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["clips"] == 10 and data["label_space"] == "audioset"
    # A real AudioSet tagger ranks these labelled clips far above chance (the 52-clip figure is in the docs).
    assert data["mAP"] > 0.5 and data["mean_auc"] > 0.85 and data["d_prime"] > 1.5
    assert data["classes_scored"] + data["classes_without_positives"] == 527
    assert "mAP" in result.output
