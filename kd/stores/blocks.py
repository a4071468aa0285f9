"""The store's writing protocol: one writer per block, a block's rows written as whole shards, `done` after data.

A shard is rewritten whole on every write, so two writers on one block lose rows (docs/store.md): a writer first
claims the block (`block_claims`), collects every row of the block in a `BlockBuffer`, writes the shards, and only
then sets the block's done flag. The dump only decides which blocks to run and where.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np

from kd.core.leftovers import is_dead
from kd.stores.logit_store import LogitStore, TeacherGroup, local_path, teacher_key


def block_claims(store_path: str, teacher_names: list[str]) -> BlockLocks | DriverClaims:
    """How this dump claims blocks: lock files in a local store, the driver's own assignment in an object store."""
    local = local_path(store_path)
    return DriverClaims() if local is None else BlockLocks(local, teacher_names)


class BlockLocks:
    """Lock files that keep two dumps from writing the same block; a dead holder's lock is taken over."""

    def __init__(self, store_path: str | Path, teacher_names: list[str]) -> None:
        self.dir = Path(store_path) / ".kd-locks" / "+".join(sorted(teacher_key(t) for t in teacher_names))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.me = f"{socket.gethostname()} {os.getpid()}"

    def _path(self, block: int) -> Path:
        return self.dir / f"block-{block:08d}.lock"

    def claim(self, block: int) -> bool:
        path = self._path(block)
        for _ in range(3):
            # Another dump's cleanup may remove the (empty) lock directory at any moment.
            self.dir.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileNotFoundError:
                continue
            except FileExistsError:
                if not self._stale(path):
                    return False
                path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(self.me)
            return True
        return False

    def held_elsewhere(self, block: int) -> bool:
        path = self._path(block)
        return path.exists() and not self._stale(path)

    def release(self, block: int) -> None:
        path = self._path(block)
        if path.exists() and path.read_text() == self.me:
            path.unlink()

    def _stale(self, path: Path) -> bool:
        try:
            host, pid = path.read_text().split()
        except (OSError, ValueError):
            return True
        return is_dead(host, int(pid)) if pid.isdigit() else True

    def cleanup(self) -> None:
        """Removes locks whose holder is provably dead (a SIGKILLed dump's), then the lock folders if empty."""
        for path in self.dir.glob("block-*.lock"):
            if self._stale(path):
                path.unlink(missing_ok=True)
        for parent in (self.dir, self.dir.parent):
            try:
                parent.rmdir()
            except OSError:
                break


class DriverClaims:
    """Claims in an object store, which has no exclusive create that fsspec offers everywhere: the driver hands each
    block to one writer (itself, or one dask task), so one dump is safe; two dumps at once into one URL store are
    not (docs/store.md)."""

    def claim(self, block: int) -> bool:
        return True

    def release(self, block: int) -> None:
        pass

    def cleanup(self) -> None:
        pass


class BlockBuffer:
    """One block's rows for each teacher still to write; filled batch by batch, written whole by `write`."""

    def __init__(self, store: LogitStore, block: int, ks: dict[str, int]) -> None:
        """Args:
        ks: top-k of each teacher to collect.
        """
        rows = store.block_rows(block)
        n, v = rows.stop - rows.start, store.num_views
        self.store = store
        self.block = block
        self.first = rows.start
        self.expected = n * v
        self.seen = 0
        # Rows never filled keep the fill values of a failed view: NaN logits, index -1.
        self.data = {
            name: {
                "logits": np.full((n, v, k), np.nan, np.float16),
                "indices": np.full((n, v, k), -1, np.int16),
                "rest": np.full((n, v), np.nan, np.float16),
                "failed": np.zeros((n, v), bool),
            }
            for name, k in ks.items()
        }

    @property
    def complete(self) -> bool:
        return self.seen == self.expected

    def add(self, items: list[tuple[int, int]], outputs: dict[str, dict], failed: dict[str, np.ndarray]) -> None:
        """Adds a batch of (clip, view) items: each teacher's top-k output and which of its rows failed."""
        for name, out in outputs.items():
            data = self.data[name]
            for row, (clip, view) in enumerate(items):
                c = clip - self.first
                if failed[name][row]:
                    data["failed"][c, view] = True
                    continue
                data["logits"][c, view] = out["logits"][row]
                data["indices"][c, view] = out["indices"][row]
                data["rest"][c, view] = out["rest"][row]
        self.seen += len(items)

    def write(self, groups: dict[str, TeacherGroup], mark_failed_done: bool) -> bool:
        """Writes the block for each teacher; marks it done unless it has failures that were not accepted."""
        has_failures = any(d["failed"].any() for d in self.data.values())
        done = not has_failures or mark_failed_done
        for name, data in self.data.items():
            self.store.write_block(groups[name], self.block, data, done=done)
        return done


def all_done(groups: dict[str, TeacherGroup], block: int) -> bool:
    """Whether every one of `groups` has `block` marked done."""
    return all(bool(g.done[block]) for g in groups.values())


def pending_teachers(groups: dict[str, TeacherGroup], block: int) -> list[str]:
    """The teachers of `groups` that still need `block`, read once per block (one chunk read each)."""
    return [name for name, group in groups.items() if not group.done[block]]
