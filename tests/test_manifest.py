"""Manifests: CSV/TSV/JSONL/directory, stable ids, and every problem reported at once."""

from __future__ import annotations

import json

import pytest

from kd.errors import ManifestError
from kd.labels import audioset_labels
from kd.manifest import load_manifest, summarise_manifest, write_manifest


def test_shared_clips_csv_loads(shared_data):
    manifest = load_manifest(shared_data / "clips.csv", labels=audioset_labels())
    assert len(manifest) == 52
    assert manifest.clips[0].id == "clips/efficientat-demo_music.wav"
    assert manifest.clips[3].labels == ("Rail transport", "Train", "Subway, metro, underground")


def test_ids_are_stable_and_relative(shared_data, tmp_path):
    a = load_manifest(shared_data / "clips.csv")
    b = load_manifest(shared_data / "clips.csv")
    assert [c.id for c in a.clips] == [c.id for c in b.clips]
    assert all(not c.id.startswith("/") for c in a.clips)


def test_directory_scan(shared_data):
    manifest = load_manifest(shared_data / "clips")
    assert len(manifest) == 52
    assert manifest.clips[0].id == "efficientat-demo_music.wav"


def test_all_formats_round_trip(shared_data, tmp_path):
    manifest = load_manifest(shared_data / "clips.csv")
    for suffix in ("csv", "tsv", "jsonl"):
        out = write_manifest(manifest, tmp_path / "sub" / f"m.{suffix}")
        again = load_manifest(out)
        assert [(c.id, c.path, c.labels) for c in again.clips] == [(c.id, c.path, c.labels) for c in manifest.clips]


def test_segments_ids_and_mids(shared_data, tmp_path):
    rows = [
        {"path": str(shared_data / "clips" / "freesound_rain.wav"), "start": 1, "end": 3, "labels": "/m/06mb1"},
        {"path": str(shared_data / "clips" / "freesound_rain.wav"), "start": 3, "end": 5},
    ]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = load_manifest(tmp_path / "m.jsonl", labels=audioset_labels())
    assert [c.id for c in manifest.clips][1].endswith("freesound_rain.wav@3-5")
    assert summarise_manifest(manifest).hours == pytest.approx(4 / 3600)


def test_every_problem_is_reported_together(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    (tmp_path / "m.csv").write_text(
        "id,path,labels,start,end\nx,a.wav,Dog,,\nx,b.wav,Not a class,,\ny,c.wav,Speech;Nope,2,1\n"
    )
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path / "m.csv", labels=audioset_labels())
    message = str(info.value)
    assert "duplicate ids: x" in message and "missing files" in message and "b.wav" in message
    assert "'Not a class'" in message and "bad segments" in message


def test_unreadable_clips_are_listed_together(bad_audio, tmp_path):
    (tmp_path / "m.csv").write_text(f"path\n{bad_audio['empty']}\n{bad_audio['text']}\n")
    with pytest.raises(ManifestError, match="2 unreadable clips"):
        summarise_manifest(load_manifest(tmp_path / "m.csv"))


def test_unknown_manifest_type(tmp_path):
    (tmp_path / "m.xlsx").write_text("x")
    with pytest.raises(ManifestError, match="unknown manifest type"):
        load_manifest(tmp_path / "m.xlsx")
