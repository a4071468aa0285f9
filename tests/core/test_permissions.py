"""Files kd writes through a temp file (checkpoints, downloaded weights) and exports get the umask's mode, as
`config.json` does, so a team on a shared filesystem can read each other's runs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from kd.core.download import download, sha256_of
from kd.core.permissions import current_umask
from kd.students.checkpoint import save_checkpoint


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request: pytest.FixtureRequest):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_checkpoint_and_download_follow_the_umask(umask: int, tmp_path: Path) -> None:
    assert current_umask() == umask
    plain = tmp_path / "config.json"
    plain.write_text("{}")
    assert _mode(plain) == 0o666 & ~umask
    checkpoint = save_checkpoint({"step": 1, "w": torch.ones(2)}, tmp_path / "run" / "last.pt")
    assert _mode(checkpoint) == _mode(plain)
    source = tmp_path / "weights.bin"
    source.write_bytes(b"weights")
    os.chmod(source, 0o600)  # the download's mode must not come from the source's
    fetched = download(source.as_uri(), tmp_path / "cache" / "w.bin", sha256=sha256_of(source))
    assert fetched.read_bytes() == b"weights" and _mode(fetched) == _mode(plain)


def test_hf_export_follows_the_umask(tmp_path: Path) -> None:
    from kd.core.labels import audioset_labels
    from kd.students import create_student
    from kd.use.export import export_student

    model = create_student("dass-tiny")
    state = {"student": "dass-tiny", "student_kwargs": {}, "labels": audioset_labels().to_json()}
    checkpoint = save_checkpoint({**state, "model": model.state_dict(), "ema": None}, tmp_path / "last.pt")
    old = os.umask(0o027)
    try:
        out = export_student(checkpoint, "hf", tmp_path / "hf")
    finally:
        os.umask(old)
    modes = {p.name: _mode(p) for p in out.rglob("*") if p.is_file()}
    assert "model.safetensors" in modes and set(modes.values()) == {0o640}, modes
    assert _mode(out) == 0o750
