"""Smoke test of the benchmark suite: two cheap benchmarks on three real clips; shapes and sane values, no timings."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import common
from benchmarks.__main__ import main


@pytest.fixture()
def three_clips(shared_data):
    """The suite on three shared clips; global settings restored afterwards."""
    threads = torch.get_num_threads()
    common.set_clip_limit(3)
    common.set_repeats(1)
    yield shared_data
    common.set_clip_limit(None)
    common.set_repeats(None)
    torch.set_num_threads(threads)


def test_store_size_rows_through_the_runner(three_clips, tmp_path):
    out = tmp_path / "results.json"
    assert main(["--quick", "--only", "store_size", "--clips", "3", "--repeats", "1", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert {"cpu", "cores", "torch", "date"} <= set(results["machine"])
    assert results["settings"]["clips"] == 3
    rows = results["benchmarks"]["store_size"]["rows"]
    assert {row["k"] for row in rows} == {10, 20, 50, 527}
    for row in rows:
        assert {"codec", "bytes_per_view", "raw_bytes_per_view", "ratio_vs_raw", "read_us_per_view"} <= set(row)
        assert row["raw_bytes_per_view"] == row["k"] * 4 + 2
        assert row["bytes_per_view"] > 0 and row["rows"] == 6
    by = {(row["k"], row["codec"]): row["bytes_per_view"] for row in rows}
    # Uncompressed data can't be smaller than raw; the store's codec must beat storing nothing compressed.
    assert by[(527, "none")] >= 527 * 4 + 2
    assert by[(527, "blosc zstd-5 byte-shuffle (kd)")] < by[(527, "none")]


def test_topk_fidelity_rows(three_clips):
    pytest.importorskip("ai_edge_litert")
    from benchmarks import topk_fidelity

    rows = topk_fidelity.run(quick=True)
    assert len(rows) == 2 * len(topk_fidelity.KS) * 2
    for row in rows:
        assert {"teacher", "k", "fill", "map_labels", "map_self", "bce", "kl", "mass_kept"} <= set(row)
        assert 0 <= row["map_labels"] <= 1 and 0 <= row["map_self"] <= 1
        assert row["kl"] >= -1e-4
    for teacher in ("efficientat/mn04_as", "yamnet"):
        for k in topk_fidelity.KS:
            zero, rest = (
                next(r for r in rows if r["teacher"] == teacher and r["k"] == k and r["fill"] == fill)
                for fill in ("zero", "rest")
            )
            # The stored fill keeps the teacher's probability mass (up to float16); zero fill drops it.
            assert rest["mass_kept"] == pytest.approx(1.0, abs=0.01)
            assert zero["mass_kept"] < 1.0
            assert rest["kl"] <= zero["kl"]


def test_unknown_benchmark_is_refused(three_clips, capsys):
    with pytest.raises(SystemExit):
        main(["--only", "nope"])
    assert "unknown benchmark" in capsys.readouterr().err


def test_student_step_splits_a_real_step_and_restores_the_scan():
    """The step breakdown times the real scan forward and backward inside the step (shares in (0, 1)) and puts the
    unpatched functions back."""
    from benchmarks import student_step
    from kd.students import dass
    from kd.students.scan_grad import ChunkedScan

    forward, backward = dass.selective_scan, ChunkedScan.backward
    row = student_step.profile("dass-mini-p16", 1)
    assert dass.selective_scan is forward and ChunkedScan.backward == backward
    assert row["patch"] == 16 and row["stage1_positions"] == 8 * 31 and row["samples_per_s"] > 0
    assert 0 < row["scan_fwd_share"] < 1 and 0 < row["scan_bwd_share"] < 1
    assert row["scan_fwd_share"] + row["scan_bwd_share"] < 1


def test_scan_benchmark_times_both_cpu_paths_and_checks_them():
    from benchmarks import scan as bench

    rows = bench.run(quick=True)
    for row in rows[:-1]:
        assert row["chunked_ms"] > 0 and row["torch_ops_ms"] > 0 and row["sequential_ms"] > 0
        assert float(row["chunked_vs_sequential"]) < 1e-4
    assert float(rows[-1]["max_abs_diff_vs_sequential"]) < 1e-4


def test_train_loop_benchmark_profiles_the_real_loop(shared_data, tmp_path):
    """The loop benchmark's pieces on a tiny store: its stage profile times the dataset's own path (it asserts the
    features equal) and both rates run; a rename in kd.train breaks this, not a two-minute benchmark run."""
    from benchmarks import train_loop
    from tests.helpers import dump_toy_store

    names = ("scaper_dogbark.wav", "librosa_robin.ogg", "us8k_eval_siren_1.wav", "esc50_1-100032-A-0.wav")
    clips = [shared_data / "clips" / name for name in names]  # x 4 views: one batch of 16
    store = str(dump_toy_store(tmp_path, clips, ["toy/tiny16k"], views=4, clip_seconds=1.0))
    threads = torch.get_num_threads()
    try:
        rows = train_loop.profile(store, tmp_path / "profile", str(tmp_path / "cache"), batches=1)
        assert train_loop.bare_rate(store, tmp_path / "bare", 2) > 0
        assert train_loop.loop_rate(store, tmp_path / "loop", 1, None, 0) > 0
    finally:
        torch.set_num_threads(threads)
    stages = {row["stage"] for row in rows}
    assert {"front end", "cache read", "step (forward, backward, AdamW)", "EMA"} <= stages
    assert sum(row["cold_share"] for row in rows) == pytest.approx(1.0, abs=0.01)
