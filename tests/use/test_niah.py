"""Audio NIAH: needle placement, haystack kinds, per-duration rows, OOM and skip guards, plot."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kd.core.errors import ConfigError
from kd.use.niah import NiahConfig, insert_needle, plot_niah, run_niah


def test_needle_positions_and_noise_snr() -> None:
    config = NiahConfig(model="toy/tiny16k", needles="x", haystack="silence")
    needle = torch.ones(10)
    wave = insert_needle(torch.zeros(110), needle, 0.5, config)
    assert wave[50:60].tolist() == [1.0] * 10 and wave.sum() == 10
    assert insert_needle(torch.zeros(110), needle, 1.0, config)[100:].sum() == 10
    noisy = NiahConfig(model="toy/tiny16k", needles="x", haystack="noise", snr_db=20.0)
    noise = torch.randn(100_000)
    wave = insert_needle(noise, torch.ones(10), 0.0, noisy)
    assert wave[20:].pow(2).mean().sqrt().item() == pytest.approx(0.1, rel=0.02)  # 20 dB below the needle's RMS 1
    with pytest.raises(ConfigError):
        NiahConfig(model="toy/tiny16k", needles="x", positions=[1.5])


def test_sweep_in_process_records_rows_and_skips(shared_data: Path, tmp_path: Path) -> None:
    config = NiahConfig(
        model="toy/tiny16k",
        needles=str(shared_data / "clips.csv"),
        durations=[5.0, 20.0, 3600.0],
        positions=[0.0, 0.9],
        haystack=str(shared_data / "clips.csv"),
        max_needles=3,
        windowed=True,
        max_seconds=100.0,
        isolate=False,
    )
    report = run_niah(config, tmp_path)
    ok = report.rows[:2]
    assert [r.status for r in ok] == ["ok", "ok"] and all(r.inputs == 6 for r in ok)
    assert all(0.0 < r.mAP <= 1.0 and 0.0 < r.windowed_mAP <= 1.0 and r.peak_rss_gb > 0 for r in ok)
    assert set(ok[0].position_mAP) == {"0", "0.9"}
    assert report.rows[2].status.startswith("skipped")
    assert (tmp_path / "niah.json").is_file()
    assert plot_niah(report, tmp_path / "niah.png").read_bytes()[:4] == b"\x89PNG"


def test_out_of_memory_is_recorded_and_the_sweep_goes_on(shared_data: Path) -> None:
    # Each duration in a fresh subprocess under a 50 MB address-space budget above the loaded model: 10 s of
    # 16 kHz audio fits, 600 s does not; the failure is a row, not an exception.
    config = NiahConfig(
        model="toy/tiny16k",
        needles=str(shared_data / "clips.csv"),
        durations=[600.0, 2.0],
        positions=[0.5],
        max_needles=2,
        memory_limit_gb=0.05,
    )
    rows = run_niah(config).rows
    assert rows[0].status.startswith("out of memory"), rows[0].status
    assert rows[1].status == "ok" and rows[1].peak_rss_gb > 0.1


def test_several_models_in_one_sweep_table_and_plot(shared_data: Path, tmp_path: Path) -> None:
    import json

    from kd.use.niah import compare_niah

    base = NiahConfig(
        model="toy/tiny16k",
        needles=str(shared_data / "clips.csv"),
        durations=[5.0, 20.0],
        positions=[0.5],
        max_needles=2,
        isolate=False,
    )
    reports = compare_niah([base, NiahConfig(**{**base.__dict__, "model": "toy/partial32k"})], tmp_path)
    assert [r.config.model for r in reports] == ["toy/tiny16k", "toy/partial32k"]
    assert all(row.status == "ok" and row.seconds_per_input > 0 for r in reports for row in r.rows)
    assert all(0.0 < row.mAP <= 1.0 and row.inputs == 2 for r in reports for row in r.rows)
    saved = json.loads((tmp_path / "niah.json").read_text())
    assert [m["config"]["model"] for m in saved["models"]] == ["toy/tiny16k", "toy/partial32k"]
    assert plot_niah(reports, tmp_path / "niah.png").read_bytes()[:4] == b"\x89PNG"
