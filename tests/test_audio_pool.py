"""scripts/audio_pool.py offline: the keep rule, probing a fake extracted tree, the even subset, the manifest."""

import importlib.util
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kd.core.manifest import load_manifest

soundfile = pytest.importorskip("soundfile")

_SPEC = importlib.util.spec_from_file_location("audio_pool", Path(__file__).parents[1] / "scripts" / "audio_pool.py")
audio_pool = importlib.util.module_from_spec(_SPEC)
sys.modules.setdefault("audio_pool", audio_pool)  # dataclasses look their module up there
_SPEC.loader.exec_module(audio_pool)

FAKE = audio_pool.PoolPackage(
    "fake-data",
    "1.0-1",
    "0" * 64,
    "CC0",
    include=(r"/sounds/",),
    exclude=(r"/sounds/music/", r"_desc"),
    archives=(r"\.pk3$",),
)


def _wav(path: Path, seconds: float, sr: int = 8000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), np.zeros(int(seconds * sr), dtype="float32"), sr)
    return path


def test_keeps_included_audio_and_drops_excluded():
    assert FAKE.keeps("usr/share/fake/sounds/dog.ogg")
    assert FAKE.keeps("usr/share/fake/sounds/rain.WAV")
    assert not FAKE.keeps("usr/share/fake/sounds/dog.png")
    assert not FAKE.keeps("usr/share/fake/sounds/music/theme.ogg")
    assert not FAKE.keeps("usr/share/fake/sounds/dog_desc_en.ogg")
    assert not FAKE.keeps("usr/share/fake/voice/hello.ogg")
    assert FAKE.is_archive("usr/share/fake/base/0snd.pk3")


def test_every_pinned_package_is_well_formed():
    names = [p.name for p in audio_pool.PACKAGES]
    assert len(names) == len(set(names))
    for package in audio_pool.PACKAGES:
        assert len(package.sha256) == 64 and int(package.sha256, 16) >= 0
        assert package.version and package.licence and package.include


def test_archive_members_are_filtered(tmp_path):
    src = _wav(tmp_path / "src.wav", 1.0)
    archive = tmp_path / "a.pk3"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(src, "x/sounds/door.wav")
        z.write(src, "x/sounds/music/song.wav")
    written = audio_pool._extract_archive(FAKE, archive, tmp_path / "out")
    assert [p.relative_to(tmp_path / "out").as_posix() for p in written] == ["x/sounds/door.wav"]


def test_probe_drops_short_and_undecodable_and_manifest_loads(tmp_path):
    pkg_dir = tmp_path / "fake-data"
    _wav(pkg_dir / "usr/sounds/dog.wav", 1.0)
    _wav(pkg_dir / "usr/sounds/rain.wav", 2.0)
    _wav(pkg_dir / "usr/sounds/click.wav", 0.1)
    (pkg_dir / "usr/sounds/broken.ogg").write_bytes(b"not audio")
    whole = _wav(pkg_dir / "usr/sounds/cut.wav", 2.0).read_bytes()
    (pkg_dir / "usr/sounds/cut.wav").write_bytes(whole[: len(whole) // 2])  # its header promises 2 s
    result = audio_pool.probe_clips(FAKE, tmp_path, pkg_dir)
    assert [p for p, _ in result.clips] == ["fake-data/usr/sounds/dog.wav", "fake-data/usr/sounds/rain.wav"]
    assert (result.too_short, result.undecodable) == (1, 2)
    assert result.summary()["hours"] == pytest.approx(3 / 3600, abs=1e-3)
    manifest = audio_pool.write_pool_manifest(audio_pool.even_subset([result], None), tmp_path / "manifest.csv")
    loaded = load_manifest(manifest)
    assert [c.id for c in loaded.clips] == ["fake-data/usr/sounds/dog.wav", "fake-data/usr/sounds/rain.wav"]
    assert all(c.labels == () for c in loaded.clips)


def test_even_subset_shares_between_packages_and_is_seeded():
    big = audio_pool.PackageResult("big", "1", "CC0", clips=[(f"big/{i}.wav", 1.0) for i in range(10)])
    small = audio_pool.PackageResult("small", "1", "CC0", clips=[("small/0.wav", 1.0)])
    rows = audio_pool.even_subset([big, small], 4, seed=3)
    assert len(rows) == 4 and sum(r[1] == "small" for r in rows) == 1
    assert rows == audio_pool.even_subset([big, small], 4, seed=3)
    assert len(audio_pool.even_subset([big, small], None)) == 11
    assert len(audio_pool.even_subset([big, small], 100)) == 11
