"""Stores named by fsspec URLs: the CLI passes them to zarr unchanged, `kd store info` counts their bytes with zarr,
and a store kept in an S3-compatible object store (moto's server on the loopback interface, through s3fs) is
summarised and verified like a local one."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from kd.dump import DumpConfig, dump_teachers
from kd.stores.inspect import summarise_store
from tests.helpers import run_kd

CLIPS = ["scaper_dogbark.wav", "librosa_robin.ogg", "esc50_1-100032-A-0.wav"]


@pytest.fixture(scope="module")
def local_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("url")
    manifest = folder / "clips.csv"
    manifest.write_text("path\n" + "\n".join(str(shared_data / "clips" / c) for c in CLIPS) + "\n")
    store = folder / "s.zarr"
    config = dict(views=2, k=5, block_size=2, batch_size=3, workers=0, progress=False)
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


@pytest.fixture()
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> str:
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # fsspec reads FSSPEC_S3_* at import time in subprocesses (kd commands); credentials are moto's dummies.
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "FSSPEC_S3_ENDPOINT_URL": endpoint,
    }.items():
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
