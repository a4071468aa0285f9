"""`kd train-student`: targets from the store, checkpoints, exact resume after SIGKILL, DDP, refusals."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from kd.core.augment import draw_view
from kd.core.errors import ConfigError, StoreError
from kd.core.views import render_view
from kd.dump import DumpConfig, dump_teachers
from kd.stores import LogitStore
from kd.stores.targets import EnsembleSpec
from kd.students import create_student
from kd.students.checkpoint import load_student, read_checkpoint
from kd.train import TrainConfig, epoch_order, held_out, train_student
from kd.train.distill_data import DistillDataset
from tests.helpers import dump_toy_store, run_kd, start_kd

CLIPS = [
    "scaper_dogbark.wav",
    "librosa_robin.ogg",
    "panns_R9_ZSCveAHg_7s.mp3",
    "us8k_eval_siren_1.wav",
    "tflite_speech.wav",
    "esc50_1-100032-A-0.wav",
]


@pytest.fixture(scope="module")
def store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    clips = [shared_data / "clips" / c for c in CLIPS]
    teachers = ["toy/tiny16k", "toy/partial32k"]
    return dump_toy_store(tmp_path_factory.mktemp("train"), clips, teachers, views=2, clip_seconds=2.0)


def _config(store: Path, out: Path, **kwargs) -> TrainConfig:
    base = dict(
        student="dass-tiny",
        steps=4,
        batch_size=2,
        workers=0,
        val_fraction=0.0,
        warmup_steps=1,
        checkpoint_every=2,
        log_every=1,
        progress=False,
        drop_path=0.1,
    )
    return TrainConfig(store=str(store), out=str(out), **{**base, **kwargs})


def test_dataset_replays_the_dumped_view_and_builds_targets(store):
    opened = LogitStore(store)
    student = create_student("dass-tiny")
    spec = EnsembleSpec((("toy/tiny16k", 1.0), ("toy/partial32k", 3.0)))
    data = DistillDataset(opened, spec, student.frontend, student.sample_rate, augment=False)
    assert len(data) == 12
    item = data[data.rows.index((3, 1))]
    params = draw_view(opened.policy, int(opened.seeds()[3, 1]), 3, 6, 1)
    from kd.core.audio import resample

    wave = resample(render_view(opened.clip_table(), 3, params, opened.policy), opened.policy.sample_rate, 16000)
    assert torch.equal(item["features"], student.frontend(wave[None])[0])
    # Classes only tiny16k covers follow tiny16k alone; shared classes mix 1:3.
    tiny = opened.teacher("toy/tiny16k")
    top = int(tiny.indices[3, 1, 0])
    assert item["mask"].all()
    assert 0 < item["targets"][top] < 1
    only_tiny = EnsembleSpec((("toy/tiny16k", 1.0),))
    alone = DistillDataset(opened, only_tiny, student.frontend, 16000, augment=False)
    if not LogitStore(store).teacher("toy/partial32k").covered[top]:
        assert item["targets"][top] == pytest.approx(float(alone[alone.rows.index((3, 1))]["targets"][top]))


def test_clip_mean_weight_moves_each_target_towards_its_clips_mean(store):
    """Weight 1 gives the clip's mean target over its single-clip views (two-clip views: both means, mixed like
    their audio); 0.5 is half way; the view's own target stays what it was at 0."""
    opened, student = LogitStore(store), create_student("dass-tiny")
    spec = EnsembleSpec((("toy/tiny16k", 1.0), ("toy/partial32k", 3.0)))

    def dataset(weight):
        return DistillDataset(opened, spec, student.frontend, 16000, augment=False, clip_mean_weight=weight)

    plain, half, full = dataset(0.0), dataset(0.5), dataset(1.0)
    params = {row: draw_view(opened.policy, int(opened.seeds()[row]), row[0], 6, row[1]) for row in plain.rows}
    own = {row: plain[plain.rows.index(row)]["targets"] for row in plain.rows}
    means = [torch.stack([own[c, v] for v in (0, 1) if params[c, v].partner < 0]).mean(0) for c in range(6)]
    mixed = [row for row in plain.rows if params[row].partner >= 0]
    assert mixed and len(mixed) < len(plain.rows)
    for index, row in enumerate(plain.rows):
        p = params[row]
        mean = means[row[0]] if p.partner < 0 else p.mix_weight * means[row[0]] + (1 - p.mix_weight) * means[p.partner]
        torch.testing.assert_close(full[index]["targets"], mean)
        torch.testing.assert_close(half[index]["targets"], 0.5 * own[row] + 0.5 * mean)
        assert torch.equal(half[index]["mask"], plain[index]["mask"])
    assert not torch.allclose(full[plain.rows.index(mixed[0])]["targets"], own[mixed[0]])


def test_training_writes_checkpoints_metrics_and_a_loadable_student(store, tmp_path):
    result = train_student(_config(store, tmp_path / "run", teachers="toy/tiny16k:1,toy/partial32k:2"))
    assert result.step == 4 and np.isfinite(result.last_loss)
    state = read_checkpoint(tmp_path / "run" / "last.pt")
    assert {"model", "optimizer", "scheduler", "scaler", "ema", "step", "data", "rng", "config"} <= set(state)
    assert state["ensemble"]["teachers"] == [["toy/tiny16k", 1.0], ["toy/partial32k", 2.0]]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    model, labels = load_student(tmp_path / "run" / "last.pt")
    assert len(labels) == 527 and model(torch.randn(1, 16000)).shape == (1, 527)
    assert state["readout"] == {"kind": "sigmoid", "classes": None}  # BCE: sigmoid(logits) is the probability


def test_kl_student_reads_out_its_softmax_over_the_classes_its_teachers_cover(store, tmp_path):
    """KL leaves each clip's logit offset free: the loaded student's outputs must not depend on it."""
    train_student(_config(store, tmp_path / "run", teachers="toy/partial32k", loss="kl"))
    state = read_checkpoint(tmp_path / "run" / "last.pt")
    covered = LogitStore(store).teacher("toy/partial32k").covered
    assert not covered.all() and state["readout"] == {"kind": "softmax", "classes": np.flatnonzero(covered).tolist()}
    model, _ = load_student(tmp_path / "run" / "last.pt")
    wave = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        before = model(wave)
        model.head.bias += 7.0  # the same offset on every logit: KL's loss is blind to it, so must the outputs be
        torch.testing.assert_close(model(wave), before, atol=1e-4, rtol=1e-5)
    probs = torch.sigmoid(before)
    torch.testing.assert_close(probs[:, covered].sum(-1), torch.ones(2), atol=1e-4, rtol=0)
    assert float(probs[:, ~covered].max()) < 1e-30


def test_student_taught_chosen_classes_reads_out_only_those(store, tmp_path):
    """--classes: the distribution a KL student learns and reads out is over the chosen classes its teachers cover."""
    covered = LogitStore(store).teacher("toy/partial32k").covered
    labels = LogitStore(store).labels
    inside, outside = (labels.names[i] for i in np.flatnonzero(covered)[:2])
    missing = labels.names[int(np.flatnonzero(~covered)[0])]
    out = tmp_path / "run"
    train_student(_config(store, out, teachers="toy/partial32k", loss="kl", classes=f"{inside};{outside};{missing}"))
    state = read_checkpoint(out / "last.pt")
    assert state["readout"]["classes"] == [labels.index(inside), labels.index(outside)]
    assert state["ensemble"]["classes"] == sorted([inside, outside, missing], key=labels.index)
    model, _ = load_student(out / "last.pt")
    with torch.no_grad():
        probs = torch.sigmoid(model(torch.randn(2, 16000) * 0.1))
    torch.testing.assert_close(probs[:, [labels.index(inside), labels.index(outside)]].sum(-1), torch.ones(2))
    refused = run_kd("train-student", str(store), "--out", str(tmp_path / "b"), "--classes", "Dog;Wolfhound")
    assert refused.returncode == 2 and "'Wolfhound' from --classes not in the store's 527 classes" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "b").exists()


def test_resume_after_sigkill_equals_uninterrupted(store, tmp_path):
    flags = "--student dass-tiny --steps 8 --batch-size 2"
    flags += " --workers 0 --val-fraction 0 --warmup-steps 2 --checkpoint-every 1 --lr 3e-3"
    args = ["train-student", str(store), *flags.split()]
    assert run_kd(*args, "--out", str(tmp_path / "straight")).returncode == 0
    proc = start_kd(*args, "--out", str(tmp_path / "killed"))
    last = tmp_path / "killed" / "last.pt"
    deadline = time.time() + 240
    while time.time() < deadline and not last.exists():
        time.sleep(0.02)
    time.sleep(random.uniform(0.0, 1.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped_at = read_checkpoint(last)["step"]
    assert 1 <= stopped_at < 8, "the kill should land mid-run"
    resumed = run_kd(*args, "--out", str(tmp_path / "killed"), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = read_checkpoint(tmp_path / "straight" / "last.pt"), read_checkpoint(last)
    assert a["step"] == b["step"] == 8
    for key in a["model"]:
        assert (a["model"][key].double() - b["model"][key].double()).abs().max() < 1e-6, key
        assert (a["ema"][key].double() - b["ema"][key].double()).abs().max() < 1e-6, key


def test_validation_reports_agreement_and_held_out_manifest_metrics(store, shared_data, tmp_path):
    held_out = tmp_path / "held_out.csv"
    held_out.write_text(
        f"path,labels\n{shared_data / 'clips' / 'freesound_dog.wav'},Dog\n"
        f"{shared_data / 'clips' / 'freesound_rain.wav'},Rain\n"
    )
    train_student(_config(store, tmp_path / "run", steps=2, val_fraction=0.5, val_every=2, val_manifest=str(held_out)))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    validations = [r for r in records if "val_top5_overlap" in r]
    assert [r["step"] for r in validations] == [0, 2]
    for record in validations:
        assert 0 <= record["val_top5_overlap"] <= 1 and 0 < record["val_map_vs_teacher"] <= 1
        assert 0 < record["val_manifest_map"] <= 1 and 0 <= record["val_manifest_auc"] <= 1


def test_resume_refuses_changed_settings(store, tmp_path):
    train_student(_config(store, tmp_path / "run"))
    with pytest.raises(ConfigError, match="batch_size"):
        train_student(_config(store, tmp_path / "run", batch_size=3, resume=True))


def test_a_checkpoint_from_before_a_setting_existed_resumes_with_its_default(store, tmp_path):
    run = tmp_path / "run"
    train_student(_config(store, run, steps=2))
    state = torch.load(run / "last.pt", weights_only=False)
    del state["config"]["head_prior"]
    torch.save(state, run / "last.pt")
    assert train_student(_config(store, run, steps=4, resume=True)).step == 4
    with pytest.raises(ConfigError, match="head_prior"):
        train_student(_config(store, run, steps=6, resume=True, head_prior=False))


def test_data_order_is_pure_and_ranks_split_it():
    assert epoch_order(10, 0, 1, 0, 1) == epoch_order(10, 0, 1, 0, 1) != epoch_order(10, 0, 2, 0, 1)
    halves = epoch_order(10, 0, 1, 0, 2) + epoch_order(10, 0, 1, 1, 2)
    assert sorted(halves) == list(range(10))
    ids = [f"clip{i}.wav" for i in range(1000)]
    assert 50 < held_out(ids, 0.1).sum() < 150 and (held_out(ids, 0.1) == held_out(ids, 0.1)).all()


def test_ddp_with_two_processes(store, tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517"]
    flags = "--student dass-tiny --steps 2 --batch-size 2 --workers 0 --val-fraction 0 --warmup-steps 1"
    flags += " --checkpoint-every 1"
    result = subprocess.run(
        [*torchrun, "-m", "kd", "train-student", str(store), "--out", str(tmp_path / "ddp"), *flags.split()],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    state = read_checkpoint(tmp_path / "ddp" / "last.pt")
    assert state["world_size"] == 2 and state["step"] == 2


def test_refusals_are_one_line_with_exit_code_2(store, tmp_path):
    missing = run_kd("train-student", str(store), "--out", str(tmp_path / "a"), "--teachers", "yamnet", "--steps", "1")
    assert missing.returncode == 2 and "'yamnet' is not in this store" in missing.stderr
    assert "Traceback" not in missing.stderr
    nothing = run_kd("train-student", str(tmp_path / "nope.zarr"), "--out", str(tmp_path / "b"))
    assert nothing.returncode == 2 and "no logit store" in nothing.stderr


def test_incomplete_blocks_refused_unless_allowed(store, tmp_path):
    import shutil

    partial = tmp_path / "partial.zarr"
    shutil.copytree(store, partial)
    LogitStore(partial, mode="a").teacher("toy/tiny16k").done[1] = False
    with pytest.raises(StoreError, match="incomplete"):
        train_student(_config(partial, tmp_path / "run", teachers="toy/tiny16k"))
    result = train_student(_config(partial, tmp_path / "run", teachers="toy/tiny16k", allow_partial=True, steps=1))
    assert result.step == 1


def test_unreplayable_policy_version_is_refused(store, tmp_path):
    import shutil

    import zarr

    future = tmp_path / "future.zarr"
    shutil.copytree(store, future)
    root = zarr.open_group(str(future), mode="a")
    root.attrs["policy"] = {**root.attrs["policy"], "version": 99}
    result = run_kd("train-student", str(future), "--out", str(tmp_path / "run"), "--steps", "1")
    assert result.returncode == 2 and "version 99" in result.stderr


@pytest.fixture(scope="module")
def mn04_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real EfficientAT mn04 on six real clips: sparse, input-dependent targets over 527 classes, like AudioSet."""
    root = tmp_path_factory.mktemp("mn04")
    manifest = root / "clips.csv"
    manifest.write_text("path,labels\n" + "".join(f"{shared_data / 'clips' / c},Dog\n" for c in CLIPS))
    dump_teachers(
        DumpConfig(
            manifest=str(manifest),
            store=str(root / "s.zarr"),
            teachers=["efficientat/mn04_as"],
            checkpoints={"efficientat/mn04_as": str(shared_data / "weights" / "efficientat_mn04_as.pt")},
            views=2,
            clip_seconds=2.0,
            block_size=2,
            workers=0,
            progress=False,
        )
    )
    return root / "s.zarr"


def test_student_learns_more_than_the_teachers_average(mn04_store, tmp_path):
    """The ESC-50 collapse in small: from a zero output bias, the first input-independent gradient over 527 mostly
    empty classes drove the student to output the teachers' average for every clip (worse than that average after
    40 steps here). With the default prior start it fits the per-clip targets on the rows it trained on."""
    out = tmp_path / "run"
    train_student(
        _config(
            mn04_store,
            out,
            steps=40,
            batch_size=4,
            warmup_steps=5,
            lr=3e-3,
            ema_decay=0.0,
            drop_path=0.0,
            checkpoint_every=40,
        )
    )
    model, _ = load_student(out / "last.pt")
    data = DistillDataset(
        LogitStore(mn04_store), EnsembleSpec((("efficientat/mn04_as", 1.0),)), model.frontend, 16000, augment=False
    )
    with torch.no_grad():
        scores = torch.stack([torch.sigmoid(model.forward_features(data[i]["features"][None]))[0] for i in range(12)])
    targets = torch.stack([data[i]["targets"] for i in range(12)])
    error = float(((scores - targets) ** 2).mean())
    average = float(((targets.mean(0) - targets) ** 2).mean())
    assert error < 0.85 * average, (error, average)
    assert float(scores.std(0).mean()) > 0.2 * float(targets.std(0).mean())


def test_head_starts_at_the_prior_of_the_targets(mn04_store, tmp_path):
    from kd.train import setup_run

    run = setup_run(_config(mn04_store, tmp_path / "run"))
    targets, _ = run.train_data.mean_targets()
    expected = torch.logit(targets.clamp(1e-4, 1 - 1e-4))
    assert torch.allclose(run.model.head.bias, expected)
    assert not (tmp_path / "run").exists()  # setting up writes nothing


def test_online_kd_runs_teachers_on_fresh_views_each_epoch(store, tmp_path):
    from kd.train import setup_run
    from kd.train.online import OnlineDataset

    config = _config(store, tmp_path / "online", online=True, teachers="toy/tiny16k", steps=3)
    run = setup_run(config)
    data = run.train_data
    assert isinstance(data, OnlineDataset) and len(data) == 6
    first = data[2]
    data.set_epoch(1)
    again = data[2]
    assert not torch.equal(first["waves"], again["waves"])  # a new view every epoch
    data.set_epoch(0)
    assert torch.equal(data[2]["waves"], first["waves"])  # ... that is a pure function of (seed, clip, epoch)
    targets, mask = run.live_teachers.targets(first["waves"][None])
    from kd.core.audio import resample

    teacher = run.live_teachers.teachers[0][0]
    live = teacher.logits(resample(first["waves"][None], run.store.policy.sample_rate, teacher.card.sample_rate))
    assert mask.all() and torch.allclose(targets, torch.sigmoid(live), atol=1e-6)
    result = train_student(config)
    assert result.step == 3 and read_checkpoint(tmp_path / "online" / "last.pt")["config"]["online"]


def test_existing_run_is_never_overwritten_without_resume(store, tmp_path):
    out = tmp_path / "run"
    train_student(_config(store, out, steps=2))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    result = run_kd(
        "train-student", str(store), "--out", str(out), "--steps", "2", "--workers", "0", "--student", "dass-tiny"
    )
    assert result.returncode == 2 and "--resume" in result.stderr and "new --out" in result.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--lr", "inf"], "--lr must be a finite number"),
        (["--lr", "nan"], "--lr must be a finite number"),
        (["--grad-clip", "-1"], "--grad-clip must be positive"),
        (["--workers", "-2"], "--workers must be >= 0"),
        (["--temperature", "0"], "--temperature must be positive"),
        (["--views", "0"], "--views must be positive"),
        (["--clip-mean-weight", "1.5"], "--clip-mean-weight must be in [0, 1]"),
        (["--clip-mean-weight", "0.5", "--online"], "--clip-mean-weight averages stored targets"),
        (["--views", "9"], "the store has 2 views"),
        (["--device", "cuda:7" if torch.cuda.is_available() else "cuda"], "--device"),
        (["--device", "tpu"], "--device"),
        (["--teacher-checkpoint", "oops"], "expected TEACHER=PATH"),
    ],
)
def test_bad_numbers_and_devices_are_one_line(store, tmp_path, flags, message):
    out = tmp_path / "run"
    result = run_kd("train-student", str(store), "--out", str(out), "--steps", "2", "--warmup-steps", "1", *flags)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()  # nothing written before the settings are validated


def test_non_finite_loss_stops_before_any_checkpoint_is_damaged(store, tmp_path, monkeypatch):
    from kd.core.errors import TrainingError
    from kd.train import KDLoss

    out = tmp_path / "run"
    train_student(_config(store, out, steps=2))
    good = read_checkpoint(out / "last.pt")
    calls = {"n": 0}
    real = KDLoss.forward

    def poisoned(self, *args):
        calls["n"] += 1
        loss = real(self, *args)
        return loss * float("nan") if calls["n"] >= 2 else loss

    monkeypatch.setattr(KDLoss, "forward", poisoned)
    with pytest.raises(TrainingError, match=r"step 4: the loss is not finite"):
        train_student(_config(store, out, steps=4, resume=True))
    after = read_checkpoint(out / "last.pt")
    assert after["step"] == good["step"] == 2
    assert all(torch.equal(after["model"][k], good["model"][k]) for k in good["model"])


def test_resume_follows_a_moved_run_and_another_spelling_of_the_store(store, tmp_path):
    import shutil

    out = tmp_path / "run"
    train_student(_config(store, out, steps=2))
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    shutil.move(out, moved)
    relative = os.path.relpath(store, Path.cwd())
    result = train_student(_config(Path(relative), moved, steps=4, resume=True))
    assert result.step == 4
    records = [json.loads(line) for line in (moved / "metrics.jsonl").read_text().splitlines()]
    assert {"event": "resume", "step": 2} in records  # a reader can tell where the run was resumed
    other = tmp_path / "other.zarr"  # another store with the same teachers and settings, over other clips
    opened = LogitStore(store)
    manifest = tmp_path / "other.csv"
    manifest.write_text("path\n" + "".join(f"{p}\n" for p in opened.clip_table().paths[:4]))
    dump_teachers(
        DumpConfig(manifest=str(manifest), store=str(other), teachers=opened.teacher_names(), views=2, k=8,
                   clip_seconds=2.0, block_size=2, workers=0, progress=False)
    )  # fmt: skip
    with pytest.raises(ConfigError, match="another store"):
        train_student(_config(other, moved, steps=6, resume=True))


def test_warnings_a_user_needs(store, tmp_path, capsys):
    from kd.train import setup_run

    setup_run(_config(store, tmp_path / "a", val_fraction=0.3, warmup_steps=10, steps=4))
    err = capsys.readouterr().err
    assert "clips held out for validation" in err and "--warmup-steps 10 >= --steps 4" in err
