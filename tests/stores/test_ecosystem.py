"""The store in the Zarr ecosystem: xarray opens a kd store (dimension names, consolidated metadata kept current)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from kd.dump import DumpConfig, dump_teachers
from kd.stores import LogitStore
from kd.stores.logit_store import teacher_key

CLIPS = ["scaper_dogbark.wav", "librosa_robin.ogg", "esc50_1-100032-A-0.wav"]


def _dump(shared_data: Path, tmp_path: Path, store: Path, teacher: str) -> None:
    manifest = tmp_path / "clips.csv"
    manifest.write_text("path\n" + "\n".join(str(shared_data / "clips" / c) for c in CLIPS) + "\n")
    config = dict(views=2, k=5, block_size=2, batch_size=3, workers=0, progress=False)
    dump_teachers(DumpConfig(manifest=str(manifest), store=str(store), teachers=[teacher], **config))


def test_xarray_opens_the_store_and_each_teacher(shared_data: Path, tmp_path: Path) -> None:
    xr = pytest.importorskip("xarray")
    store = tmp_path / "s.zarr"
    _dump(shared_data, tmp_path, store, "toy/tiny16k")
    _dump(shared_data, tmp_path, store, "toy/partial32k")  # added later: consolidated metadata must include it
    kd_store = LogitStore(store)
    with warnings.catch_warnings():
        # A stale or missing consolidated record makes xarray warn and fall back: here that is a failure.
        warnings.simplefilter("error", RuntimeWarning)
        tree = xr.open_datatree(store, engine="zarr", consolidated=True)
        for name in ("toy/tiny16k", "toy/partial32k"):
            teacher = xr.open_zarr(store, group=f"teachers/{teacher_key(name)}", consolidated=True)
            assert teacher["logits"].dims == ("clip", "view", "rank") and teacher["done"].dims == ("block",)
            assert teacher.attrs["name"] == name
            stored = kd_store.teacher(name)
            np.testing.assert_array_equal(teacher["logits"].values, stored.logits[:])
            np.testing.assert_array_equal(teacher["indices"].values, stored.indices[:])
    assert tree["views"]["seed"].dims == ("clip", "view")
    np.testing.assert_array_equal(tree["views"]["seed"].values, kd_store.seeds())
    assert list(tree["clips"]["id"].values) == kd_store.clip_ids()
    assert set(tree["teachers"].children) == {teacher_key("toy/tiny16k"), teacher_key("toy/partial32k")}
