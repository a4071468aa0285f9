"""kd's Python API (kd.api, re-exported as kd.*) is what the commands run: same defaults, same store rules."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import kd
from kd import api
from kd.cli import dump, train, use
from kd.cli.options import plain
from kd.core.errors import ConfigError


def _flag_defaults(command) -> dict:
    return {name: plain(p.default) for name, p in inspect.signature(command).parameters.items()}


def _field_defaults(cls) -> dict:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


@pytest.mark.parametrize(
    ("command", "config"), [(dump.dump_teachers_cmd, api.DumpConfig), (train.train_student_cmd, api.TrainConfig)]
)
def test_flags_default_to_what_the_config_defaults_to(command, config) -> None:
    # The commands pass on only what the user gave, so a flag's shown default must be the config's.
    flags, fields = _flag_defaults(command), _field_defaults(config)
    shared = set(flags) & set(fields)
    assert len(shared) > 10
    assert {name: flags[name] for name in shared} == {name: fields[name] for name in shared}


@pytest.mark.parametrize(("command", "function"), [(use.eval_cmd, api.evaluate), (use.predict_cmd, api.predict)])
def test_eval_and_predict_flags_default_to_the_api(command, function) -> None:
    flags, arguments = _flag_defaults(command), _flag_defaults(function)
    shared = set(flags) & set(arguments) - {"model", "manifest", "files"}
    assert {"checkpoint", "device"} <= shared
    assert {name: flags[name] for name in shared} == {name: arguments[name] for name in shared}


def test_the_package_exposes_the_api_without_loading_torch() -> None:
    assert kd.dump_teachers is api.dump_teachers and kd.TrainConfig is api.TrainConfig
    assert {"dump_teachers", "train_student", "evaluate", "predict"} <= set(dir(kd))
    with pytest.raises(AttributeError):
        kd.no_such_name  # noqa: B018
    code = "import sys, kd; assert 'torch' not in sys.modules, 'import kd loaded torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dump_config_takes_an_existing_stores_settings_as_the_command_does(shared_data: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "clips.csv"
    manifest.write_text(f"path\n{shared_data / 'clips' / 'scaper_dogbark.wav'}\n")
    store = tmp_path / "s.zarr"
    fresh = api.dump_config(manifest, store, ["toy/tiny16k"])
    assert (fresh.views, fresh.k, fresh.seed) == (4, 50, 0)
    kd.dump_teachers(manifest, store, ["toy/tiny16k"], views=2, k=8, seed=3, clip_seconds=1.0, workers=0)
    again = api.dump_config(manifest, store, ["toy/partial32k"])
    assert (again.views, again.k, again.seed, again.clip_seconds) == (2, 8, 3, 1.0)
    with pytest.raises(ConfigError, match="--views 4"):
        api.dump_config(manifest, store, ["toy/partial32k"], views=4)
