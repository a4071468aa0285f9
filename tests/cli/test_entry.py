"""The `kd` executable on a broken install: one line naming the fix, exit 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _kd(args: list[str], shadow: Path | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin"}
    if shadow is not None:
        env["PYTHONPATH"] = str(shadow)  # ahead of site-packages: a stand-in for a torchaudio that cannot load
    code = "import sys; sys.argv = ['kd', *sys.argv[1:]]; from kd.entry import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("args", [["--help"], ["teachers"]])
def test_broken_torchaudio_gives_one_line(tmp_path: Path, args: list[str]) -> None:
    fake = tmp_path / "torchaudio"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "raise OSError('libtorchaudio.so: undefined symbol: torch_exception_get_what_without_backtrace')\n"
    )
    result = _kd(args, shadow=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kd: error: torchaudio failed to load (OSError: libtorchaudio.so: undefined symbol")
    assert lines[0].endswith("reinstall with scripts/setup-env.sh")
    assert "Traceback" not in result.stderr


def test_import_kd_needs_no_torch(tmp_path: Path) -> None:
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('broken torch')\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", "import kd; print(kd.__version__)"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0 and result.stdout.strip() and not result.stderr


def test_working_install_runs_the_cli() -> None:
    result = _kd(["--help"])
    assert result.returncode == 0, result.stderr
    assert "dump-teachers" in result.stdout
