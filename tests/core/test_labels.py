"""Label spaces: AudioSet loads in order, ontology links, mapping by mid or exact name reports what did not map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kd.core.errors import LabelError
from kd.core.labels import LabelSpace, audioset_labels, load_label_csv, load_label_names


def test_audioset_space_loads_527_in_order(shared_data):
    space = load_label_csv(
        shared_data / "labels" / "class_labels_indices.csv", ontology=shared_data / "labels" / "ontology.json"
    )
    assert len(space) == 527
    assert space.names[0] == "Speech" and space.mids[0] == "/m/09x0r"
    assert space.index("/m/09x0r") == 0 and space.index("Speech") == 0
    dog = space.mids[space.index("Dog")]
    assert space.mids[space.index("Domestic animals, pets")] in space.parents[dog]


def test_audioset_labels_from_env(shared_data):
    assert len(audioset_labels()) == 527


def test_audioset_labels_ship_with_kd(shared_data, monkeypatch):
    # No variable, no cache, no network: the packaged copy is the default label space.
    monkeypatch.delenv("KD_AUDIOSET_LABELS", raising=False)
    shipped = audioset_labels()
    assert shipped == load_label_csv(shared_data / "labels" / "class_labels_indices.csv")
    assert shipped.names[0] == "Speech" and len(shipped) == 527


def test_packaged_label_file_and_attribution_are_package_data():
    import fnmatch
    import tomllib

    from kd.core.labels import packaged_audioset_csv

    csv_path = packaged_audioset_csv()
    attribution = csv_path.with_name("ATTRIBUTION.md")
    assert "CC BY-SA 4.0" in attribution.read_text(encoding="utf-8")
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    globs = pyproject["tool"]["setuptools"]["package-data"]["kd"]
    for path in (csv_path, attribution):
        assert any(fnmatch.fnmatch(f"data/{path.name}", g) for g in globs), f"{path.name} would not be installed"


def test_missing_label_file_is_a_clear_error(tmp_path):
    with pytest.raises(LabelError, match="not found"):
        audioset_labels(tmp_path / "nope.csv")


def test_mapping_by_mid_then_name_reports_unmapped():
    target = LabelSpace("t", ("/m/a", "/m/b", "/m/c"), ("A", "B", "C"))
    source = LabelSpace("s", ("", "/m/a", ""), ("C", "renamed A", "Z"))
    mapping = source.map_to(target)
    np.testing.assert_array_equal(mapping.index, [2, 0, -1])
    assert mapping.unmapped_source == ["Z"]
    assert mapping.uncovered_target == ["B"]
    assert not mapping.is_identity and target.map_to(target).is_identity


def test_yamnet_names_map_onto_audioset(shared_data):
    yamnet = load_label_names(shared_data / "weights" / "yamnet_521_labels.txt", "yamnet")
    mapping = yamnet.map_to(audioset_labels())
    assert len(yamnet) == 521
    # Every YAMNet name is an AudioSet display name; six AudioSet classes have no YAMNet counterpart.
    assert mapping.unmapped_source == []
    assert len(mapping.uncovered_target) == 6
