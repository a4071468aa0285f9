"""`kd plan`: sizes from the store layout, times from a calibration on real clips, random weights said so."""

from __future__ import annotations

from pathlib import Path

import pytest

from kd.core.errors import ConfigError, WeightsError
from kd.dump.plan import PlanConfig, format_bytes, format_seconds, plan_dump, timing_teacher
from tests.helpers import run_kd

CLIPS = ["scaper_dogbark.wav", "librosa_robin.ogg", "panns_R9_ZSCveAHg_7s.mp3", "us8k_eval_siren_1.wav"]


@pytest.fixture()
def manifest(shared_data: Path, tmp_path: Path) -> Path:
    path = tmp_path / "clips.csv"
    path.write_text("path,labels\n" + "\n".join(f"{shared_data / 'clips' / c},Dog" for c in CLIPS) + "\n")
    return path


def _config(manifest: Path, **kwargs) -> PlanConfig:
    base = dict(teachers=["toy/tiny16k", "toy/partial32k"], views=3, k=150, calibration_views=3, workers=0)
    return PlanConfig(manifest=str(manifest), **{**base, **kwargs})


def test_plan_sizes_follow_the_store_layout(manifest):
    plan = plan_dump(_config(manifest))
    full, partial = plan.teachers
    assert (plan.clips, plan.views, plan.total_views, plan.calibration_views) == (4, 3, 12, 3)
    # toy/partial32k covers 100 store classes: k is capped there, as the dump caps it.
    assert (full.k, partial.k) == (150, 100)
    for t in plan.teachers:
        assert t.store_bytes_raw == t.training_bytes == 12 * (t.k * 4 + 3)
        assert 0 < t.store_bytes <= t.store_bytes_raw
        assert not t.random_weights
        assert t.seconds_per_view > 0 and t.dump_seconds == pytest.approx(t.seconds_per_view * 12)
    assert plan.seeds_bytes == 12 * 8
    assert plan.store_bytes_raw == plan.seeds_bytes + full.store_bytes_raw + partial.store_bytes_raw
    # Without workers the dump decodes and runs the teachers in turn.
    per_view = full.seconds_per_view + partial.seconds_per_view + plan.decode_seconds_per_view
    expected = plan.header_seconds + full.build_seconds + partial.build_seconds + 12 * per_view
    assert plan.dump_seconds == pytest.approx(expected)
    assert plan.epoch_seconds is None


def test_plan_with_a_student_estimates_an_epoch(manifest):
    student = dict(student="dass-tiny", student_batch_size=2, clip_seconds=2.0, calibration_views=2)
    plan = plan_dump(_config(manifest, teachers=["toy/tiny16k"], **student))
    assert plan.student == "dass-tiny"
    assert plan.student_step_seconds_per_view > 0
    assert plan.epoch_seconds >= plan.total_views * plan.student_step_seconds_per_view


def test_missing_weights_mean_random_weights_of_the_real_architecture():
    from kd.teachers.catalog import ENTRIES

    teacher, random = timing_teacher("ced/tiny")  # the test cache is empty: no CED weights here
    assert random and teacher.checkpoint_sha256 == ""
    assert teacher.num_parameters() == ENTRIES["ced/tiny"]().count_parameters()
    again, _ = timing_teacher("ced/tiny")
    first, second = (next(iter(t.module.parameters())) for t in (teacher, again))
    assert first.equal(second)  # seeded


def test_yamnet_without_its_file_cannot_be_timed():
    with pytest.raises(WeightsError, match="--checkpoint"):
        timing_teacher("yamnet")


def test_config_refuses_bad_values(manifest):
    with pytest.raises(ConfigError, match="--views"):
        _config(manifest, views=0)
    with pytest.raises(ConfigError, match="--calibration-views"):
        _config(manifest, calibration_views=0)
    # The checks a dump makes of the settings it shares with its plan (TeacherViews), the plan makes too.
    with pytest.raises(ConfigError, match="--clip-seconds must be between"):
        _config(manifest, clip_seconds=0.0)
    with pytest.raises(ConfigError, match="--seed must be a whole number"):
        _config(manifest, seed=-1)
    with pytest.raises(ConfigError, match="not being planned"):
        _config(manifest, checkpoints={"yamnet": "y.tflite"})


def test_formatting():
    assert format_bytes(999) == "999 B" and format_bytes(1500) == "1.5 KB" and format_bytes(2.5e12) == "2.5 TB"
    assert (
        format_seconds(5) == "5.0 s" and format_seconds(600) == "10.0 min" and format_seconds(4 * 86400) == "4.0 days"
    )


def test_cli_prints_the_plan(manifest):
    result = run_kd("plan", str(manifest), "-t", "toy/tiny16k", "--views", "2", "--k", "20", "--calibration-views", "2")
    assert result.returncode == 0, result.stderr
    assert "4 clips x 2 views = 8 views" in result.stdout
    row = next(line for line in result.stdout.splitlines() if "toy/tiny16k" in line)
    assert "real" in row and "664 B" in row  # 8 views x (20 x 4 + 3) bytes, raw


def test_cli_bad_input_is_one_error_line(manifest, tmp_path):
    result = run_kd("plan", str(tmp_path / "nope.csv"), "-t", "toy/tiny16k")
    assert result.returncode == 2 and result.stderr.startswith("kd: error:") and "Traceback" not in result.stderr
    assert "nope.csv" in result.stderr
