"""Shared pieces of the benchmark suite: the real shared data, rendered views, teacher outputs, medians, tables.

Every figure in the suite is a ratio or a rate measured side by side in one run (the machine is shared with other
jobs, so absolute times drift); timings are medians over `repeats()` repetitions.
"""

from __future__ import annotations

import csv
import datetime
import functools
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("KD_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()
MN04 = "efficientat/mn04_as"
YAMNET = "yamnet"
CHECKPOINTS = {MN04: "weights/efficientat_mn04_as.pt", YAMNET: "weights/yamnet.tflite"}

# The labels are third-party data: the suite reads the shared copy, as a user points kd at theirs.
if (SHARED_DATA / "labels" / "class_labels_indices.csv").is_file():
    os.environ.setdefault("KD_AUDIOSET_LABELS", str(SHARED_DATA / "labels" / "class_labels_indices.csv"))

_REPEATS: dict[str, int | None] = {"value": None}
# Clip subsets: `None` means every clip of clips.csv; a quick run (and the smoke test) can narrow it further.
_CLIP_LIMIT: dict[str, int | None] = {"value": None}


def set_repeats(repeats: int | None) -> None:
    """Sets how many repetitions each timing takes (None: 3, or 2 in quick mode)."""
    _REPEATS["value"] = repeats


def repeats(quick: bool) -> int:
    return _REPEATS["value"] or (2 if quick else 3)


def set_threads(threads: int) -> None:
    """Fixes torch's intra-op threads. On a 2-core machine shared with other jobs, two OpenMP threads swing 5-7x
    with the neighbours' load (a descheduled thread stalls every parallel region), which drowns side-by-side
    ratios; one thread is stable. The suite runs with 1 unless told otherwise, and records it."""
    torch.set_num_threads(threads)


def set_clip_limit(limit: int | None) -> None:
    """Caps how many shared clips every benchmark uses (the smoke test runs on a handful)."""
    _CLIP_LIMIT["value"] = limit


def require_shared_data() -> Path:
    if not (SHARED_DATA / "clips.csv").is_file():
        raise SystemExit(f"the benchmarks need the real shared data at {SHARED_DATA} (set KD_SHARED_DATA)")
    return SHARED_DATA


def checkpoint(teacher: str) -> str:
    return str(require_shared_data() / CHECKPOINTS[teacher])


def clip_rows(quick: bool) -> list[dict]:
    """Rows of the shared clips.csv: all 52 clips, or every 6th (nine clips of every format) in quick mode."""
    with open(require_shared_data() / "clips.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rows = rows[::6] if quick else rows
    limit = _CLIP_LIMIT["value"]
    return rows[:limit] if limit else rows


def write_manifest(directory: str | os.PathLike, quick: bool) -> str:
    """A kd manifest of the chosen shared clips (absolute paths, so stores may live anywhere)."""
    path = Path(directory) / "clips.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "labels"])
        for row in clip_rows(quick):
            writer.writerow([str(SHARED_DATA / row["path"]), row["labels"]])
    return str(path)


@functools.lru_cache(maxsize=4)
def teacher(name: str):
    """A shared real teacher (built once per process)."""
    from kd.teachers import create_teacher

    return create_teacher(name, checkpoint=checkpoint(name))


def median_time(fn: Callable[[], object], times: int) -> float:
    """Median wall time of `times` calls of `fn`."""
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def markdown(rows: list[dict]) -> str:
    """Rows of one benchmark as a markdown table (columns in order of first appearance; blanks where missing)."""
    if not rows:
        return "(no rows)"
    header = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(row.get(k, "")) for k in header) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def machine() -> dict:
    """What the figures were measured on: CPU model, cores, torch, load, date."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


# -- real views and real teacher outputs, shared by several benchmarks ----------------------------------------------


@dataclass
class Views:
    """Rendered views of the shared clips, exactly as a dump with this store would render them.

    Attributes:
        store: the (teacher-less) logit store the views come from.
        batches: render_batch outputs in dump order (batch size 16).
        labels: multi-hot ground truth [clips, views, classes]; a mixed view carries its partner's labels too.
    """

    store: object
    batches: list[dict]
    labels: np.ndarray

    @property
    def num_items(self) -> int:
        return sum(len(b["items"]) for b in self.batches)


_VIEW_CACHE: dict[tuple, Views] = {}


def make_store(directory: str | os.PathLike, quick: bool, views: int, block_size: int = 512):
    """Creates a teacher-less store over the chosen shared clips (what `dump_teachers` creates first)."""
    from kd.core.augment import policy_by_name
    from kd.core.labels import audioset_labels
    from kd.core.manifest import clip_duration, load_manifest
    from kd.stores.logit_store import create_store

    labels = audioset_labels()
    manifest = load_manifest(write_manifest(directory, quick), labels=labels)
    durations = np.array([clip_duration(c) for c in manifest.clips])
    store_path = Path(directory) / "views.zarr"
    return create_store(store_path, manifest, durations, labels, policy_by_name("default"), views, 0, block_size)


def rendered_views(quick: bool, views: int, batch_size: int = 16) -> Views:
    """Renders (once per process) every view of the chosen clips: decode, resample, augment, as the dump does."""
    key = (quick, views, batch_size, _CLIP_LIMIT["value"])
    if key in _VIEW_CACHE:
        return _VIEW_CACHE[key]
    from kd.core.augment import draw_view
    from kd.dump import render_batch

    directory = tempfile.mkdtemp(prefix="kd-bench-views-")
    store = make_store(directory, quick, views)
    plan = plan_of(store, batch_size)
    batches = [render_batch(plan, items) for block in range(store.num_blocks) for items in plan.batches(block)]
    label_index = [[store.labels.index(x) for x in clip] for clip in store.clip_labels()]
    labels = np.zeros((store.num_clips, views, len(store.labels)), dtype=bool)
    seeds = store.seeds()
    for clip in range(store.num_clips):
        for view in range(views):
            params = draw_view(store.policy, int(seeds[clip, view]), clip, store.num_clips, view)
            labels[clip, view, label_index[clip]] = True
            if params.partner >= 0:
                labels[clip, view, label_index[params.partner]] = True
    result = Views(store=store, batches=batches, labels=labels)
    _VIEW_CACHE[key] = result
    return result


def plan_of(store, batch_size: int):
    """The dump's BlockPlan for a store: which views, which seeds, in which batches."""
    from kd.dump import BlockPlan

    return BlockPlan(
        table=store.clip_table(),
        seeds=store.seeds(),
        policy=store.policy,
        ids=store.clip_ids(),
        batch_size=batch_size,
        block_size=store.block_size,
    )


@dataclass
class TeacherOutputs:
    """A teacher's full logits over the store's label space, for every rendered view.

    Attributes:
        logits: [clips, views, classes] float32; NaN for classes the teacher does not cover.
        covered: [classes] which store classes the teacher has a logit for.
        raw: the teacher's own logits [clips, views, teacher classes].
        index: for each of the teacher's classes, its store class or -1.
        labels: ground truth of the views [clips, views, classes].
    """

    name: str
    logits: np.ndarray
    raw: np.ndarray
    covered: np.ndarray
    index: np.ndarray
    labels: np.ndarray


_OUTPUT_CACHE: dict[tuple, TeacherOutputs] = {}


def teacher_outputs(name: str, quick: bool, views: int) -> TeacherOutputs:
    """Runs a real teacher (once per process) on every rendered view and keeps its full logits."""
    key = (name, quick, views, _CLIP_LIMIT["value"])
    if key in _OUTPUT_CACHE:
        return _OUTPUT_CACHE[key]
    from kd.core.audio import resample

    rendered = rendered_views(quick, views)
    store = rendered.store
    model = teacher(name)
    mapping = model.labels.map_to(store.labels)
    valid = mapping.index >= 0
    full = np.full((store.num_clips, views, len(store.labels)), np.nan, dtype=np.float32)
    raw = np.zeros((store.num_clips, views, len(model.labels)), dtype=np.float32)
    for batch in rendered.batches:
        logits = model.logits(resample(batch["waves"], store.policy.sample_rate, model.card.sample_rate))
        logits = logits.float().cpu().numpy()
        for row, (clip, view) in enumerate(batch["items"]):
            full[clip, view, mapping.index[valid]] = logits[row, valid]
            raw[clip, view] = logits[row]
    out = TeacherOutputs(name, full, raw, mapping.covered, mapping.index, rendered.labels)
    _OUTPUT_CACHE[key] = out
    return out


class _ReplayTeacher:
    """Hands `kd.dump.top_k` logits already computed, so the suite measures the dump's own reduction code."""

    def __init__(self, raw: torch.Tensor, sample_rate: int) -> None:
        self.raw = raw
        self.card = type("Card", (), {"sample_rate": sample_rate})()

    def logits(self, waves: torch.Tensor) -> torch.Tensor:
        return self.raw


def stored_topk(outputs: TeacherOutputs, k: int) -> dict[str, np.ndarray]:
    """What a dump with this k stores for these outputs: top-k logits (f16), indices (i16), rest (f16)."""
    from kd.dump import top_k

    clips, views, classes = outputs.raw.shape
    raw = torch.from_numpy(outputs.raw.reshape(clips * views, classes))
    k = min(k, int(outputs.covered.sum()))
    rate = 32000  # any rate: the replay teacher ignores the (empty) waveforms
    out = top_k(
        _ReplayTeacher(raw, rate),
        torch.as_tensor(outputs.index),
        len(outputs.covered),
        torch.zeros(len(raw), 1),
        rate,
        k,
    )
    return {
        "logits": out["logits"].astype(np.float16).reshape(clips, views, k),
        "indices": out["indices"].astype(np.int16).reshape(clips, views, k),
        "rest": out["rest"].astype(np.float16).reshape(clips, views),
    }


_STORE_CACHE: dict[tuple, str] = {}


def mn04_store(quick: bool, views: int) -> str:
    """A real store (once per process): `kd dump-teachers` of mn04 over the chosen clips, k = 20."""
    key = (quick, views, _CLIP_LIMIT["value"])
    if key not in _STORE_CACHE:
        from kd.dump import DumpConfig, dump_teachers

        directory = tempfile.mkdtemp(prefix="kd-bench-store-")
        path = str(Path(directory) / "mn04.zarr")
        config = DumpConfig(
            manifest=write_manifest(directory, quick),
            store=path,
            teachers=[MN04],
            checkpoints={MN04: checkpoint(MN04)},
            views=views,
            k=20,
            workers=2,
            progress=False,
        )
        report = dump_teachers(config)
        if report.failures:
            raise RuntimeError(f"dump of the shared clips failed on {len(report.failures)} views")
        _STORE_CACHE[key] = path
    return _STORE_CACHE[key]
