"""An on-disk cache of the student's features of stored views, so epochs after the first skip decode, resampling,
waveform augmentation and the front end.

What is cached is the front end's output *before* the view's frequency masks: the masks are a pure function of the
view's parameters and are applied after reading, so a cached view is bit for bit the view `DistillDataset` renders.
A cache is a directory per key; the key digests everything the features depend on: the store's identity (clip ids,
durations, segment starts, the seed of every view), the augmentation policy, the front end (class and settings, with
the student's sample rate), the torch and torchaudio versions, the torch threads of the rendering process (the
fbank's bits differ between 1 and 2 threads) and `CACHE_FORMAT`. Any change gives another directory, never a stale
feature.

Layout of `DIR/<key>/`: `key.json` (what the key digests), `features.f32` (one row of [frames, bins] float32 per
(clip, view) of the store, row clip * views + view, a sparse file) and `done.u8` (one byte per row, 1 once its row
is durable). A row's data is written and synced before its byte is set, so a crash leaves at worst an unflagged
row, rendered again next time. Bytes rather than bits: DataLoader workers write distinct rows at once, and two
flags sharing a byte would race in read-modify-write. A run that stops leaves its rows for the next to use.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kd.core.errors import ConfigError

CACHE_FORMAT = 1
"""Bump when the layout or the meaning of a row changes: old caches then get other keys."""


def store_fingerprint(store) -> str:
    """What decides a store's rendered views: clip ids, durations and starts, and every view's seed (with shape)."""
    digest = hashlib.sha256("\n".join(store.clip_ids()).encode())
    seeds = np.ascontiguousarray(store.seeds(), dtype=np.uint64)
    digest.update(json.dumps(list(seeds.shape)).encode())
    digest.update(seeds.tobytes())
    digest.update(np.ascontiguousarray(store.durations(), dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(store.read("clips/start"), dtype=np.float64).tobytes())
    return digest.hexdigest()


def frontend_description(frontend: torch.nn.Module, sample_rate: int) -> dict:
    """The front end's class and settings, and the rate its input is resampled to."""
    settings = getattr(frontend, "settings", None)
    if settings is None:
        raise ConfigError(
            f"--feature-cache: the front end {type(frontend).__name__} reports no settings(), so a cache of its "
            "features could not tell its versions apart; train without --feature-cache"
        )
    kind = type(frontend)
    return {"class": f"{kind.__module__}.{kind.__qualname__}", "settings": settings(), "sample_rate": int(sample_rate)}


@dataclass(frozen=True)
class CacheKey:
    """Everything a cached row depends on, and its digest (the directory's name)."""

    fields: dict

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.fields, sort_keys=True).encode()).hexdigest()[:24]


def cache_key(fingerprint: str, policy_json: dict, frontend: dict, threads: int) -> CacheKey:
    import torchaudio

    return CacheKey(
        {
            "format": CACHE_FORMAT,
            "store": fingerprint,
            "policy": policy_json,
            "frontend": frontend,
            "render_threads": int(threads),
            "torch": torch.__version__,
            "torchaudio": torchaudio.__version__,
        }
    )


class FeatureCache:
    """Rows of pre-mask student features for (clip, view) rows of one store; safe to share with DataLoader workers.

    Each process opens (or creates) the directory of its own key on first use, so workers, whose torch runs one
    thread, and a main process with more threads never read each other's bits.

    Args:
        directory: where the key directories live (created if missing).
        store: the logit store whose views are cached.
        frontend: the student's front end (its `settings()` are part of the key).
        sample_rate: the student's sample rate.
        render: maps a waveform [samples] at the policy's rate to the features the dataset computes; used once per
            key to learn the row shape (on silence).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        store,
        frontend: torch.nn.Module,
        sample_rate: int,
        render: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        self.directory = Path(directory)
        self.num_rows = store.num_clips * store.num_views
        self.num_samples = store.policy.num_samples
        self.fingerprint = store_fingerprint(store)
        self.policy_json = store.policy.to_json()
        self.frontend = frontend_description(frontend, sample_rate)
        self.render = render
        self._slot: _Slot | None = None
        self._owner: tuple[int, int] | None = None

    def key(self) -> CacheKey:
        return cache_key(self.fingerprint, self.policy_json, self.frontend, torch.get_num_threads())

    def get(self, row: int) -> torch.Tensor | None:
        """The cached features of `row`, or None if that row is not (completely) written yet."""
        return self._open().get(row)

    def put(self, row: int, features: torch.Tensor) -> None:
        self._open().put(row, features)

    def filled(self) -> int:
        """Rows of this process's key that are complete."""
        return int(self._open().done.sum())

    def path(self) -> Path:
        return self._open().path

    def __getstate__(self) -> dict:
        # Open files stay in the process that opened them; another process opens its own.
        return {**self.__dict__, "_slot": None, "_owner": None}

    def _open(self) -> _Slot:
        owner = (os.getpid(), torch.get_num_threads())
        if self._slot is None or self._owner != owner:
            key = self.key()
            with torch.no_grad():
                probe = self.render(torch.zeros(self.num_samples))
            self._slot = _Slot.open(self.directory, key, self.num_rows, tuple(probe.shape), str(probe.dtype))
            self._owner = owner
        return self._slot


class _Slot:
    """The open files of one key directory."""

    def __init__(self, path: Path, num_rows: int, shape: tuple[int, ...]) -> None:
        self.path, self.shape = path, shape
        self.row_bytes = int(np.prod(shape)) * 4
        self.features = np.memmap(path / "features.f32", dtype=np.float32, mode="r", shape=(num_rows, *shape))
        self.done = np.memmap(path / "done.u8", dtype=np.uint8, mode="r", shape=(num_rows,))
        self.feature_fd = os.open(path / "features.f32", os.O_WRONLY)
        self.done_fd = os.open(path / "done.u8", os.O_WRONLY)

    @classmethod
    def open(cls, directory: Path, key: CacheKey, num_rows: int, shape: tuple[int, ...], dtype: str) -> _Slot:
        if dtype != "torch.float32":
            raise ConfigError(f"--feature-cache: the front end gives {dtype} features; the cache holds float32")
        fields = {**key.fields, "rows": num_rows, "row_shape": list(shape)}
        path = directory / key.digest
        if not (path / "key.json").is_file():
            _create(directory, path, fields, num_rows, shape)
        found = json.loads((path / "key.json").read_text())
        if found != json.loads(json.dumps(fields)):
            raise ConfigError(f"--feature-cache: {path} holds another cache than its name says; delete that directory")
        return cls(path, num_rows, shape)

    def get(self, row: int) -> torch.Tensor | None:
        if not self.done[row]:
            return None
        return torch.from_numpy(np.array(self.features[row]))

    def put(self, row: int, features: torch.Tensor) -> None:
        data = np.ascontiguousarray(features.detach().cpu().numpy(), dtype=np.float32)
        if data.shape != self.shape:
            raise ValueError(f"features of shape {data.shape} for a cache of rows {self.shape}")
        _write_all(self.feature_fd, data.tobytes(), row * self.row_bytes)
        os.fdatasync(self.feature_fd)  # the data is durable before the flag says so
        _write_all(self.done_fd, b"\x01", row)

    def __del__(self) -> None:
        for fd in (getattr(self, "feature_fd", None), getattr(self, "done_fd", None)):
            if fd is not None:
                os.close(fd)


def _create(directory: Path, path: Path, fields: dict, num_rows: int, shape: tuple[int, ...]) -> None:
    """Builds the key directory aside and renames it into place; a process that loses the race uses the winner's."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=directory))
    try:
        (tmp / "key.json").write_text(json.dumps(fields, indent=2, sort_keys=True))
        with open(tmp / "features.f32", "wb") as f:
            f.truncate(num_rows * int(np.prod(shape)) * 4)  # sparse: only written rows take disk
        with open(tmp / "done.u8", "wb") as f:
            f.truncate(num_rows)
        os.rename(tmp, path)
    except OSError:
        if not (path / "key.json").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written
