"""The Zarr v3 logit store (layout in docs/store.md).

Rules that keep parallel writers safe (Zarr facts in docs/architecture.md): arrays and attributes are made only by the
driver; a task writes whole shards (one block of clips) and nothing else; a block's `done` flag lives in its own chunk
and is set only after the block's data is written; workers never touch attributes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from kd.core.augment import AugmentPolicy, view_seed
from kd.core.errors import KdError, StoreDamaged, StoreError
from kd.core.labels import LabelMapping, LabelSpace
from kd.core.leftovers import remove_dead, writer_tag
from kd.core.manifest import Manifest
from kd.core.version import __version__
from kd.core.views import ClipTable

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

STORE_VERSION = 1
REQUIRED_ATTRS = ("label_space", "policy", "num_views", "base_seed", "block_size", "num_clips", "audio_root")
# Measured best for top-k float16/int16 rows (docs/architecture.md, docs/benchmarks.md): zstd level 5, byte shuffle.
TOPK_CODEC = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
ROWS_PER_CHUNK = 64
# Zarr v3 dimension names, so xarray (open_zarr, open_datatree) and other readers label the axes.
CLIP_DIMS = ("clip",)
VIEW_DIMS = ("clip", "view")
TOPK_DIMS = ("clip", "view", "rank")
TMP_DIR = ".kd-tmp"
"""Inside a store, where teacher groups are built before their rename into `teachers/`."""
CREATING = "kd_creating"
"""Attribute a group carries while it is built (its builder's tag); the builder's last write replaces it."""


def teacher_key(name: str) -> str:
    """Group name of a teacher: registry names contain '/', which would nest groups."""
    return name.replace("/", "--").replace(":", "~")


def damaged(store_path: str, name: str, error: BaseException) -> StoreDamaged:
    """The one-line error for an array or group that exists but cannot be read (a bad chunk, garbage metadata)."""
    detail = (str(error).strip().splitlines() or [""])[0][:160]
    return StoreDamaged(store_path, f"{name} cannot be read ({type(error).__name__}: {detail})")


def read_array(store_path: str, group: zarr.Group, name: str, label: str | None = None) -> np.ndarray:
    """`group[name]` read whole; any failure to decode it becomes one `damaged` line naming `label`."""
    try:
        return group[name][:]
    except Exception as e:  # zarr, numcodecs and blosc raise many types for a damaged chunk or missing metadata
        raise damaged(store_path, label or name, e) from None


@dataclass
class TeacherGroup:
    """One teacher's arrays and provenance inside a store."""

    name: str
    group: zarr.Group
    store_path: str = ""

    @property
    def attrs(self) -> dict:
        return self.group.attrs.asdict()

    @property
    def k(self) -> int:
        return int(self.attrs["k"])

    @property
    def logits(self) -> zarr.Array:
        return self.group["logits"]

    @property
    def indices(self) -> zarr.Array:
        return self.group["indices"]

    @property
    def rest(self) -> zarr.Array:
        return self.group["rest"]

    @property
    def failed(self) -> zarr.Array:
        return self.group["failed"]

    @property
    def done(self) -> zarr.Array:
        return self.group["done"]

    @property
    def covered(self) -> np.ndarray:
        """Which store classes this teacher has a logit for."""
        return np.asarray(self.attrs["covered"], dtype=bool)

    @property
    def label_index(self) -> np.ndarray:
        """For each of the teacher's own classes, its store class or -1."""
        return np.asarray(self.attrs["label_mapping"]["index"], dtype=np.int64)

    def read(self, name: str) -> np.ndarray:
        """One of the teacher's arrays, whole (a damaged one is a one-line StoreError naming it)."""
        return read_array(self.store_path, self.group, name, f"teachers/{teacher_key(self.name)}/{name}")

    def done_blocks(self) -> np.ndarray:
        return np.asarray(self.read("done"), dtype=bool)

    def load(self) -> dict[str, np.ndarray]:
        """All arrays in memory: a whole-array read is ~50x cheaper per row than row reads (docs/architecture.md)."""
        return {
            **{name: self.read(name) for name in ("logits", "indices", "rest", "failed")},
            "covered": self.covered,
        }


class LogitStore:
    """A logit store opened for reading (and, from the driver, for adding teachers)."""

    def __init__(self, path: str | os.PathLike, mode: str = "r") -> None:
        self.path = store_path(path)
        if not _published(self.path):
            raise StoreError(f"{path}: no logit store here (create one with `kd dump-teachers`)")
        try:
            self.root = zarr.open_group(self.path, mode=mode, use_consolidated=False)
        except Exception as e:  # zarr raises several types for a non-store directory
            raise StoreError(f"{path}: not a readable Zarr store ({type(e).__name__}: {e})") from None
        attrs = self.root.attrs.asdict()
        if attrs.get("kd_store_version") != STORE_VERSION:
            raise StoreError(
                f"{path}: not a kd logit store of version {STORE_VERSION} (found {attrs.get('kd_store_version')})"
            )
        self.attrs = attrs
        missing = [key for key in REQUIRED_ATTRS if key not in attrs]
        if missing:
            raise StoreError(f"{path}: the store's attributes lack {', '.join(missing)}; the store is damaged")
        try:
            self.policy = AugmentPolicy.from_json(attrs["policy"])
            self.labels = LabelSpace.from_json(attrs["label_space"])
            self.num_views = int(attrs["num_views"])
            self.block_size = int(attrs["block_size"])
            self.num_clips = int(attrs["num_clips"])
        except (KeyError, TypeError, ValueError, KdError) as e:
            raise StoreError(f"{path}: the store's attributes are malformed ({type(e).__name__}: {e})") from None
        if min(self.num_views, self.block_size) < 1 or self.num_clips < 0:
            raise StoreError(f"{path}: the store's attributes are malformed (num_views, block_size or num_clips)")

    @property
    def base_seed(self) -> int:
        """The seed every view seed derives from (with the clip id and view index)."""
        return int(self.attrs["base_seed"])

    @property
    def num_blocks(self) -> int:
        return -(-self.num_clips // self.block_size)

    def block_rows(self, block: int) -> slice:
        return slice(block * self.block_size, min(self.num_clips, (block + 1) * self.block_size))

    def read(self, name: str) -> np.ndarray:
        """An array of the clips or views table, whole (a damaged one is a one-line StoreError naming it)."""
        return read_array(self.path, self.root, name)

    def clip_ids(self) -> list[str]:
        return [str(s) for s in self.read("clips/id")]

    def clip_labels(self) -> list[tuple[str, ...]]:
        return [tuple(x for x in str(s).split(";") if x) for s in self.read("clips/labels")]

    def durations(self) -> np.ndarray:
        """Clip durations from the headers; NaN where a clip was unreadable when last read."""
        return self.read("clips/duration")

    def set_durations(self, durations: np.ndarray) -> None:
        """Driver only: records durations read again (a clip unreadable at creation may have been fixed since)."""
        self.root["clips/duration"][:] = np.asarray(durations, dtype="float64")

    def clip_table(self, audio_root: str | os.PathLike | None = None) -> ClipTable:
        """Paths resolved against `audio_root` (default: the manifest's directory at dump time)."""
        root = Path(audio_root or self.attrs["audio_root"])
        paths = [str(p) if Path(p).is_absolute() else str(root / p) for p in self.read("clips/path")]
        return ClipTable(paths=paths, starts=self.read("clips/start"), durations=self.durations())

    def seeds(self) -> np.ndarray:
        return self.read("views/seed")

    def teacher_names(self) -> list[str]:
        try:
            if "teachers" not in self.root:
                return []
            # A group still carrying CREATING is being built (or its builder died): not a teacher yet.
            return sorted(g.attrs["name"] for _, g in self.root["teachers"].groups() if CREATING not in g.attrs)
        except Exception as e:  # garbage or incomplete zarr.json in a teacher group
            raise damaged(self.path, "teachers/", e) from None

    def teacher(self, name: str) -> TeacherGroup:
        key = f"teachers/{teacher_key(name)}"
        try:
            group = self.root[key] if key in self.root else None
            if group is not None:
                # Provenance every reader needs: a group without it is damaged, not merely unusual.
                int(group.attrs["k"]), group.attrs["covered"], group.attrs["label_mapping"]["index"]
        except Exception as e:  # garbage zarr.json, or attributes missing
            raise damaged(self.path, key, e) from None
        if group is None:
            known = ", ".join(self.teacher_names()) or "none"
            raise StoreError(f"{self.path}: teacher {name!r} is not in this store (stored: {known})")
        return TeacherGroup(name, group, self.path)

    def add_teacher(self, name: str, provenance: dict, mapping: LabelMapping, k: int) -> TeacherGroup:
        """Creates (driver only) a teacher's arrays; an existing group must have identical provenance."""
        key = teacher_key(name)
        covered = mapping.covered
        k = min(k, int(covered.sum()))
        attrs = {
            "name": name,
            **provenance,
            "k": k,
            "kd_version": __version__,
            "label_mapping": {
                "source": mapping.source.to_json(),
                "index": mapping.index.tolist(),
                "unmapped_source": mapping.unmapped_source,
                "uncovered_target": mapping.uncovered_target,
            },
            "covered": covered.tolist(),
        }
        final = f"{self.path}/teachers/{key}"
        if not _published(final):
            _create_atomically(
                final, lambda tmp: _build_teacher_group(tmp, self, k, attrs), tmp_dir=f"{self.path}/{TMP_DIR}"
            )
            self.root = zarr.open_group(self.path, mode="a", use_consolidated=False)
        existing = self.teacher(name)
        _check_same_teacher(self.path, existing.attrs, attrs)
        return existing

    def consolidate(self) -> None:
        """Driver only, after every writer is done: rewrites the consolidated metadata that xarray and other Zarr
        readers open by (kd itself always reads the live metadata)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Consolidated metadata", UserWarning)  # zarr: not in the v3 spec yet
            zarr.consolidate_metadata(self.path)

    def write_block(self, teacher: TeacherGroup, block: int, data: dict[str, np.ndarray], done: bool = True) -> None:
        """Writes one block's shard of every array, then (only then, and only if `done`) marks the block done."""
        rows = self.block_rows(block)
        teacher.logits[rows] = data["logits"]
        teacher.indices[rows] = data["indices"]
        teacher.rest[rows] = data["rest"]
        teacher.failed[rows] = data["failed"]
        if done:
            teacher.done[block] = True


def _build_teacher_group(path: str, store: LogitStore, k: int, attrs: dict) -> None:
    group = zarr.open_group(path, mode="w-", attributes={CREATING: writer_tag()})
    n, v, b = store.num_clips, store.num_views, store.block_size
    rows = min(ROWS_PER_CHUNK, b)
    common = {"shards": (b, v, k), "chunks": (rows, v, k), "compressors": TOPK_CODEC, "dimension_names": TOPK_DIMS}
    group.create_array("logits", shape=(n, v, k), dtype="float16", fill_value=np.nan, **common)
    group.create_array("indices", shape=(n, v, k), dtype="int16", fill_value=-1, **common)
    group.create_array(
        "rest",
        shape=(n, v),
        dtype="float16",
        fill_value=np.nan,
        shards=(b, v),
        chunks=(rows, v),
        compressors=TOPK_CODEC,
        dimension_names=VIEW_DIMS,
    )
    group.create_array(
        "failed",
        shape=(n, v),
        dtype="bool",
        fill_value=False,
        shards=(b, v),
        chunks=(rows, v),
        dimension_names=VIEW_DIMS,
    )
    group.create_array(
        "done", shape=(store.num_blocks,), dtype="bool", fill_value=False, chunks=(1,), dimension_names=("block",)
    )
    group.attrs.put(attrs)


def _create_atomically(final: str, build: Callable[[str], None], tmp_dir: str | None = None) -> None:
    """Builds a group at a temporary path and renames it into place, so concurrent creators can't interleave.

    Object stores have no rename: there the one driver builds the group in place, and an unfinished one (its
    builder was killed; the caller found nothing finished at `final`) is removed and built again.
    """
    if local_path(final) is None:
        fs, key = _object_store(final)
        if fs.exists(key):
            fs.rm(key, recursive=True)
        build(final)
        return
    # Inside a store, temporary groups live outside `teachers/` so readers listing teachers never see them.
    parent = Path(tmp_dir) if tmp_dir else Path(final).parent
    parent.mkdir(parents=True, exist_ok=True)
    # A creator killed before its rename left its temporary group; this name's owner is known dead only then.
    remove_dead(parent, f"{Path(final).name}.tmp-{{tag}}")
    tmp = str(parent / f"{Path(final).name}.tmp-{writer_tag()}")
    shutil.rmtree(tmp, ignore_errors=True)
    build(tmp)
    try:
        os.rename(tmp, final)
    except OSError:
        # Another process created it first; theirs stands and the caller checks it matches.
        shutil.rmtree(tmp, ignore_errors=True)
        if not _published(final):
            raise
    finally:
        if tmp_dir:
            with contextlib.suppress(OSError):
                os.rmdir(tmp_dir)


def create_store(
    path: str | os.PathLike,
    manifest: Manifest,
    durations: np.ndarray,
    labels: LabelSpace,
    policy: AugmentPolicy,
    num_views: int,
    base_seed: int = 0,
    block_size: int = 512,
) -> LogitStore:
    """Creates a store (driver only), or opens an existing one after checking it was made from the same inputs."""
    path = store_path(path)
    records = manifest.to_records()
    ids = [r["id"] for r in records]
    fingerprint = {
        "kd_store_version": STORE_VERSION,
        "label_space": labels.to_json(),
        "policy": policy.to_json(),
        "num_views": num_views,
        "base_seed": base_seed,
        "block_size": block_size,
        "num_clips": len(records),
    }
    if store_exists(path):
        store = LogitStore(path, mode="a")
        _check_same_store(store, fingerprint, ids, [r["path"] for r in records])
        return store
    meta = {
        **fingerprint,
        "kd_version": __version__,
        "manifest": {"source": manifest.source, "num_clips": len(records)},
        "audio_root": str(manifest.root),
        "clips_sha256": clips_digest(
            {
                "id": ids,
                "path": [r["path"] for r in records],
                "start": [r["start"] or 0.0 for r in records],
                "end": [np.nan if r["end"] is None else r["end"] for r in records],
                "labels": [";".join(r["labels"]) for r in records],
            }
        ),
    }
    _create_atomically(path, lambda tmp: _build_store(tmp, records, durations, base_seed, num_views, meta))
    store = LogitStore(path, mode="a")
    _check_same_store(store, fingerprint, ids, [r["path"] for r in records])
    return store


def _build_store(
    path: str, records: list[dict], durations: np.ndarray, base_seed: int, num_views: int, meta: dict
) -> None:
    root = zarr.open_group(path, mode="w-", attributes={CREATING: writer_tag()})
    n = len(records)
    ids = [r["id"] for r in records]
    clips = root.create_group("clips")
    for name, values in (
        ("id", ids),
        ("path", [r["path"] for r in records]),
        ("labels", [";".join(r["labels"]) for r in records]),
    ):
        clips.create_array(name, shape=(n,), dtype=str, chunks=(max(1, n),), dimension_names=CLIP_DIMS)[:] = np.array(
            values, dtype=object
        )
    for name, values in (
        ("start", [r["start"] or 0.0 for r in records]),
        ("end", [np.nan if r["end"] is None else r["end"] for r in records]),
        ("duration", durations),
    ):
        clips.create_array(name, shape=(n,), dtype="float64", chunks=(max(1, n),), dimension_names=CLIP_DIMS)[:] = (
            np.asarray(values, "float64")
        )
    seeds = np.array([[view_seed(base_seed, i, v) for v in range(num_views)] for i in ids], dtype=np.uint64)
    views = root.create_group("views")
    seed_array = views.create_array(
        "seed",
        shape=(n, num_views),
        dtype="uint64",
        chunks=(max(1, n), num_views),
        compressors=None,
        dimension_names=VIEW_DIMS,
    )
    seed_array[:] = seeds.reshape(n, num_views)
    root.create_group("teachers")
    root.attrs.put(meta)


def local_path(store: str | os.PathLike) -> Path | None:
    """Where a store named by a path or a file:// URL lies on this machine; None for other URLs (object stores)."""
    text = os.fspath(store)
    if text.startswith("file://"):
        return Path(text.removeprefix("file://"))
    return None if "://" in text else Path(text)


def store_path(store: str | os.PathLike) -> str:
    """What zarr opens for a store: a file:// URL as its plain path, since zarr's LocalStore writes each object
    atomically and its fsspec store writes local files in place."""
    local = local_path(store)
    return str(local) if local else os.fspath(store)


def _object_store(url: str) -> tuple[AbstractFileSystem, str]:
    """fsspec's file system and path for a store URL; a missing package or an unknown protocol is one line."""
    import fsspec

    try:
        fs, key = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        raise StoreError(f"{url}: cannot open this URL ({e})") from None
    # Listings cached earlier in this process may predate writes made since (zarr writes through its own instance).
    fs.invalidate_cache()
    return fs, key.rstrip("/")


def _published(path: str) -> bool:
    """Whether a finished group (a store's root or a teacher's) is at `path`.

    Locally a group appears finished, by rename. Over a URL it is built in place and carries CREATING until done.
    """
    local = local_path(path)
    if local is not None:
        return (local / "zarr.json").is_file()
    fs, key = _object_store(path)
    try:
        metadata = fs.cat_file(f"{key}/zarr.json")
    except FileNotFoundError:
        bucket = key.split("/")[0]
        # Said so, rather than "no store here": a bucket is the user's to create (path-rooted backends have none).
        if bucket and bucket != key and not fs.exists(bucket):
            raise StoreError(
                f"{path}: bucket {bucket!r} does not exist (or these credentials cannot see it); create it first"
            ) from None
        return False
    except PermissionError as e:
        raise StoreError(f"{path}: access denied ({e}); check the credentials for this URL") from None
    except Exception as e:  # each backend raises its own types for an unreachable endpoint
        raise StoreError(f"{path}: cannot reach the store ({type(e).__name__}: {e})") from None
    try:
        return CREATING not in json.loads(metadata).get("attributes", {})
    except (ValueError, AttributeError):
        return True  # garbage metadata: opening it says so


def store_exists(path: str | os.PathLike) -> bool:
    """True when a store is at `path` (a path or URL), False where one can be made; refuses a path that can be
    neither."""
    local = local_path(path)
    if local is None:
        url = os.fspath(path)
        if _published(url):
            return True
        fs, key = _object_store(url)
        # An unfinished store (a zarr.json marked CREATING) is built again; anything else under the prefix is not ours.
        if fs.exists(key) and not fs.exists(f"{key}/zarr.json"):
            raise StoreError(f"{url}: holds other objects, not a logit store; give a new or empty prefix")
        return False
    path = local
    if (path / "zarr.json").is_file():
        return True
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise StoreError(f"{path}: lies under {parent}, which is a file; give a store path in a folder")
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path}: is a file, not a logit store; give a new folder path for the store")
    if path.is_dir() and any(path.iterdir()):
        raise StoreError(f"{path}: is a folder of other files, not a logit store; give a new or empty folder")
    return False


def remove_leftovers(path: str | os.PathLike) -> None:
    """Removes what killed creators left at and in a local store: temporary groups whose writer is provably dead.

    Over a URL nothing is temporary (groups are built in place, blocks are not locked), so there is nothing to remove:
    an unfinished group is rebuilt when it is next created.
    """
    path = local_path(path)
    if path is None:
        return
    remove_dead(path.parent, f"{path.name}.tmp-{{tag}}")
    tmp = path / TMP_DIR
    remove_dead(tmp, "*.tmp-{tag}")
    with contextlib.suppress(OSError):
        tmp.rmdir()


def clips_digest(columns: dict[str, object]) -> dict[str, str]:
    """sha256 of each clips column as written (`id`, `path`, `labels`: strings; `start`, `end`: float64).

    Durations are left out: a dump reads them again for clips that were unreadable. A lost or changed chunk of a
    column shows as a mismatch (a lost chunk reads as the fill value, which can look like real data).
    """
    out = {}
    for name, values in columns.items():
        if name in ("start", "end"):
            floats = np.asarray(values, dtype="<f8")
            # NaN has several bit patterns: one, so a round trip through zarr hashes the same.
            data = np.where(np.isnan(floats), np.nan, floats).astype("<f8").tobytes()
        else:
            data = "\x00".join(str(x) for x in values).encode("utf-8", "surrogateescape")
        out[name] = hashlib.sha256(data).hexdigest()
    return out


def _check_same_store(store: LogitStore, fingerprint: dict, ids: list[str], paths: list[str]) -> None:
    for key, want in fingerprint.items():
        have = store.attrs.get(key)
        if have != want:
            what = {"label_space": "label space", "policy": "augmentation policy"}.get(key, key)
            raise StoreError(
                f"{store.path} was made with another {what} ({_difference(have, want)}); "
                "use a new store path or the original settings"
            )
    if store.clip_ids() != ids or [str(p) for p in store.read("clips/path")] != paths:
        raise StoreError(
            f"{store.path} was made from another manifest (clip ids or paths differ); use a new store path"
        )


def _check_same_teacher(path: str, have: dict, want: dict) -> None:
    for key in ("checkpoint_sha256", "k", "card", "covered"):
        if have.get(key) != want.get(key):
            raise StoreError(
                f"{path}: teacher {want['name']!r} is already stored with another {key} "
                f"({_difference(have.get(key), want.get(key))}); dump it into a new store"
            )


def _difference(have: object, want: object, shown: int = 4) -> str:
    """'stored vs asked' for two values; for two dicts only the keys that differ, so the difference is visible."""
    if isinstance(have, dict) and isinstance(want, dict):
        keys = [k for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k)]
        parts = [f"{k}: {_short(have.get(k))} stored vs {_short(want.get(k))}" for k in keys[:shown]]
        return ", ".join(parts) + (f" and {len(keys) - shown} more" if len(keys) > shown else "")
    return f"{_short(have)} stored vs {_short(want)}"


def _short(value: object, limit: int = 60) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
