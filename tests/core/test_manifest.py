"""Manifests: CSV/TSV/JSONL/directory, stable ids, and every problem reported at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kd.core.errors import ManifestError
from kd.core.labels import audioset_labels
from kd.core.manifest import load_manifest, summarise_manifest, write_manifest


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


def test_paths_with_dots_and_symlinks_resolve_from_the_manifest_folder(shared_data, tmp_path, monkeypatch):
    audio = tmp_path / "data" / "audio"
    audio.mkdir(parents=True)
    (audio / "x.wav").write_bytes((shared_data / "clips" / "tflite_speech.wav").read_bytes())
    lists = tmp_path / "data" / "lists"
    lists.mkdir()
    (lists / "m.csv").write_text("path\n../audio/x.wav\n")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "m").symlink_to(lists)  # the manifest's folder reached through a symlink
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for source in (tmp_path / "m" / "m" / "m.csv", Path("../m/m/m.csv")):
        manifest = load_manifest(source)
        assert Path(manifest.clips[0].path) == (audio / "x.wav").resolve()
        assert manifest.clips[0].id == "../audio/x.wav"
        # Outside the manifest's folder a store records the absolute path, never one relative to the cwd.
        assert manifest.to_records()[0]["path"] == str((audio / "x.wav").resolve())
    written = write_manifest(load_manifest(tmp_path / "m" / "m" / "m.csv"), tmp_path / "out" / "again.csv")
    assert Path(load_manifest(written).clips[0].path) == (audio / "x.wav").resolve()


def test_byte_order_mark_and_newlines_in_file_names(shared_data, tmp_path):
    (tmp_path / "a.wav").write_bytes((shared_data / "clips" / "tflite_speech.wav").read_bytes())
    (tmp_path / "bom.csv").write_bytes("\ufeffpath,labels\na.wav,Speech\n".encode())
    assert load_manifest(tmp_path / "bom.csv").clips[0].labels == ("Speech",)
    odd = tmp_path / "audio" / "two\nlines.wav"
    odd.parent.mkdir()
    odd.write_bytes((tmp_path / "a.wav").read_bytes())
    for suffix in (".csv", ".tsv", ".jsonl"):
        written = write_manifest(load_manifest(tmp_path / "audio"), tmp_path / f"back{suffix}")
        assert [Path(c.path).name for c in load_manifest(written).clips] == ["two\nlines.wav"]


@pytest.mark.parametrize("segment", ["nan,", ",inf", "inf,", "1,nan", ",0", "-inf,2"])
def test_non_finite_or_empty_segments_are_refused(tmp_path, segment):
    (tmp_path / "a.wav").write_bytes(b"x")
    (tmp_path / "m.csv").write_text(f"path,start,end\na.wav,{segment}\n")
    with pytest.raises(ManifestError, match="bad segments"):
        load_manifest(tmp_path / "m.csv", check_files=False)
