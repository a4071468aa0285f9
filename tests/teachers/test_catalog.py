"""The teacher catalog: every registered teacher listed from its card and architecture, never from its weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kd.core.weights import weights_cache_dir
from kd.teachers import create_teacher, teacher_names
from kd.teachers.ast import ast_parameter_count
from kd.teachers.catalog import NO_WEIGHTS, describe_teachers

# Teachers whose architecture is only known once a checkpoint names it.
FROM_CHECKPOINT = {"onnx", "ast/hf", "dass"}


@pytest.fixture(scope="module")
def rows() -> dict:
    return {row.name: row for row in describe_teachers()}


def _refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError("the catalog must not read or fetch weights")


def test_every_registered_teacher_is_listed_without_touching_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "load", _refuse)
    monkeypatch.setattr("kd.core.weights.download", _refuse)
    rows = describe_teachers()
    assert [row.name for row in rows] == teacher_names()
    for row in rows:
        assert row.description and row.description != "(not described)", row.name
        if row.name in FROM_CHECKPOINT:
            assert row.sample_rate is None and row.num_parameters is None and row.weights_present is None
            continue
        assert row.sample_rate in (16000, 32000) and row.num_classes > 0 and row.label_space, row.name
        if row.runtime == "torch":
            assert row.num_parameters > 0, row.name
        else:
            assert row.num_parameters is None, row.name


def test_counts_and_classes_of_known_teachers(rows: dict) -> None:
    assert rows["efficientat/mn04_as"].num_parameters == pytest.approx(0.98e6, rel=0.01)
    assert (rows["yamnet"].num_classes, rows["yamnet"].label_space, rows["yamnet"].runtime) == (521, "yamnet", "tflite")
    assert rows["ced/tiny"].num_parameters == pytest.approx(5.5e6, rel=0.05)  # CED-Tiny: 5.5 M (upstream README)
    assert rows["toy/tiny16k"].weights_from == NO_WEIGHTS and rows["toy/tiny16k"].weights_present is None
    assert rows["efficientat/mn04_as"].weights_from.startswith("https://github.com/fschmid56/EfficientAT/")
    assert rows["ast/audioset-10-10-0.4593"].weights_from == "hf:MIT/ast-finetuned-audioset-10-10-0.4593"


@pytest.mark.parametrize("stride", [10, 16])
def test_ast_count_from_config_equals_the_transformers_model(stride: int) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.ASTConfig(frequency_stride=stride, time_stride=stride, max_length=1024, num_labels=527)
    with torch.device("meta"):
        model = transformers.ASTForAudioClassification(config)
    assert ast_parameter_count(stride, 527) == sum(p.numel() for p in model.parameters())


def test_presence_is_the_kd_cache_or_an_explicit_path(tmp_path: Path) -> None:
    before = {row.name: row for row in describe_teachers()}
    assert before["ced/tiny"].weights_present is False
    cached = weights_cache_dir() / "ced_tiny.pt"
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(b"")
    try:
        after = {row.name: row for row in describe_teachers({"ced/mini": tmp_path / "absent.pt", "onnx": tmp_path})}
    finally:
        cached.unlink()
    assert after["ced/tiny"].weights_present is True
    assert after["ced/mini"].weights_present is False
    assert after["onnx"].weights_present is True


def test_catalog_cards_equal_the_built_teachers_cards(shared_data: Path) -> None:
    from kd.teachers.catalog import ENTRIES

    built = {
        "toy/tiny16k": create_teacher("toy/tiny16k"),
        "toy/partial32k": create_teacher("toy/partial32k"),
        "efficientat/mn04_as": create_teacher(
            "efficientat/mn04_as", checkpoint=shared_data / "weights" / "efficientat_mn04_as.pt"
        ),
    }
    for name, teacher in built.items():
        entry = ENTRIES[name]()
        assert entry.card == teacher.card, name
        assert entry.count_parameters() == teacher.num_parameters(), name
    pytest.importorskip("ai_edge_litert")
    yamnet = create_teacher("yamnet", checkpoint=shared_data / "weights" / "yamnet.tflite")
    assert ENTRIES["yamnet"]().card == yamnet.card


def test_passt_card_front_end_is_the_built_front_end() -> None:
    from kd.core.frontends import EfficientATMel
    from kd.teachers.passt import PASST_FRONTEND_SETTINGS, PASST_MEL

    assert EfficientATMel(PASST_MEL).settings() == PASST_FRONTEND_SETTINGS
