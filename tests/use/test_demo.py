"""The main job's demo set for a clone without ../shared: pinned files, the checksum check, the offline message.
Nothing here downloads: sources are local file:// URLs or a network that always fails."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from kd.cli import app
from kd.core.download import sha256_of
from kd.core.errors import KdError
from kd.core.manifest import load_manifest
from kd.core.weights import weights_cache_dir
from kd.use.demo import DEMO_CLIPS, fetch_demo

_URLOPEN = urllib.request.urlopen


def _offline(*args: object, **kwargs: object) -> None:
    raise urllib.error.URLError("network is unreachable")


def _file_only(url: str, *args: object, **kwargs: object):
    """urlopen for local files; no network."""
    return _URLOPEN(url, *args, **kwargs) if str(url).startswith("file:") else _offline()


def test_pins_are_the_shared_copies_and_a_local_source_makes_a_loadable_manifest(
    shared_data, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", _file_only)
    by_sha = {sha256_of(p): p for p in (shared_data / "clips").iterdir()}
    assert all(clip.sha256 in by_sha for clip in DEMO_CLIPS)
    assert len({clip.url for clip in DEMO_CLIPS}) == len(DEMO_CLIPS)
    assert all(clip.url.startswith("https://raw.githubusercontent.com/") for clip in DEMO_CLIPS)
    local = tuple(replace(clip, url=by_sha[clip.sha256].as_uri()) for clip in DEMO_CLIPS[:3])
    weights_cache_dir().mkdir(parents=True, exist_ok=True)  # as if fetched before: the teacher's cache file
    shutil.copy(shared_data / "weights" / "efficientat_mn04_as.pt", weights_cache_dir() / "efficientat_mn04_as.pt")
    manifest = fetch_demo(local, target=tmp_path / "demo")
    loaded = load_manifest(manifest)
    assert [c.labels for c in loaded.clips] == [tuple(clip.labels.split(";")) for clip in local]
    assert all(sha256_of(c.path) == clip.sha256 for c, clip in zip(loaded.clips, local, strict=True))


def test_a_file_that_does_not_match_its_pin_is_not_kept(shared_data, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", _file_only)
    wrong = replace(DEMO_CLIPS[0], url=(shared_data / "clips" / "scaper_dogbark.wav").as_uri())
    with pytest.raises(KdError, match="sha256 mismatch"):
        fetch_demo((wrong,), target=tmp_path / "demo")
    assert not (tmp_path / "demo" / "clips" / wrong.name).exists()
    assert not list((tmp_path / "demo" / "clips").iterdir())  # no partial file either


def test_offline_without_shared_data_says_what_it_needs(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", _offline)
    monkeypatch.setenv("KD_CACHE", str(tmp_path / "cache"))
    with pytest.raises(KdError) as error:
        CliRunner().invoke(app, ["fetch-demo"], catch_exceptions=False)
    message = str(error.value)
    assert "network is unreachable" in message and DEMO_CLIPS[0].url in message
    assert "efficientat_mn04_as.pt" in message  # the weights too
    assert "KD_SHARED_DATA" in message and "MANIFEST=" in message
    assert not (tmp_path / "cache" / "demo" / "clips.csv").exists()
