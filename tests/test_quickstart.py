"""examples/quickstart.py runs as documented (docs/python-api.md) and leaves a store, a run and its figures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kd.stores import LogitStore
from kd.students.checkpoint import read_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_dumps_trains_evaluates_and_predicts(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "quickstart"
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "quickstart.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KD_SHARED_DATA": str(shared_data)},
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    assert lines["dump"].startswith("10 views")
    assert lines["train"].startswith("step 4,")
    assert lines["eval"].startswith("mAP ") and lines["eval"].endswith("over 5 clips")
    assert len(lines["predict"].split(", ")) >= 3
    store = LogitStore(str(out / "store.zarr"))
    assert store.teacher_names() == ["toy/tiny16k"] and (store.num_clips, store.num_views) == (5, 2)
    assert store.teacher("toy/tiny16k").k == 8
    assert read_checkpoint(out / "run" / "last.pt")["step"] == 4
