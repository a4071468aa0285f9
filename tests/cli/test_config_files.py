"""Config files (`--config`), settings an existing store fixes, and choices the parser checks, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kd.cli import app
from kd.core.config_files import checked_values, merge_settings, read_config_file
from kd.core.errors import ConfigError
from kd.stores import LogitStore
from kd.train import LOSSES, TrainConfig
from tests.helpers import run_kd

runner = CliRunner()


def kd_in_process(*args: str) -> str:
    """Runs `kd ARGS` in this process (a subprocess costs seconds of imports); returns stdout. KdErrors propagate."""
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


CLIPS = ["scaper_dogbark.wav", "librosa_robin.ogg", "tflite_speech.wav"]


@pytest.fixture()
def manifest(shared_data: Path, tmp_path: Path) -> Path:
    path = tmp_path / "clips.csv"
    path.write_text("path,labels\n" + "".join(f"{shared_data / 'clips' / c},Dog\n" for c in CLIPS))
    return path


def _one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("kd: error:"), result.stderr
    return lines[0]


def test_file_values_are_checked_and_flags_override_them(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('store = "a.zarr"\nsteps = 7\n[train-student]\nlr = 0.002\nlabel-weight = 0.5\nsteps = 9\n')
    values = checked_values(TrainConfig, read_config_file(path, "train-student"), path)
    assert values == {"lr": 0.002, "label_weight": 0.5, "steps": 9}  # the command's table wins over the top level
    merged, given = merge_settings({"lr": 5e-4, "steps": 1000, "seed": 0}, {"steps"}, values)
    assert merged["steps"] == 1000 and merged["lr"] == 0.002 and merged["seed"] == 0
    assert given == {"steps", "lr", "label_weight"}
    with pytest.raises(ConfigError, match="'stepz'"):
        checked_values(TrainConfig, {"stepz": 3}, path)
    with pytest.raises(ConfigError, match="steps = '3' is not of type int"):
        checked_values(TrainConfig, {"steps": "3"}, path)
    with pytest.raises(ConfigError, match="not of type"):
        checked_values(TrainConfig, {"resume": 1}, path)


def test_add_a_teacher_takes_the_store_settings_and_refuses_only_explicit_conflicts(manifest, tmp_path) -> None:
    store = tmp_path / "s.zarr"
    common = ("--workers", "0", "--batch-size", "4")
    first = ["--block-size", "2", "--views", "2", "--k", "7", "--seed", "3", "--policy", "clean", "--clip-seconds", "2"]
    kd_in_process("dump-teachers", str(manifest), str(store), "-t", "toy/tiny16k", *first, *common)
    # The README's "add a teacher" line: no settings repeated.
    kd_in_process("dump-teachers", str(manifest), str(store), "-t", "toy/partial32k", *common)
    opened = LogitStore(store)
    assert opened.teacher_names() == ["toy/partial32k", "toy/tiny16k"]
    assert opened.teacher("toy/partial32k").k == 7 and bool(opened.teacher("toy/partial32k").done[:].all())
    before = sorted(p.name for p in (store / "teachers").iterdir())
    conflict = run_kd("dump-teachers", str(manifest), str(store), "-t", "toy/tiny16k", "--block-size", "8", *common)
    line = _one_error_line(conflict)
    assert "--block-size 8 (store: 2)" in line and str(store) in line
    with pytest.raises(ConfigError, match=r"--clip-seconds 5.0 \(store: 2.0\), --policy strong \(store: clean\)"):
        kd_in_process(
            "dump-teachers", str(manifest), str(store), "-t", "toy/tiny16k", "--policy", "strong", "--clip-seconds", "5"
        )
    assert sorted(p.name for p in (store / "teachers").iterdir()) == before
    # An explicit value equal to the store's is no conflict; the resolved config shows what the store fixed.
    printed = kd_in_process(
        "dump-teachers", str(manifest), str(store), "-t", "toy/tiny16k", "--views", "2", "--print-config", *common
    )
    resolved = json.loads(printed)
    assert (resolved["views"], resolved["seed"], resolved["block_size"], resolved["policy"]) == (2, 3, 2, "clean")
    assert resolved["clip_seconds"] == 2.0 and resolved["k"] == 7


def test_dump_from_a_config_file_and_print_config_round_trip(manifest, tmp_path) -> None:
    store = tmp_path / "s.zarr"
    run_toml = tmp_path / "run.toml"
    run_toml.write_text(
        f'[dump-teachers]\nmanifest = "{manifest}"\nstore = "{store}"\nteachers = ["toy/tiny16k"]\n'
        "views = 2\nk = 5\nblock-size = 2\nclip-seconds = 2.0\nworkers = 0\n"
    )
    printed = kd_in_process("dump-teachers", "--config", str(run_toml), "--views", "3", "--print-config")
    resolved = json.loads(printed)
    assert resolved["views"] == 3 and resolved["k"] == 5 and resolved["teachers"] == ["toy/tiny16k"]
    assert not store.exists()  # --print-config runs nothing
    (tmp_path / "resolved.json").write_text(printed)
    kd_in_process("dump-teachers", "--config", str(tmp_path / "resolved.json"))
    assert LogitStore(store).num_views == 3
    bad = tmp_path / "bad.toml"
    bad.write_text('views = "four"\n')
    with pytest.raises(ConfigError, match="views = 'four'"):
        kd_in_process("dump-teachers", "--config", str(bad))
    with pytest.raises(ConfigError, match="MANIFEST"):
        kd_in_process("dump-teachers", "-t", "toy/tiny16k")


def test_saved_train_config_is_a_valid_config(tmp_path) -> None:
    saved = TrainConfig(store=str(tmp_path / "s.zarr"), out=str(tmp_path / "run"), steps=30, lr=2e-3, loss="kl")
    (tmp_path / "config.json").write_text(json.dumps(saved.__dict__))
    printed = kd_in_process(
        "train-student", "--config", str(tmp_path / "config.json"), "--steps", "40", "--print-config"
    )
    assert json.loads(printed) == {**saved.__dict__, "steps": 40}
    with pytest.raises(ConfigError, match="--out"):
        kd_in_process("train-student", str(tmp_path / "s.zarr"))


def test_choices_are_checked_by_the_parser_and_match_the_library() -> None:
    from kd.cli import options as cli
    from kd.core.augment import POLICIES
    from kd.stores.targets import EnsembleSpec
    from kd.use.export import FORMATS
    from kd.use.predict import POOLINGS

    assert [p.value for p in cli.Policy] == list(POLICIES)
    assert [f.value for f in cli.ExportFormat] == list(FORMATS)
    assert [p.value for p in cli.Pool] == list(POOLINGS)
    for combine in cli.Combine:
        EnsembleSpec((("t", 1.0),), combine=combine.value)
    assert [loss.value for loss in cli.Loss] == list(LOSSES)
    for loss in cli.Loss:
        TrainConfig(store="s", out="o", loss=loss.value)
    with pytest.raises(ConfigError):
        TrainConfig(store="s", out="o", loss="mse")
    result = runner.invoke(app, ["train-student", "s.zarr", "--out", "o", "--loss", "mse"])
    assert result.exit_code == 2 and "'mse' is not one of 'bce', 'kl'" in result.output
    assert "bce|kl" in kd_in_process("train-student", "--help")
