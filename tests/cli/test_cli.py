"""The CLI: listings work, and user errors are one line on stderr with exit code 2 (no traceback)."""

from __future__ import annotations

from tests.helpers import run_kd


def test_manifest_summary(shared_data, tmp_path):
    result = run_kd("manifest", str(shared_data / "clips.csv"), "--out", str(tmp_path / "m.jsonl"))
    assert result.returncode == 0, result.stderr
    assert "52" in result.stdout and "Animal" in result.stdout
    assert len((tmp_path / "m.jsonl").read_text().splitlines()) == 52


def test_teachers_and_students_listings():
    teachers = run_kd("teachers")
    assert teachers.returncode == 0, teachers.stderr
    assert "efficientat/mn04_as" in teachers.stdout and "yamnet" in teachers.stdout
    students = run_kd("students")
    assert students.returncode == 0 and "dass-small" in students.stdout and "chunked" in students.stdout


def test_user_errors_are_one_line_exit_2(tmp_path, shared_data):
    manifest = tmp_path / "one.csv"
    manifest.write_text(f"path\n{shared_data / 'clips' / 'scaper_dogbark.wav'}\n")
    cases = [
        ("manifest", str(tmp_path / "missing.csv")),
        ("store", "info", str(tmp_path / "missing.zarr")),
        ("dump-teachers", str(tmp_path / "missing.csv"), str(tmp_path / "s.zarr"), "-t", "toy/tiny16k"),
        ("dump-teachers", str(tmp_path), str(tmp_path / "s.zarr"), "-t", "toy/tiny16k"),
        ("dump-teachers", str(manifest), str(tmp_path / "s.zarr"), "-t", "no/such-teacher"),
        ("dump-teachers", str(manifest), str(tmp_path / "s.zarr"), "-t", "toy/tiny16k", "--views", "0"),
    ]
    for args in cases:
        result = run_kd(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("kd: error:"), (args, result.stderr)
    assert not (tmp_path / "s.zarr").exists()


def test_offline_teacher_without_weights_says_how_to_supply_them(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    result = run_kd("dump-teachers", str(tmp_path), str(tmp_path / "s.zarr"), "-t", "efficientat/mn10_as")
    assert result.returncode == 2 and "--checkpoint" in result.stderr


def test_version_env_and_completion() -> None:
    import json

    from typer.testing import CliRunner

    import kd
    from kd.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["--version"]).stdout.strip() == f"kd {kd.__version__}"
    env = json.loads(runner.invoke(app, ["env", "--json"]).stdout)
    import torch

    assert env["versions"]["torch"] == torch.__version__.split("+")[0] or env["versions"]["torch"] == torch.__version__
    assert {"kd", "torchaudio", "zarr"} <= set(env["versions"])
    assert env["scan backends"]["chunked"] == "available" and env["scan backends"]["mamba_ssm"] != ""
    assert "weights cache" in env["paths"] and "cuda" in env["devices"]
    completion = runner.invoke(app, ["--show-completion", "bash"])
    assert completion.exit_code == 0 and "complete" in completion.stdout


def test_tables_off_a_terminal_never_cut_names() -> None:
    from typer.testing import CliRunner

    from kd.cli import app
    from kd.teachers import teacher_names

    result = CliRunner(env={"COLUMNS": "80"}).invoke(app, ["teachers"])
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    names = [name for name in teacher_names() if not name.endswith(":")]
    assert names and all(name in result.stdout for name in names)
