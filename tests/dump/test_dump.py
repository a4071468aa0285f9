"""`kd dump-teachers`: replay fidelity, resume after SIGKILL, append, dask, failures, refusals, concurrent dumps."""

from __future__ import annotations

import hashlib
import json
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from kd.core.augment import draw_view
from kd.core.errors import StoreError
from kd.core.views import render_view
from kd.dump import DumpConfig, dump_teachers
from kd.stores import LogitStore
from kd.stores.inspect import verify_store
from kd.teachers import create_teacher
from tests.helpers import run_kd, start_kd

SHORT_CLIPS = [
    "scaper_dogbark.wav",
    "librosa_robin.ogg",
    "panns_R9_ZSCveAHg_7s.mp3",
    "us8k_eval_siren_1.wav",
    "tflite_speech.wav",
    "esc50_1-100032-A-0.wav",
]


@pytest.fixture()
def manifest(shared_data: Path, tmp_path: Path) -> Path:
    path = tmp_path / "clips.csv"
    rows = [f"{shared_data / 'clips' / name},Dog" for name in SHORT_CLIPS]
    path.write_text("path,labels\n" + "\n".join(rows) + "\n")
    return path


def _config(manifest: Path, store: Path, **kwargs) -> DumpConfig:
    base = dict(teachers=["toy/tiny16k"], views=2, k=5, block_size=2, batch_size=3, workers=0, progress=False)
    return DumpConfig(manifest=str(manifest), store=str(store), **{**base, **kwargs})


def _checksums(root: Path, under: str = "") -> dict[str, str]:
    base = root / under
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(base.rglob("*"))
        if p.is_file() and ".kd-" not in str(p.relative_to(root))
    }


def _without_consolidated(path: Path) -> dict:
    meta = json.loads(path.read_text())
    meta.pop("consolidated_metadata", None)
    return meta


def test_stored_topk_equals_teacher_on_replayed_views(manifest, tmp_path):
    report = dump_teachers(_config(manifest, tmp_path / "s.zarr", teachers=["toy/tiny16k", "toy/partial32k"]))
    assert report.blocks_computed == 3 and not report.failures
    store = LogitStore(tmp_path / "s.zarr")
    assert verify_store(str(tmp_path / "s.zarr")) == []
    table, seeds = store.clip_table(), store.seeds()
    for name in ("toy/tiny16k", "toy/partial32k"):
        teacher, group = create_teacher(name), store.teacher(name)
        index = teacher.labels.map_to(store.labels).index
        for clip, view in [(0, 0), (3, 1), (5, 1)]:
            params = draw_view(store.policy, int(seeds[clip, view]), clip, len(table), view)
            wave = render_view(table, clip, params, store.policy)
            from kd.core.audio import resample

            own = teacher.logits(resample(wave[None], store.policy.sample_rate, teacher.card.sample_rate))[0]
            full = torch.full((len(store.labels),), float("-inf"))
            full[torch.as_tensor(index[index >= 0])] = own[torch.as_tensor(index >= 0)]
            values, indices = full.topk(group.k)
            np.testing.assert_array_equal(group.indices[clip, view], indices.numpy())
            np.testing.assert_allclose(group.logits[clip, view], values.numpy(), rtol=1e-3, atol=1e-3)
    partial = store.teacher("toy/partial32k")
    assert partial.covered.sum() == 100 and len(partial.attrs["label_mapping"]["uncovered_target"]) == 427


def test_spliced_views_replay_and_store_what_the_teacher_heard(manifest, tmp_path):
    """A cutmix store (policy v2): every two-clip view is spliced, and its stored top-k is the teacher on the splice."""
    from kd.core.audio import resample

    dump_teachers(_config(manifest, tmp_path / "s.zarr", views=4, policy="cutmix"))
    store = LogitStore(tmp_path / "s.zarr")
    assert store.policy.version == 2 and store.policy.cutmix_prob == 1.0
    table, seeds = store.clip_table(), store.seeds()
    views = [(c, v, draw_view(store.policy, int(seeds[c, v]), c, len(table), v)) for c in range(6) for v in range(4)]
    spliced = [(c, v, p) for c, v, p in views if p.partner >= 0]
    assert spliced and all(p.splice is not None for _, _, p in spliced)
    teacher, group = create_teacher("toy/tiny16k"), store.teacher("toy/tiny16k")
    clip, view, params = spliced[0]
    wave = render_view(table, clip, params, store.policy)
    own = teacher.logits(resample(wave[None], store.policy.sample_rate, teacher.card.sample_rate))[0]
    np.testing.assert_array_equal(group.indices[clip, view], own.topk(group.k).indices.numpy())


def test_k_larger_than_classes_keeps_everything(manifest, tmp_path):
    dump_teachers(_config(manifest, tmp_path / "s.zarr", teachers=["toy/partial32k"], k=1000))
    group = LogitStore(tmp_path / "s.zarr").teacher("toy/partial32k")
    assert group.k == 100
    assert np.isnan(group.rest[:]).all()
    assert verify_store(str(tmp_path / "s.zarr")) == []


def test_append_teacher_leaves_existing_arrays_byte_identical(manifest, tmp_path):
    store = tmp_path / "s.zarr"
    dump_teachers(_config(manifest, store))
    # The root zarr.json also holds the consolidated metadata, which must list the new teacher: compare the rest.
    root_meta = _without_consolidated(store / "zarr.json")
    before = {
        p: h
        for p, h in _checksums(store).items()
        if p != "zarr.json" and (not p.startswith("teachers/") or "toy--tiny16k" in p)
    }
    dump_teachers(_config(manifest, store, teachers=["toy/partial32k"]))
    after = _checksums(store)
    assert {p: after[p] for p in before} == before
    assert _without_consolidated(store / "zarr.json") == root_meta
    assert any("toy--partial32k" in p for p in after)
    # Added alone or together, the new teacher's arrays are the same: it saw exactly the same views.
    dump_teachers(_config(manifest, tmp_path / "both.zarr", teachers=["toy/partial32k", "toy/tiny16k"]))
    assert _checksums(store, "teachers/toy--partial32k/logits") == {
        p.replace("both.zarr", "s.zarr"): h
        for p, h in _checksums(tmp_path / "both.zarr", "teachers/toy--partial32k/logits").items()
    }


def test_resume_after_sigkill_is_bit_identical(manifest, tmp_path):
    reference, killed = tmp_path / "ref.zarr", tmp_path / "killed.zarr"
    args = ["--teacher", "toy/tiny16k", "--views", "3", "--k", "5", "--block-size", "1", "--workers", "1"]
    assert run_kd("dump-teachers", str(manifest), str(reference), *args).returncode == 0
    proc = start_kd("dump-teachers", str(manifest), str(killed), *args)
    done_dir = killed / "teachers" / "toy--tiny16k" / "done" / "c"
    deadline = time.time() + 120
    while time.time() < deadline and not (done_dir.is_dir() and any(done_dir.iterdir())):
        time.sleep(0.01)
    time.sleep(random.uniform(0, 0.1))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(list(done_dir.iterdir()))
    assert 1 <= finished < len(SHORT_CLIPS), f"the kill should land mid-run ({finished} blocks done)"
    rerun = run_kd("dump-teachers", str(manifest), str(killed), *args)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{finished} already done" in rerun.stdout.replace("\n", " ")
    assert _checksums(killed) == _checksums(reference)


def test_sigkill_with_a_block_claimed_leaves_nothing_after_the_rerun(manifest, tmp_path):
    store = tmp_path / "killed.zarr"
    args = ["--teacher", "toy/tiny16k", "--views", "2", "--k", "5", "--block-size", "2", "--workers", "0"]
    proc = start_kd("dump-teachers", str(manifest), str(store), *args)
    locks = store / ".kd-locks"
    deadline = time.time() + 120
    while time.time() < deadline and not any(locks.rglob("*.lock")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert any(locks.rglob("*.lock")), "the kill should land while a block is claimed"
    rerun = run_kd("dump-teachers", str(manifest), str(store), *args)
    assert rerun.returncode == 0, rerun.stderr
    assert not locks.exists() and not (store / ".kd-tmp").exists()
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []
    assert verify_store(str(store)) == []


def test_distributed_local_cluster_is_bit_identical(manifest, tmp_path):
    dump_teachers(_config(manifest, tmp_path / "one.zarr", teachers=["toy/tiny16k", "toy/partial32k"]))
    dump_teachers(
        _config(manifest, tmp_path / "dask.zarr", teachers=["toy/tiny16k", "toy/partial32k"], scheduler="local:2")
    )
    assert _checksums(tmp_path / "dask.zarr") == _checksums(tmp_path / "one.zarr")


def test_unreadable_clip_is_recorded_failed_listed_and_fails_the_run(manifest, tmp_path, bad_audio):
    bad = manifest.read_text() + f"{bad_audio['truncated_wav']},Dog\n"
    (tmp_path / "bad.csv").write_text(bad)
    store = tmp_path / "s.zarr"
    args = [
        "dump-teachers",
        str(tmp_path / "bad.csv"),
        str(store),
        *"-t toy/tiny16k --views 2 --block-size 2 --workers 0".split(),
    ]
    result = run_kd(*args)
    assert result.returncode == 1
    assert "truncated.wav" in result.stdout and "truncated" in result.stdout
    opened = LogitStore(store)
    group = opened.teacher("toy/tiny16k")
    # A view fails when its clip or its mixup partner is the bad clip; only blocks holding such views stay undone.
    seeds = opened.seeds()
    expected = np.array(
        [
            [c == 6 or draw_view(opened.policy, int(seeds[c, v]), c, 7, v).partner == 6 for v in range(2)]
            for c in range(7)
        ]
    )
    np.testing.assert_array_equal(group.failed[:], expected)
    assert np.isnan(group.logits[:][expected]).all() and (group.indices[:][expected] == -1).all()
    assert np.isfinite(group.logits[:][~expected]).all()
    np.testing.assert_array_equal(group.done[:], [not expected[2 * b : 2 * b + 2].any() for b in range(4)])
    accepted = run_kd(*args, "--skip-bad")
    assert accepted.returncode == 0
    assert LogitStore(store).teacher("toy/tiny16k").done[:].all()
    assert verify_store(str(store)) == []


def test_incompatible_store_is_refused_and_left_untouched(manifest, tmp_path):
    store = tmp_path / "s.zarr"
    dump_teachers(_config(manifest, store))
    before = _checksums(store)
    for extra in (["--policy", "strong"], ["--views", "3"]):
        result = run_kd(
            "dump-teachers",
            str(manifest),
            str(store),
            "-t",
            "toy/tiny16k",
            "--views",
            "2",
            "--k",
            "5",
            "--block-size",
            "2",
            *extra,
        )
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "kd: error:" in result.stderr and str(store) in result.stderr
    other = tmp_path / "other.csv"
    other.write_text("\n".join(manifest.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(StoreError, match="another"):
        dump_teachers(_config(other, store))
    assert _checksums(store) == before


def test_concurrent_dumps_of_one_teacher_do_not_corrupt(manifest, tmp_path):
    reference, shared = tmp_path / "ref.zarr", tmp_path / "shared.zarr"
    args = ["-t", "toy/tiny16k", "--views", "2", "--k", "5", "--block-size", "1", "--workers", "0"]
    assert run_kd("dump-teachers", str(manifest), str(reference), *args).returncode == 0
    procs = [start_kd("dump-teachers", str(manifest), str(shared), *args) for _ in range(2)]
    outputs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert verify_store(str(shared)) == []
    assert _checksums(shared) == _checksums(reference)
