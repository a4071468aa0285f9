"""The feature cache of stored views: bit-identical to rendering, keyed so nothing stale is served, resumable,
and a training run with it equals one without."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from kd.core.frontends import KaldiFbank
from kd.stores import LogitStore
from kd.stores.targets import EnsembleSpec
from kd.students import create_student
from kd.students.checkpoint import read_checkpoint
from kd.train import TrainConfig, train_student
from kd.train.distill_data import DistillDataset
from kd.train.feature_cache import cache_key, frontend_description
from tests.helpers import dump_toy_store

CLIPS = ["scaper_dogbark.wav", "librosa_robin.ogg", "us8k_eval_siren_1.wav", "esc50_1-100032-A-0.wav"]
SPEC = EnsembleSpec((("toy/tiny16k", 1.0),))


@pytest.fixture(scope="module")
def store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    clips = [shared_data / "clips" / c for c in CLIPS]
    return dump_toy_store(tmp_path_factory.mktemp("cache"), clips, ["toy/tiny16k"], views=3, clip_seconds=1.0)


def _dataset(store: Path, cache: Path | None, frontend: torch.nn.Module | None = None) -> DistillDataset:
    student = create_student("dass-tiny")
    return DistillDataset(
        LogitStore(store), SPEC, frontend or student.frontend, student.sample_rate, feature_cache=cache
    )


def test_a_cached_view_equals_a_freshly_rendered_one_bit_for_bit(store, tmp_path):
    fresh, cached = _dataset(store, None), _dataset(store, tmp_path / "fc")
    for i in range(len(fresh)):
        filling = cached[i]  # renders and writes the row
        clip, view = cached.rows[i]
        assert cached.cache.get(clip * cached.num_views + view) is not None
        reading = cached[i]  # served from the cache, masks applied after
        expected = fresh[i]
        for item in (filling, reading):
            assert torch.equal(item["features"], expected["features"])
            assert torch.equal(item["targets"], expected["targets"]) and torch.equal(item["labels"], expected["labels"])
    assert cached.cache.filled() == len(fresh)


def test_another_policy_or_front_end_gets_another_key_and_no_stale_row(store, tmp_path):
    data = _dataset(store, tmp_path / "fc")
    data[0]
    key = data.cache.key()
    policy = dataclasses.asdict(dataclasses.replace(data.policy, gain_db=3.0))
    assert cache_key(data.cache.fingerprint, policy, data.cache.frontend, 1).digest != key.digest
    frontend = data.frontend
    other = KaldiFbank(dataclasses.replace(frontend.config, mean=frontend.config.mean + 1e-3))
    assert cache_key(data.cache.fingerprint, data.policy.to_json(), frontend_description(other, 16000), 1) != key
    assert frontend_description(frontend, 32000) != data.cache.frontend  # the student's rate is part of it
    changed = _dataset(store, tmp_path / "fc", frontend=other)
    clip, view = changed.rows[0]
    assert changed.cache.get(clip * changed.num_views + view) is None  # nothing rendered by the old front end
    assert changed.cache.path() != data.cache.path()
    assert torch.equal(changed[0]["features"], _dataset(store, None, frontend=other)[0]["features"])
    assert json.loads((data.cache.path() / "key.json").read_text())["policy"] == data.policy.to_json()


def test_a_partly_filled_cache_resumes_and_an_unflagged_row_is_rendered_again(store, tmp_path):
    first = _dataset(store, tmp_path / "fc")
    for i in range(3):
        first[i]
    path = first.cache.path()
    # A row whose data was written but whose flag never was (a crash in between) is not served.
    done = bytearray((path / "done.u8").read_bytes())
    done[first.rows[2][0] * first.num_views + first.rows[2][1]] = 0
    (path / "done.u8").write_bytes(bytes(done))
    second = _dataset(store, tmp_path / "fc")
    assert second.cache.path() == path and second.cache.filled() == 2
    fresh = _dataset(store, None)
    rows = [c * second.num_views + v for c, v in second.rows]
    assert [second.cache.get(r) is not None for r in rows[:4]] == [True, True, False, False]
    for i in range(len(second)):
        assert torch.equal(second[i]["features"], fresh[i]["features"])
    assert second.cache.filled() == len(second)


def test_cache_opens_its_own_key_per_process_thread_count(store, tmp_path):
    data = _dataset(store, tmp_path / "fc")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = data.cache.path()
        torch.set_num_threads(2)
        two = data.cache.path()
    finally:
        torch.set_num_threads(threads)
    assert one != two  # the fbank's bits differ between 1 and 2 threads


@pytest.mark.parametrize("workers", [0, 2])
def test_training_with_the_cache_equals_training_without(store, tmp_path, monkeypatch, workers):
    def run(name: str, cache: Path | None) -> tuple[dict, list]:
        config = TrainConfig(
            store=str(store),
            out=str(tmp_path / name),
            student="dass-tiny",
            steps=6,  # two epochs of the 12 rows: the second reads what the first wrote
            batch_size=4,
            workers=workers,
            val_fraction=0.0,
            warmup_steps=1,
            checkpoint_every=6,
            log_every=1,
            progress=False,
            feature_cache=None if cache is None else str(cache),
        )
        train_student(config)
        state = read_checkpoint(tmp_path / name / "last.pt")
        losses = [json.loads(line)["loss"] for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        return state, losses

    def not_rendered(*args, **kwargs):
        raise AssertionError("a warm cache rendered a view")

    plain, plain_losses = run("plain", None)
    for name in ("cold", "warm"):  # an empty cache, then the one the cold run filled
        if name == "warm":
            monkeypatch.setattr("kd.train.distill_data.render_view", not_rendered)  # forked workers inherit it
        state, losses = run(name, tmp_path / "fc")
        assert losses == plain_losses
        for part in ("model", "ema"):
            assert all(torch.equal(state[part][k], plain[part][k]) for k in plain[part])
        (key,) = [p for p in (tmp_path / "fc").iterdir() if not p.name.startswith(".")]
        assert sum((key / "done.u8").read_bytes()) == 12  # 4 clips x 3 views, all written by the cold run
