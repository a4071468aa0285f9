"""What `kd dump-teachers` takes: `DumpConfig`, its checks, and the settings an existing store fixes."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace

from kd.core.augment import POLICIES
from kd.core.devices import check_device
from kd.core.errors import ConfigError
from kd.stores.logit_store import LogitStore, store_exists

MIN_CLIP_SECONDS, MAX_CLIP_SECONDS = 0.1, 3600.0
SCHEDULER_ADDRESS = re.compile(r"((tcp|tls|ucx|ws|wss)://)?[\w.\-\[\]:]+:\d{1,5}")


@dataclass(kw_only=True)
class TeacherViews:
    """What a dump and its plan (`kd plan`) both take: which teachers run over which views, and what is kept."""

    manifest: str
    teachers: list[str]
    checkpoints: dict[str, str] = field(default_factory=dict)
    views: int = 4
    k: int = 50
    policy: str = "default"
    clip_seconds: float | None = None
    batch_size: int = 16
    workers: int | None = None
    device: str = "cpu"
    seed: int = 0
    labels: str | None = None

    # How the error about a --checkpoint for a teacher not named reads ("dumped", "planned").
    _verb = "used"

    def __post_init__(self) -> None:
        if self.workers is None:
            self.workers = default_workers()
        check_teacher_names(self.teachers)
        check_whole_numbers(
            ("views", self.views, 1),
            ("k", self.k, 1),
            ("batch_size", self.batch_size, 1),
            ("workers", self.workers, 0),
            ("seed", self.seed, 0),
        )
        if self.clip_seconds is not None and not MIN_CLIP_SECONDS <= self.clip_seconds <= MAX_CLIP_SECONDS:
            raise ConfigError(
                f"--clip-seconds must be between {MIN_CLIP_SECONDS:g} and {MAX_CLIP_SECONDS:g}, got {self.clip_seconds}"
            )
        unknown = set(self.checkpoints) - set(self.teachers)
        if unknown:
            raise ConfigError(f"--checkpoint given for teachers not being {self._verb}: {sorted(unknown)}")


@dataclass(kw_only=True)
class DumpConfig(TeacherViews):
    """Everything `kd dump-teachers` takes; validated on construction."""

    store: str
    block_size: int = 512
    scheduler: str | None = None
    skip_bad: bool = False
    progress: bool = True

    _verb = "dumped"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_whole_numbers(("block_size", self.block_size, 1))
        if self.scheduler is not None:
            check_scheduler(self.scheduler)
        if self.scheduler is None or self.scheduler.startswith("local:"):
            # A remote cluster's workers may have devices this machine lacks: only a local run is checked here.
            check_device(self.device)


def check_teacher_names(teachers: list[str]) -> None:
    """At least one teacher, none named twice."""
    if not teachers:
        raise ConfigError("name at least one teacher (--teacher NAME)")
    if len(set(teachers)) != len(teachers):
        raise ConfigError(f"a teacher is named twice: {teachers}")


def check_whole_numbers(*settings: tuple[str, object, int]) -> None:
    """Each (field, value, lowest allowed) must be a whole number of at least that; the error names the flag."""
    for name, value, low in settings:
        if not isinstance(value, int) or value < low:
            raise ConfigError(f"--{name.replace('_', '-')} must be a whole number of at least {low}, got {value}")


def check_scheduler(address: str) -> None:
    """Refuses a `--scheduler` that is neither `local:N` (N >= 1) nor a dask address such as tcp://HOST:PORT."""
    if address.startswith("local:"):
        n = address.split(":", 1)[1]
        if not n.isdigit() or int(n) < 1:
            raise ConfigError(f"--scheduler {address!r}: local:N needs N >= 1 worker processes")
    elif not SCHEDULER_ADDRESS.fullmatch(address):
        raise ConfigError(f"--scheduler {address!r}: expected local:N or a scheduler address such as tcp://HOST:8786")


def default_workers() -> int:
    """Decoding workers that leave a core to the teacher: 1 on a 2-core machine (measured best there, see
    docs/benchmarks.md), up to 4."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def settings_from_store(settings: dict, given: set[str]) -> dict:
    """`settings` (DumpConfig fields) with those the user did not give taken from the store they name, if it exists.

    A store fixes its views, seed, block size, policy and clip length; k defaults to the largest stored teacher's.
    So adding a teacher needs no repeated flags, and only an explicit value that contradicts the store is refused.
    """
    path = settings["store"]
    if not store_exists(path):
        return settings
    store = LogitStore(path)
    fixed = {
        "views": store.num_views,
        "seed": store.base_seed,
        "block_size": store.block_size,
        "clip_seconds": store.policy.clip_seconds,
    }
    names = [n for n, p in POLICIES.items() if replace(p, clip_seconds=store.policy.clip_seconds) == store.policy]
    if names:
        fixed["policy"] = names[0]
    conflicts = [
        f"--{key.replace('_', '-')} {settings[key]} (store: {value})"
        for key, value in fixed.items()
        if key in given and settings[key] is not None and settings[key] != value
    ]
    if conflicts:
        raise ConfigError(
            f"{path} was made with other settings: {', '.join(conflicts)}; drop those flags or use a new store path"
        )
    ks = [store.teacher(n).k for n in store.teacher_names()]
    defaults = {**fixed, **({"k": max(ks)} if ks else {})}
    return {**settings, **{key: value for key, value in defaults.items() if key not in given}}
