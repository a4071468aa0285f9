"""Stores named by fsspec URLs: the CLI passes them to zarr unchanged, `kd store info` counts their bytes with zarr,
a store kept in an S3-compatible object store (moto's server on the loopback interface, through s3fs) is summarised
and verified like a local one, and the whole loop (dump, resume, append, verify, train, resume) runs against one."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import numpy as np
import pytest

from kd.core.errors import StoreError
from kd.dump import DumpConfig, dump_teachers
from kd.stores import LogitStore
from kd.stores.inspect import summarise_store, verify_store
from kd.train import TrainConfig, train_student
from tests.helpers import run_kd

CLIPS = ["scaper_dogbark.wav", "librosa_robin.ogg", "esc50_1-100032-A-0.wav"]
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def local_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("url")
    manifest = folder / "clips.csv"
    manifest.write_text("path\n" + "\n".join(str(shared_data / "clips" / c) for c in CLIPS) + "\n")
    store = folder / "s.zarr"
    config = dict(views=2, k=5, clip_seconds=2.0, block_size=2, batch_size=3, workers=0, progress=False)
    dump_teachers(DumpConfig(manifest=str(manifest), store=str(store), teachers=["toy/tiny16k"], **config))
    return store


def _bytes_per_clip_view(stdout: str) -> float:
    row = next(line for line in stdout.splitlines() if "toy/tiny16k" in line)
    return float(re.split(r"\s*[│|]\s*", row.strip(" │|"))[5])


def test_store_commands_keep_file_urls_and_count_bytes_with_zarr(local_store: Path) -> None:
    url = f"file://{local_store}"
    info = run_kd("store", "info", url)
    assert info.returncode == 0, info.stderr
    assert f"store {url}" in info.stdout  # not Typer's Path spelling file:/...
    expected = summarise_store(str(local_store))[1][0].bytes_per_clip_view
    assert expected > 0 and _bytes_per_clip_view(info.stdout) == pytest.approx(expected, abs=0.05)
    verify = run_kd("store", "verify", url)
    assert verify.returncode == 0 and "consistent" in verify.stdout, verify.stdout + verify.stderr
    # A file:// URL is the local store itself (its lock files, its atomic writes): a rerun finds every block done.
    settings = dict(views=2, k=5, clip_seconds=2.0, block_size=2, batch_size=3, workers=0, progress=False)
    rerun = dump_teachers(
        DumpConfig(manifest=str(local_store.parent / "clips.csv"), store=url, teachers=["toy/tiny16k"], **settings)
    )
    assert (rerun.blocks_computed, rerun.blocks_skipped) == (0, 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> str:
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # fsspec reads FSSPEC_S3_* when imported, so kd commands in subprocesses get the endpoint from the environment
    # and this process from fsspec's config; credentials are moto's dummies.
    import fsspec.config

    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint})
    for key, value in {**DUMMY_CREDENTIALS, "FSSPEC_S3_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    yield endpoint
    server.stop()


def test_store_on_an_s3_object_store_is_summarised_and_verified(local_store: Path, s3_endpoint: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, key="testing", secret="testing")
    fs.mkdir("kd-test")
    fs.put(str(local_store), "kd-test/s.zarr", recursive=True)
    url = "s3://kd-test/s.zarr"
    info = run_kd("store", "info", url)
    assert info.returncode == 0, info.stderr
    local = summarise_store(str(local_store))[1][0].bytes_per_clip_view
    assert _bytes_per_clip_view(info.stdout) == pytest.approx(local, abs=0.05)
    verify = run_kd("store", "verify", url)
    assert verify.returncode == 0 and "consistent" in verify.stdout, verify.stdout + verify.stderr
    # A damaged object is found through the URL too.
    fs.rm(f"kd-test/s.zarr/teachers/{'toy--tiny16k'}/done/c/1")
    damaged = run_kd("store", "verify", url)
    assert damaged.returncode == 1 and "incomplete" in damaged.stdout, damaged.stdout + damaged.stderr


def test_dump_append_verify_train_and_resume_on_an_s3_store(
    local_store: Path, s3_endpoint: str, tmp_path: Path
) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, key="testing", secret="testing")
    fs.mkdir("kd-loop")
    url = "s3://kd-loop/s.zarr"
    # The local store's manifest and settings: the same clips and views, so the same bytes.
    manifest = str(local_store.parent / "clips.csv")
    settings = dict(manifest=manifest, store=url, views=2, k=5, clip_seconds=2.0, block_size=2, batch_size=3)
    settings.update(workers=0, progress=False)
    first = dump_teachers(DumpConfig(teachers=["toy/tiny16k"], **settings))
    assert (first.blocks_computed, first.blocks_skipped) == (2, 0)
    assert not fs.exists("kd-loop/s.zarr/.kd-locks"), "no lock objects on an object store"
    # The bytes do not depend on where the store lives.
    local, remote = LogitStore(local_store).teacher("toy/tiny16k").load(), LogitStore(url).teacher("toy/tiny16k").load()
    for name in local:
        np.testing.assert_array_equal(local[name], remote[name], err_msg=name)

    # Resume: a block whose done flag was lost is computed again, the other skipped.
    fs.rm("kd-loop/s.zarr/teachers/toy--tiny16k/done/c/1")
    resumed = dump_teachers(DumpConfig(teachers=["toy/tiny16k"], **settings))
    assert (resumed.blocks_computed, resumed.blocks_skipped) == (1, 1)

    # A teacher whose creation was killed (its group still marked as being built) is built again, not refused.
    fs.pipe(
        "kd-loop/s.zarr/teachers/toy--partial32k/zarr.json",
        b'{"zarr_format": 3, "node_type": "group", "attributes": {"kd_creating": "x-1"}}',
    )
    assert LogitStore(url).teacher_names() == ["toy/tiny16k"]
    appended = dump_teachers(DumpConfig(teachers=["toy/partial32k"], **settings))
    assert appended.blocks_computed == 2
    assert LogitStore(url).teacher_names() == ["toy/partial32k", "toy/tiny16k"]
    consolidated = json.loads(fs.cat_file("kd-loop/s.zarr/zarr.json"))["consolidated_metadata"]["metadata"]
    assert "teachers/toy--partial32k" in consolidated

    assert verify_store(url) == []  # `kd store verify` over S3 runs in the test above

    train = dict(store=url, student="dass-tiny", batch_size=2, workers=0, val_fraction=0.0, warmup_steps=1)
    train.update(checkpoint_every=1, log_every=1, progress=False)
    out = tmp_path / "run"
    assert train_student(TrainConfig(out=str(out), steps=2, **train)).step == 2
    result = train_student(TrainConfig(out=str(out), steps=3, resume=True, **train))
    assert result.step == 3 and np.isfinite(result.last_loss)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"event": "resume", "step": 2} in records


def test_missing_bucket_is_one_line(local_store: Path, s3_endpoint: str) -> None:
    manifest = str(local_store.parent / "clips.csv")
    with pytest.raises(StoreError, match="bucket 'no-such-bucket' does not exist"):
        dump_teachers(DumpConfig(manifest=manifest, store="s3://no-such-bucket/s.zarr", teachers=["toy/tiny16k"]))
    result = run_kd("store", "verify", "s3://no-such-bucket/s.zarr")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "bucket 'no-such-bucket' does not exist" in lines[0], lines


def test_unreachable_endpoint_is_one_line_and_creates_nothing(local_store: Path, tmp_path: Path) -> None:
    pytest.importorskip("s3fs")
    port = _free_port()  # nothing listens there
    env = {
        **DUMMY_CREDENTIALS,
        "FSSPEC_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_MAX_ATTEMPTS": "1",  # botocore's retries only make the test slower
    }
    manifest = str(local_store.parent / "clips.csv")
    for args in (
        ("dump-teachers", manifest, "s3://kd-test/s.zarr", "--teacher", "toy/tiny16k"),
        ("store", "verify", "s3://kd-test/s.zarr"),
        ("train-student", "s3://kd-test/s.zarr", "--out", str(tmp_path / "run"), "--steps", "1"),
    ):
        result = run_kd(*args, env=env)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, (args, result.stderr)
        assert "s3://kd-test/s.zarr: cannot reach the store" in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_refused_credentials_are_one_line(local_store: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import moto.settings

    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # moto now checks keys: ours are unknown
    manifest = str(local_store.parent / "clips.csv")
    for args in (
        ("dump-teachers", manifest, "s3://kd-test/s.zarr", "--teacher", "toy/tiny16k"),
        ("store", "verify", "s3://kd-test/s.zarr"),
    ):
        result = run_kd(*args, env={"AWS_MAX_ATTEMPTS": "1"})
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, (args, result.stderr)
        assert "s3://kd-test/s.zarr: access denied" in lines[0] and "credentials" in lines[0], lines
