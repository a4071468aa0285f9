"""Shared fixtures: the real data in ../shared/data, and tiny real-format files for failure cases."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("KD_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()

# The AudioSet label file is third-party data: tests read the shared copy, exactly as a user points kd at theirs.
if (SHARED_DATA / "labels" / "class_labels_indices.csv").is_file():
    os.environ.setdefault("KD_AUDIOSET_LABELS", str(SHARED_DATA / "labels" / "class_labels_indices.csv"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real clips, weights and labels; tests that need them skip when ../shared/data is absent."""
    if not (SHARED_DATA / "clips.csv").is_file():
        pytest.skip(f"real test data not found at {SHARED_DATA} (set KD_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never see (or fill) the user's ~/.cache/kd.
    monkeypatch.setenv("KD_CACHE", str(tmp_path_factory.getbasetemp() / "kd-cache"))


@pytest.fixture()
def bad_audio(tmp_path: Path, shared_data: Path) -> dict[str, Path]:
    """Real-format broken files: missing, empty, truncated wav and mp3, random bytes, a text file."""
    import numpy as np

    good_wav = (shared_data / "clips" / "freesound_dog.wav").read_bytes()
    good_mp3 = (shared_data / "clips" / "panns_R9_ZSCveAHg_7s.mp3").read_bytes()
    files = {
        "missing": tmp_path / "missing.wav",
        "empty": tmp_path / "empty.wav",
        "truncated_wav": tmp_path / "truncated.wav",
        "truncated_mp3": tmp_path / "truncated.mp3",
        "corrupt": tmp_path / "corrupt.flac",
        "text": tmp_path / "notes.wav",
    }
    files["empty"].write_bytes(b"")
    files["truncated_wav"].write_bytes(good_wav[: len(good_wav) // 2])
    files["truncated_mp3"].write_bytes(good_mp3[: len(good_mp3) // 2])
    files["corrupt"].write_bytes(b"fLaC" + np.random.default_rng(0).bytes(4096))
    files["text"].write_text("this is not audio\n")
    return files
