"""Label spaces: ordered (mid, display name) lists, the AudioSet one, and mappings between spaces."""

from __future__ import annotations

import csv
import functools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from kd.core.errors import LabelError

AUDIOSET_LABELS_ENV = "KD_AUDIOSET_LABELS"
# AudioSet's class_labels_indices.csv, shipped under CC BY-SA 4.0 (kd/data/ATTRIBUTION.md).
PACKAGED_AUDIOSET_CSV = "class_labels_indices.csv"


@dataclass(frozen=True)
class LabelSpace:
    """An ordered label space. `mids` may be empty strings where a model only knows display names."""

    name: str
    mids: tuple[str, ...]
    names: tuple[str, ...]
    parents: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.mids) != len(self.names):
            raise LabelError(f"label space {self.name!r}: {len(self.mids)} mids but {len(self.names)} names")

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, label: object) -> bool:
        """Whether `label` is a mid or exact display name of this space."""
        return label in self._lookup()

    def to_json(self) -> dict:
        return {"name": self.name, "mids": list(self.mids), "names": list(self.names)}

    @classmethod
    def from_json(cls, data: dict) -> LabelSpace:
        return cls(name=data["name"], mids=tuple(data["mids"]), names=tuple(data["names"]))

    def index(self, label: str) -> int:
        """Index of a label given by mid or exact display name."""
        lookup = self._lookup()
        if label not in lookup:
            raise KeyError(label)
        return lookup[label]

    def _lookup(self) -> dict[str, int]:
        cached = self.__dict__.get("_lookup_cache")
        if cached is None:
            cached = {}
            for i, (mid, name) in enumerate(zip(self.mids, self.names, strict=True)):
                cached.setdefault(name, i)
                if mid:
                    cached[mid] = i
            object.__setattr__(self, "_lookup_cache", cached)
        return cached

    def map_to(self, target: LabelSpace) -> LabelMapping:
        """Maps this space's classes onto `target` by mid, else by exact display name."""
        lookup = target._lookup()
        index = np.full(len(self), -1, dtype=np.int64)
        for i, (mid, name) in enumerate(zip(self.mids, self.names, strict=True)):
            j = lookup.get(mid) if mid else None
            if j is None:
                j = lookup.get(name)
            if j is not None:
                index[i] = j
        return LabelMapping(source=self, target=target, index=index)


@dataclass(frozen=True)
class LabelMapping:
    """`index[i]` is the target class of source class i, or -1 where it has none."""

    source: LabelSpace
    target: LabelSpace
    index: np.ndarray

    @property
    def unmapped_source(self) -> list[str]:
        """Source classes with no target class (reported, never silently dropped)."""
        return [self.source.names[i] for i in np.flatnonzero(self.index < 0)]

    @property
    def covered(self) -> np.ndarray:
        """Boolean mask over target classes that some source class maps onto."""
        mask = np.zeros(len(self.target), dtype=bool)
        mask[self.index[self.index >= 0]] = True
        return mask

    @property
    def uncovered_target(self) -> list[str]:
        return [self.target.names[i] for i in np.flatnonzero(~self.covered)]

    @property
    def is_identity(self) -> bool:
        return len(self.source) == len(self.target) and bool(np.all(self.index == np.arange(len(self.target))))


def load_label_csv(
    path: str | os.PathLike, name: str = "audioset", ontology: str | os.PathLike | None = None
) -> LabelSpace:
    """Loads a `class_labels_indices.csv`-style file (index, mid, display_name), optionally with ontology links."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise LabelError(f"{path}: cannot read label file ({e.strerror})") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise LabelError(f"{path}: not a label file (not UTF-8 CSV text: {e})") from None
    if not rows or not {"mid", "display_name"} <= set(rows[0]):
        raise LabelError(f"{path}: not a label file (needs columns index, mid, display_name)")
    if any(r["mid"] is None or r["display_name"] is None for r in rows):
        raise LabelError(f"{path}: not a label file (rows with missing columns)")
    if "index" in rows[0]:
        try:
            rows.sort(key=lambda r: int(r["index"]))
        except (TypeError, ValueError):
            raise LabelError(f"{path}: not a label file (its index column holds non-numbers)") from None
    parents: dict[str, tuple[str, ...]] = {}
    if ontology is not None:
        parents = load_ontology_parents(ontology)
    return LabelSpace(
        name=name,
        mids=tuple(r["mid"].strip() for r in rows),
        names=tuple(r["display_name"].strip() for r in rows),
        parents=parents,
    )


def load_ontology_parents(path: str | os.PathLike) -> dict[str, tuple[str, ...]]:
    """Maps each mid of the AudioSet ontology to the mids of its parents."""
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise LabelError(f"{path}: cannot read ontology ({e})") from None
    parents: dict[str, list[str]] = {}
    for entry in entries:
        for child in entry.get("child_ids", []):
            parents.setdefault(child, []).append(entry["id"])
    return {mid: tuple(p) for mid, p in parents.items()}


def load_label_names(path: str | os.PathLike, name: str) -> LabelSpace:
    """Loads a label space from a text file with one display name per line (no mids)."""
    try:
        names = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as e:
        raise LabelError(f"{path}: cannot read label file ({e.strerror})") from None
    return LabelSpace(name=name, mids=("",) * len(names), names=tuple(names))


def packaged_audioset_csv() -> Path:
    """The AudioSet label file inside the installed package."""
    return Path(str(resources.files("kd") / "data" / PACKAGED_AUDIOSET_CSV))


@functools.cache
def _packaged_audioset() -> LabelSpace:
    # Parsed once per process: every teacher builder asks for it, and the shipped file never changes.
    return load_label_csv(packaged_audioset_csv())


def audioset_labels(path: str | os.PathLike | None = None) -> LabelSpace:
    """The 527 AudioSet classes, from `path`, else $KD_AUDIOSET_LABELS, else the copy shipped with kd.

    No command needs a label file or a download for the default label space; `path` and the variable exist for a
    user's own (e.g. newer) copy.
    """
    if path is not None:
        if not Path(path).is_file():
            raise LabelError(f"{path}: label file not found")
        return load_label_csv(path)
    env = os.environ.get(AUDIOSET_LABELS_ENV)
    if env:
        if not Path(env).is_file():
            raise LabelError(f"{env}: label file not found (from ${AUDIOSET_LABELS_ENV}; unset it to use kd's copy)")
        return load_label_csv(env)
    return _packaged_audioset()


def class_mask(classes: tuple[int, ...] | None, num_classes: int) -> np.ndarray:
    """[C] bool: the chosen classes (all when None)."""
    if classes is None:
        return np.ones(num_classes, dtype=bool)
    mask = np.zeros(num_classes, dtype=bool)
    mask[list(classes)] = True
    return mask


@dataclass(frozen=True)
class LabelResolution:
    """Manifest labels resolved to a tagger's classes.

    Attributes:
        targets: 0/1 matrix [clips, classes] in the tagger's class order.
        unresolved: manifest labels the tagger has no class for (they cannot be scored; reported).
    """

    targets: np.ndarray
    unresolved: dict[str, int] = field(default_factory=dict)


def resolve_labels(clip_labels: Sequence[Sequence[str]], labels: LabelSpace) -> LabelResolution:
    """Maps each clip's labels (display names or mids) onto `labels`.

    A label not in `labels` itself is looked up in AudioSet and matched by its mid or display name, so AudioSet
    mids in a manifest still resolve against a model (YAMNet) whose classes carry names only.
    """
    audioset = None
    targets = np.zeros((len(clip_labels), len(labels)), dtype=bool)
    unresolved: dict[str, int] = {}
    for row, names in enumerate(clip_labels):
        for label in names:
            index = _lookup(labels, label)
            if index is None:
                if audioset is None:
                    audioset = audioset_labels()
                j = _lookup(audioset, label)
                if j is not None:
                    index = _lookup(labels, audioset.mids[j])
                    if index is None:
                        index = _lookup(labels, audioset.names[j])
            if index is None:
                unresolved[label] = unresolved.get(label, 0) + 1
            else:
                targets[row, index] = True
    return LabelResolution(targets, unresolved)


def _lookup(labels: LabelSpace, label: str) -> int | None:
    try:
        return labels.index(label)
    except KeyError:
        return None
