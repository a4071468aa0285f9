"""Faults and bad inputs (issue 14): a damaged store, non-finite teacher outputs, bad paths and flags, leftovers."""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from kd.core.errors import AudioError, ConfigError, StoreDamaged, StoreError, WeightsError
from kd.dump import BlockPlan, DumpConfig, compute_batch, dump_teachers, render_batch
from kd.stores import LogitStore
from kd.stores.blocks import BlockBuffer
from kd.stores.inspect import verify_store
from kd.stores.targets import EnsembleSpec
from kd.students.checkpoint import read_checkpoint, save_checkpoint
from kd.teachers import create_teacher
from kd.train.distill_data import DistillDataset
from tests.helpers import run_kd

CLIPS = ["scaper_dogbark.wav", "librosa_robin.ogg", "us8k_eval_siren_1.wav", "tflite_speech.wav"]
TEACHER = "toy/tiny16k"


def _manifest(shared_data: Path, folder: Path, extra: str = "") -> Path:
    path = folder / "clips.csv"
    rows = [f"{shared_data / 'clips' / name},,,Dog" for name in CLIPS[1:]]
    # A segment, so clips/start holds something other than its fill value.
    rows.insert(0, f"{shared_data / 'clips' / CLIPS[0]},0.05,,Bark")
    path.write_text("path,start,end,labels\n" + "\n".join(rows) + "\n" + extra)
    return path


def _config(manifest: Path, store: Path, **kwargs) -> DumpConfig:
    base = dict(teachers=[TEACHER], views=2, k=5, block_size=2, batch_size=4, workers=0, progress=False)
    return DumpConfig(manifest=str(manifest), store=str(store), **{**base, **kwargs})


@pytest.fixture(scope="module")
def made_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("faults")
    store = folder / "s.zarr"
    report = dump_teachers(_config(_manifest(shared_data, folder), store))
    assert not report.failures and verify_store(str(store)) == []
    return store


@pytest.fixture()
def store(made_store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "s.zarr"
    shutil.copytree(made_store, copy)
    return copy


def _dataset(store: Path) -> DistillDataset:
    opened = LogitStore(store)
    return DistillDataset(opened, EnsembleSpec(((TEACHER, 1.0),)), torch.nn.Identity(), 16000)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# -- a damaged store: training refuses, verify reports ------------------------------------------------------------

LOST_CHUNKS = {
    "teachers/toy--tiny16k/logits": "c/0/0/0",
    "teachers/toy--tiny16k/indices": "c/1/0/0",
    "teachers/toy--tiny16k/rest": "c/0/0",
    "views/seed": "c/0/0",
    "clips/id": "c/0",
    "clips/path": "c/0",
    "clips/start": "c/0",
    "clips/end": "c/0",
    "clips/duration": "c/0",
    "clips/labels": "c/0",
}


@pytest.mark.parametrize("array", list(LOST_CHUNKS))
def test_lost_chunk_is_refused_by_training_and_reported_by_verify(store: Path, array: str) -> None:
    _dataset(store)  # sound before the loss
    (store / array / LOST_CHUNKS[array]).unlink()
    problems = verify_store(str(store))
    assert any(p.startswith(array) for p in problems), problems
    with pytest.raises(StoreDamaged) as caught:
        _dataset(store)
    message = str(caught.value)
    assert array in message and "kd store verify" in message and "\n" not in message


def test_bit_flipped_and_truncated_shards_are_one_line_errors(store: Path) -> None:
    shard = store / "teachers/toy--tiny16k/logits/c/0/0/0"
    data = bytearray(shard.read_bytes())
    for i in range(len(data) // 4, len(data) // 2):
        data[i] ^= 0x5A
    shard.write_bytes(bytes(data))
    (store / "teachers/toy--tiny16k/indices/c/0/0/0").write_bytes(b"\x00" * 7)
    problems = verify_store(str(store))
    assert any("indices" in p for p in problems), problems
    with pytest.raises(StoreDamaged, match="kd store verify"):
        _dataset(store)
    result = run_kd("store", "verify", str(store))
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("where", ["teachers/toy--tiny16k/zarr.json", "teachers/toy--tiny16k/logits/zarr.json"])
def test_garbage_metadata_is_a_damaged_store(store: Path, where: str) -> None:
    (store / where).write_text("{not json")
    problems = verify_store(str(store))
    assert problems and all("\n" not in p for p in problems)
    with pytest.raises(StoreDamaged):
        _dataset(store)


def test_missing_root_attribute_is_one_line(store: Path) -> None:
    meta = json.loads((store / "zarr.json").read_text())
    del meta["attributes"]["num_views"]
    (store / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="num_views"):
        LogitStore(store)
    result = run_kd("store", "info", str(store))
    assert result.returncode == 2 and "num_views" in result.stderr and "Traceback" not in result.stderr


# -- non-finite teacher outputs are never stored as valid ---------------------------------------------------------


def test_non_finite_teacher_output_is_stored_as_a_failed_view(store: Path) -> None:
    opened = LogitStore(store, mode="a")
    teacher = create_teacher(TEACHER)
    real = teacher.logits

    def poisoned(waves: torch.Tensor) -> torch.Tensor:
        out = real(waves).clone()
        out[1] = float("nan")  # one view of the batch goes bad
        return out

    teacher.logits = poisoned
    group = opened.teacher(TEACHER)
    group.done[0] = False  # block 0 as a fresh dump finds it
    plan = BlockPlan(opened.clip_table(), opened.seeds(), opened.policy, opened.clip_ids(), 4, opened.block_size)
    buffer = BlockBuffer(opened, 0, {TEACHER: group.k})
    batch = render_batch(plan, plan.batches(0)[0])
    bad = compute_batch(batch, {TEACHER: (teacher, torch.as_tensor(group.label_index), group.k)}, buffer, opened)
    assert [row for row, _ in bad] == [1] and "non-finite" in bad[0][1]
    assert not buffer.write({TEACHER: group}, mark_failed_done=False)
    failed = group.read("failed")
    clip, view = batch["items"][1]
    assert failed[clip, view] and failed.sum() == 1
    assert np.isnan(group.read("logits")[clip, view]).all()
    assert not group.done_blocks()[0]


def test_huge_samples_fail_their_views_and_their_mixup_partners(shared_data: Path, tmp_path: Path) -> None:
    wave, rate = sf.read(shared_data / "clips" / CLIPS[2], dtype="float32")
    sf.write(tmp_path / "huge.wav", wave * 1e20, rate, subtype="FLOAT")
    with pytest.raises(AudioError, match="samples reach"):
        from kd.core.audio import load_audio

        load_audio(tmp_path / "huge.wav")
    manifest = _manifest(shared_data, tmp_path, extra=f"{tmp_path / 'huge.wav'},,,Siren\n")
    report = dump_teachers(_config(manifest, tmp_path / "s.zarr", views=3))
    assert any(f.clip_id.endswith("huge.wav") and "samples reach" in f.reason for f in report.failures)
    group = LogitStore(tmp_path / "s.zarr").teacher(TEACHER)
    logits, failed = group.read("logits"), group.read("failed")
    assert failed[4].all() and np.isfinite(logits[~failed]).all() and np.isnan(logits[failed]).all()


# -- a fixed file and a rerun -------------------------------------------------------------------------------------


def test_fixing_an_unreadable_clip_and_rerunning_completes_the_store(shared_data: Path, tmp_path: Path) -> None:
    broken = tmp_path / "late.wav"
    broken.write_bytes(b"RIFF" + bytes(60))
    manifest = _manifest(shared_data, tmp_path, extra=f"{broken},,,Dog\n")
    first = dump_teachers(_config(manifest, tmp_path / "s.zarr"))
    assert first.failures and np.isnan(LogitStore(tmp_path / "s.zarr").durations()[4])
    shutil.copy(shared_data / "clips" / CLIPS[3], broken)
    second = dump_teachers(_config(manifest, tmp_path / "s.zarr"))
    assert not second.failures
    assert LogitStore(tmp_path / "s.zarr").teacher(TEACHER).done_blocks().all()
    assert verify_store(str(tmp_path / "s.zarr")) == []


# -- paths and flags ----------------------------------------------------------------------------------------------


def test_store_paths_that_cannot_be_stores_are_refused_before_anything_is_written(
    shared_data: Path, tmp_path: Path
) -> None:
    manifest = _manifest(shared_data, tmp_path)
    regular = tmp_path / "file.zarr"
    regular.write_text("x")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    for path, what in ((regular, "is a file"), (folder, "other files"), (regular / "s.zarr", "lies under")):
        before = sorted(p.name for p in tmp_path.rglob("*"))
        with pytest.raises(StoreError, match=what):
            dump_teachers(_config(manifest, path))
        assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    "flags",
    [
        {"clip_seconds": math.nan},
        {"clip_seconds": math.inf},
        {"clip_seconds": -1.0},
        {"workers": -2},
        {"views": 0},
        {"k": 0},
        {"batch_size": 0},
        {"block_size": 0},
        {"seed": -1},
        {"scheduler": "local:0"},
        {"scheduler": "local:x"},
        {"scheduler": "not an address"},
        {"device": "gpu7"},
    ],
)
def test_dump_flags_out_of_range_are_refused(tmp_path: Path, flags: dict) -> None:
    with pytest.raises(ConfigError):
        _config(tmp_path / "m.csv", tmp_path / "s.zarr", **flags)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_dump_on_cuda_without_cuda_is_one_line(tmp_path: Path) -> None:
    result = run_kd(
        "dump-teachers", str(tmp_path / "m.csv"), str(tmp_path / "s.zarr"), "-t", TEACHER, "--device", "cuda"
    )
    assert result.returncode == 2 and "CUDA" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize("weights", [((TEACHER, math.nan),), ((TEACHER, math.inf),), ((TEACHER, -1.0),)])
def test_ensemble_refuses_non_finite_or_non_positive_weights(weights: tuple) -> None:
    with pytest.raises(ConfigError):
        EnsembleSpec(weights)


@pytest.mark.parametrize("temperature", [math.nan, math.inf, 0.0])
def test_ensemble_refuses_bad_temperatures(temperature: float) -> None:
    with pytest.raises(ConfigError):
        EnsembleSpec(((TEACHER, 1.0),), temperature=temperature)


# -- files that are not what they claim ---------------------------------------------------------------------------


def test_random_bytes_mp3_names_the_real_reason(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp3"
    path.write_bytes(np.random.default_rng(0).bytes(8192).replace(b"ID3", b"xxx"))
    from kd.core.audio import audio_info

    with pytest.raises(AudioError, match="not an MP3 file") as caught:
        audio_info(path)
    assert "pipe" not in str(caught.value)


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_malicious_checkpoint_is_refused_in_one_line_without_unsafe_advice(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"kind": "kd-student", "x": _Payload()}, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(WeightsError) as caught:
        read_checkpoint(path)
    message = str(caught.value)
    assert "\n" not in message and "weights_only" not in message and "refused" in message


# -- leftovers of killed writers ----------------------------------------------------------------------------------


def test_leftovers_of_dead_writers_are_removed_and_live_ones_kept(store: Path, shared_data: Path) -> None:
    import socket

    host, dead, alive = socket.gethostname(), _dead_pid(), os.getpid()
    tmp = store / ".kd-tmp"
    (tmp / f"toy--x.tmp-{host}-{dead}").mkdir(parents=True)
    (tmp / f"toy--y.tmp-{host}-{alive}").mkdir()
    sibling_dead = store.parent / f"{store.name}.tmp-{host}-{dead}"
    sibling_other_host = store.parent / f"{store.name}.tmp-elsewhere-{dead}"
    sibling_dead.mkdir()
    sibling_other_host.mkdir()
    locks = store / ".kd-locks" / "toy--tiny16k"
    locks.mkdir(parents=True)
    (locks / "block-00000007.lock").write_text(f"{host} {dead}")
    dump_teachers(_config(_manifest(shared_data, store.parent), store))
    assert not (tmp / f"toy--x.tmp-{host}-{dead}").exists() and (tmp / f"toy--y.tmp-{host}-{alive}").exists()
    assert not sibling_dead.exists() and sibling_other_host.exists()
    assert not (locks / "block-00000007.lock").exists()


def test_checkpoint_temporaries_of_dead_writers_are_removed(tmp_path: Path) -> None:
    import socket

    host = socket.gethostname()
    dead = tmp_path / f".last.pt.{host}-{_dead_pid()}.tmp"
    live = tmp_path / f".last.pt.{host}-{os.getpid() + 0}x.tmp"  # malformed tag: never called dead
    dead.write_bytes(b"partial")
    live.write_bytes(b"partial")
    save_checkpoint({"step": 1}, tmp_path / "last.pt")
    assert not dead.exists() and live.exists()
    assert read_checkpoint(tmp_path / "last.pt")["step"] == 1


@pytest.mark.parametrize(
    "flags",
    [
        {"durations": [math.nan]},
        {"durations": [10.0, math.inf]},
        {"positions": [math.nan]},
        {"needle_seconds": math.nan},
        {"snr_db": math.inf},
        {"max_seconds": math.nan},
        {"memory_limit_gb": -1.0},
        {"timeout_s": math.inf},
    ],
)
def test_niah_flags_out_of_range_are_refused(flags: dict) -> None:
    from kd.use.niah import NiahConfig

    with pytest.raises(ConfigError):
        NiahConfig(model="toy/tiny16k", needles="n.csv", **flags)


@pytest.mark.parametrize("window, hop", [(math.nan, None), (math.inf, None), (10.0, math.nan), (0.0, None)])
def test_predict_window_and_hop_must_be_finite_and_positive(shared_data: Path, window: float, hop) -> None:
    from kd.use.models import load_tagger
    from kd.use.predict import predict_file

    with pytest.raises(ConfigError, match="--window"):
        predict_file(load_tagger(TEACHER), shared_data / "clips" / CLIPS[3], window=window, hop=hop)


def test_predict_window_nan_through_the_cli_is_one_line(shared_data: Path) -> None:
    result = run_kd("predict", TEACHER, str(shared_data / "clips" / CLIPS[3]), "--window", "nan")
    assert result.returncode == 2 and "--window" in result.stderr and "Traceback" not in result.stderr


def test_another_policy_names_what_differs(made_store: Path, shared_data: Path, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="mixup_prob: 0.5 stored vs 0.8"):
        dump_teachers(_config(_manifest(shared_data, tmp_path), made_store, policy="strong"))
