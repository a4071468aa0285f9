"""The label-free recipe's one command in miniature: a pool installed from a local .deb, two seeds, the table."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import pytest

from benchmarks import esc50_recipe

SMOKE = ["--limit", "6", "--views", "2", "--batch-size", "2", "--student", "dass-tiny"]


def _deb(tmp_path, clips):
    """A real .deb (dpkg-deb --build) that ships `clips` as sound effects, as the pinned game-data packages do."""
    root = tmp_path / "fake-sounds"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: fake-sounds\nVersion: 1.0-1\nArchitecture: all\nMaintainer: kd <kd@example.org>\nDescription: t\n"
    )
    sounds = root / "usr" / "share" / "games" / "fake" / "sounds"
    sounds.mkdir(parents=True)
    for clip in clips:
        shutil.copy(clip, sounds / clip.name)
    deb = tmp_path / "fake-sounds_1.0-1_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)], check=True, capture_output=True)
    return deb


def test_recipe_installs_the_pool_trains_every_seed_and_reports_the_margin(shared_data, tmp_path, capsys):
    if not (shared_data / "esc50" / "esc50.csv").is_file() or not shutil.which("dpkg-deb"):
        pytest.skip("needs ESC-50 in the shared data and dpkg-deb")
    audio_pool = esc50_recipe.audio_pool_module()
    deb = _deb(tmp_path, sorted((shared_data / "clips").glob("*.wav"))[:3])
    out = tmp_path / "recipe"
    (out / "pool" / ".debs").mkdir(parents=True)
    shutil.copy(deb, out / "pool" / ".debs" / deb.name)  # already downloaded: nothing is fetched
    package = audio_pool.PoolPackage(
        "fake-sounds", "1.0-1", hashlib.sha256(deb.read_bytes()).hexdigest(), "CC0", include=(r"/sounds/",)
    )
    argv = ["--out", str(out), "--pool", "install", "--seeds", "0,1", "--steps", "2", "--jobs", "1", "--curve-points"]
    args, study_flags = esc50_recipe.parse([*argv, "1", *SMOKE])
    assert study_flags == SMOKE
    report = esc50_recipe.run(args, study_flags, packages=[package])

    assert len((out / "pool" / "manifest.csv").read_text().splitlines()) == 4  # the three clips, unlabelled
    for seed in (0, 1):
        for name in esc50_recipe.POOL_PAIR:
            config = json.loads((out / f"seed{seed}" / "runs" / name / "config.json").read_text())
            assert (config["seed"], config["steps"]) == (seed, 2)
    pool_config = json.loads((out / "seed0" / "runs" / "kd_mn04_pool_dp2" / "config.json").read_text())
    assert pool_config["store"] == str(out / "poolall-store.zarr")  # one dump for every seed
    saved = json.loads((out / "recipe.json").read_text())
    assert [row["study"] for row in saved["seeds"]][-2:] == ["mean", "sd"]
    mean = saved["seeds"][-2]
    assert mean["margin"] == pytest.approx(mean["KD mAP"] - mean["labels mAP"])
    assert "pool install" in saved["seconds"] and report == (out / "recipe.md").read_text()


def test_recipe_without_a_pool_trains_the_measured_best_pair(shared_data, tmp_path):
    if not (shared_data / "esc50" / "esc50.csv").is_file():
        pytest.skip("needs ESC-50 in the shared data")
    out = tmp_path / "recipe"
    args, study_flags = esc50_recipe.parse(["--out", str(out), "--seeds", "0,1", "--steps", "2", "--jobs", "1", *SMOKE])
    assert (args.pool, esc50_recipe.parse([])[0].steps) == ("none", 12000)
    report = esc50_recipe.run(args, study_flags)
    for seed in (0, 1):
        for name in esc50_recipe.PAIR:
            config = json.loads((out / f"seed{seed}" / "runs" / name / "config.json").read_text())
            assert (config["seed"], config["steps"], config["store"]) == (seed, 2, str(out / "store.zarr"))
    assert (
        not (out / "pool").exists() and "pool install" not in json.loads((out / "recipe.json").read_text())["seconds"]
    )
    assert report.startswith("# Label-free KD on ESC-50 folds 1-3, against labels")


def test_recipe_refuses_a_missing_pool_manifest_and_bad_seeds(tmp_path, capsys):
    for argv, message in (
        (["--pool", str(tmp_path / "nope.csv")], "no such manifest"),
        (["--seeds", "0,x"], "comma-separated integers"),
    ):
        with pytest.raises(SystemExit) as stopped:
            esc50_recipe.main(["--out", str(tmp_path / "r"), *argv])
        assert stopped.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
