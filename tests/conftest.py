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
