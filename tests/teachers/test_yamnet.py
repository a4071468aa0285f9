"""YAMNet teacher: windowing, logits, labels and their AudioSet mapping, tagging quality on the shared clips."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kd.core.errors import KdError, WeightsError
from kd.core.labels import LabelSpace, audioset_labels, load_label_names
from kd.core.weights import file_sha256
from kd.teachers import create_teacher
from kd.teachers.yamnet import (
    HOP_SAMPLES,
    WINDOW_SAMPLES,
    YAMNET_WEIGHTS,
    load_yamnet_labels,
    probabilities_to_logits,
    unmapped_yamnet_classes,
    yamnet,
    yamnet_audioset_mapping,
    yamnet_windows,
)

pytest.importorskip("ai_edge_litert")

# Measured with this test's own loop: 45 of 52 shared clips have a true AudioSet label in YAMNet's top 5.
TOP5_FLOOR = 0.80


@pytest.fixture(scope="module")
def model_path(shared_data: Path) -> Path:
    return shared_data / "weights" / "yamnet.tflite"


@pytest.fixture(scope="module")
def teacher(model_path: Path):
    return yamnet(checkpoint=model_path)


@pytest.mark.parametrize(
    ("length", "windows"),
    [(1, 1), (WINDOW_SAMPLES, 1), (WINDOW_SAMPLES + 1, 2), (WINDOW_SAMPLES + HOP_SAMPLES, 2), (160000, 20)],
)
def test_windows_follow_upstream_padding(length: int, windows: int) -> None:
    wave = np.arange(1, length + 1, dtype=np.float32)
    cut = yamnet_windows(wave)
    assert cut.shape == (windows, WINDOW_SAMPLES)
    assert cut[0, 0] == 1 and cut[-1, 0] == 1 + (windows - 1) * HOP_SAMPLES
    # Every sample appears, the tail is zeros, and nothing else is invented.
    assert cut.max() == length and (cut[-1] == 0).sum() == (windows - 1) * HOP_SAMPLES + WINDOW_SAMPLES - length


def test_logits_are_finite_inverse_sigmoid() -> None:
    p = torch.tensor([0.0, 0.25, 0.5, 0.99609375, 1.0])
    logits = probabilities_to_logits(p)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(torch.sigmoid(logits[1:4]), p[1:4])
    assert logits[0] < -13 and logits[-1] > 13


def test_pinned_sha256_is_the_shared_file(model_path: Path) -> None:
    assert file_sha256(model_path) == YAMNET_WEIGHTS.sha256


def test_metadata_labels_equal_the_label_file(shared_data: Path, model_path: Path) -> None:
    from_file = load_label_names(shared_data / "weights" / "yamnet_521_labels.txt", "yamnet")
    assert load_yamnet_labels(model_path) == from_file
    assert load_yamnet_labels(model_path, shared_data / "weights" / "yamnet_521_labels.txt") == from_file
    assert len(from_file) == 521 and from_file.names[0] == "Speech"


def test_every_yamnet_class_maps_onto_audioset_by_name(teacher) -> None:
    mapping = yamnet_audioset_mapping(teacher.labels, audioset_labels())
    assert unmapped_yamnet_classes(teacher.labels) == []
    assert (mapping.index >= 0).sum() >= 500
    # AudioSet classes YAMNet dropped from its 527 (its README: too few or unreliable labels).
    assert sorted(mapping.uncovered_target) == sorted(
        [
            "Male speech, man speaking",
            "Female speech, woman speaking",
            "Battle cry",
            "Male singing",
            "Female singing",
            "Funny music",
        ]
    )


def test_unmapped_names_are_reported() -> None:
    names = ("Speech", "Not an AudioSet class", "Dog")
    labels = LabelSpace(name="yamnet", mids=("",) * len(names), names=names)
    assert unmapped_yamnet_classes(labels) == ["Not an AudioSet class"]


def test_registry_builds_the_teacher(model_path: Path) -> None:
    teacher = create_teacher("yamnet", checkpoint=model_path)
    assert teacher.card.sample_rate == 16000 and teacher.card.num_classes == 521
    assert teacher.checkpoint_sha256 == YAMNET_WEIGHTS.sha256
    assert len(teacher.labels) == 521


def test_batch_equals_one_by_one(teacher) -> None:
    waves = torch.randn(2, 20000, generator=torch.Generator().manual_seed(0)) * 0.1
    batch = teacher.logits(waves)
    assert batch.shape == (2, 521) and batch.dtype == torch.float32
    torch.testing.assert_close(batch[1:], teacher.logits(waves[1:]))


def test_missing_checkpoint_and_foreign_file_raise(shared_data: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        yamnet(checkpoint=tmp_path / "missing.tflite")
    bogus = tmp_path / "bogus.tflite"
    bogus.write_bytes(b"not a flatbuffer at all" * 10)
    with pytest.raises(WeightsError, match="not a loadable TFLite model"):
        yamnet(checkpoint=bogus, labels_path=shared_data / "weights" / "yamnet_521_labels.txt")


def test_missing_runtime_names_the_extra(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(KdError, match=r"pip install kd\[tflite\]"):
        yamnet(checkpoint=model_path)


def test_tags_real_clips(shared_data: Path, teacher) -> None:
    from kd.core.audio import load_audio

    audioset = audioset_labels()
    mapping = yamnet_audioset_mapping(teacher.labels, audioset)
    mapped = torch.from_numpy(mapping.index >= 0)
    target_index = torch.from_numpy(mapping.index[mapping.index >= 0])
    with (shared_data / "clips.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    hits = 0
    for row in rows:
        wave = load_audio(shared_data / row["path"], sample_rate=16000)
        logits = teacher.logits(wave[None])[0]
        assert torch.isfinite(logits).all()
        full = torch.full((len(audioset),), -torch.inf)
        full[target_index] = logits[mapped]
        top5 = {audioset.names[i] for i in full.topk(5).indices}
        hits += bool(top5 & set(row["labels"].split(";")))
    assert hits / len(rows) >= TOP5_FLOOR, f"{hits}/{len(rows)} clips have a true label in the top 5"
