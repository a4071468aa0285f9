"""`kd plan`: what a dump, and training from its store, will cost on this machine, before any GPU-hour is spent.

A short calibration renders a few real views of the manifest (decode, crop, resample, augment: what the dump's
workers do), runs each teacher on them through the dump's own top-k reduction, and times one student training step;
the plan extrapolates those per-view costs to every view. Store sizes and the memory training holds for the targets
follow from the store layout (docs/store.md) exactly; the compressed size is the store codec applied to the
calibration rows. A teacher whose weights are not here is timed with seeded random weights (the cost of a forward
does not depend on the weights), and the plan says so.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from kd.core.errors import ConfigError, WeightsError
from kd.dump.config import TeacherViews, check_whole_numbers
from kd.teachers import Teacher, TorchTeacher, create_teacher

# Bytes one (clip, view) takes per teacher, beside its top-k: the rest fill (float16) and the failed flag (bool).
_ROW_BYTES = 2 + 1
# Bytes per top-k entry: a float16 logit and an int16 class index.
_ENTRY_BYTES = 2 + 2


@dataclass(kw_only=True)
class PlanConfig(TeacherViews):
    """What `kd plan` takes; the dump settings (`TeacherViews`) mean what they mean for `kd dump-teachers`.

    Attributes:
        calibration_views: real views rendered and run through every teacher (spread over the manifest's clips).
        student: also estimate the epoch time of training this registered student from the store.
        student_batch_size: views per training step (as `kd train-student --batch-size`).
        train_workers: DataLoader workers of training (as `kd train-student --workers`).
    """

    calibration_views: int = 8
    student: str | None = None
    student_batch_size: int = 16
    train_workers: int = 2

    _verb = "planned"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_whole_numbers(
            ("calibration_views", self.calibration_views, 1),
            ("student_batch_size", self.student_batch_size, 1),
            ("train_workers", self.train_workers, 0),
        )


@dataclass
class TeacherPlan:
    """One teacher's share of the plan.

    Attributes:
        random_weights: timed with seeded random weights because its weights are not here.
        parameters: parameters of the torch module (None for TFLite/ONNX runtimes).
        k: logits stored per view (capped at the classes the teacher covers).
        build_seconds: building the teacher (reading its weights).
        seconds_per_view: teacher forward and top-k per view, measured on the calibration views.
        dump_seconds: this teacher's forwards over every view.
        store_bytes_raw: its arrays uncompressed (exact, from the layout).
        store_bytes: its arrays with the store codec (estimated from the calibration rows).
        training_bytes: what training holds in memory for its targets (the loaded top-k arrays).
    """

    name: str
    random_weights: bool
    parameters: int | None
    k: int
    build_seconds: float
    seconds_per_view: float
    dump_seconds: float
    store_bytes_raw: int
    store_bytes: int
    training_bytes: int


@dataclass
class DumpPlan:
    """The whole plan: per-teacher rows and the totals `kd plan` prints.

    Attributes:
        header_seconds: reading every clip's header (the dump's first step), extrapolated.
        decode_seconds_per_view: rendering one view (decode, resample, augment) in one process.
        dump_seconds: the dump's estimated wall time: headers, teacher builds, then per view the teachers' time,
            or the decoding time spread over the workers where that is longer.
        seeds_bytes: the view seeds (uint64, incompressible).
        student_step_seconds_per_view: one training step of the student, per view (with `student`).
        epoch_seconds: one pass over every view: the student's steps, or the loader where that is slower.
    """

    manifest: str
    clips: int
    views: int
    device: str
    workers: int
    calibration_views: int
    header_seconds: float
    decode_seconds_per_view: float
    teachers: list[TeacherPlan]
    dump_seconds: float
    seeds_bytes: int
    student: str | None = None
    student_step_seconds_per_view: float | None = None
    epoch_seconds: float | None = None

    @property
    def total_views(self) -> int:
        return self.clips * self.views

    @property
    def store_bytes(self) -> int:
        return self.seeds_bytes + sum(t.store_bytes for t in self.teachers)

    @property
    def store_bytes_raw(self) -> int:
        return self.seeds_bytes + sum(t.store_bytes_raw for t in self.teachers)

    @property
    def training_bytes(self) -> int:
        return sum(t.training_bytes for t in self.teachers)


# -- teachers with the real architecture and, where the weights are absent, seeded random weights -------------------


def _efficientat(name: str) -> torch.nn.Module:
    from kd.teachers.efficientat import VARIANTS, build_network

    return build_network(next(v for v in VARIANTS if f"efficientat/{v.name}" == name))


def _passt(name: str) -> torch.nn.Module:
    from kd.teachers.passt import PASST_MODELS, PasstTagger

    return PasstTagger(PASST_MODELS[name.split("/", 1)[1]][0])


def _htsat(name: str) -> torch.nn.Module:
    from kd.teachers.htsat import HtsatTagger

    return HtsatTagger()


def _beats(name: str) -> torch.nn.Module:
    from kd.teachers.beats import BeatsConfig, BeatsTagger

    return BeatsTagger(BeatsConfig())  # every AudioSet release has the default architecture


def _ced(name: str) -> torch.nn.Module:
    from kd.teachers.ced import CED_CONFIGS, CedTagger

    return CedTagger(CED_CONFIGS[name.split("/", 1)[1]])


def _ast(name: str) -> torch.nn.Module:
    import transformers

    from kd.teachers.ast import AUDIOSET_ASTS, AstFeatures, AstWaveModel, ast_fbank_config

    spec = next(s for s in AUDIOSET_ASTS if s.name == name)
    # The released ASTs: DeiT-base (12 layers, 768 wide, 12 heads), 128 mels x 1024 frames, square patch strides.
    config = transformers.ASTConfig(
        frequency_stride=spec.stride, time_stride=spec.stride, max_length=1024, num_mel_bins=128, num_labels=527
    )
    network = transformers.ASTForAudioClassification(config).eval()
    return AstWaveModel(AstFeatures(ast_fbank_config(), max_length=1024), network)


def _dass(name: str) -> torch.nn.Module:
    from kd.students import create_student
    from kd.teachers.dass import SIZES

    return create_student(SIZES[name])


# Family (the name before '/') -> the teacher's torch module, randomly initialised. YAMNet (TFLite) and ONNX
# teachers carry their architecture in the weights file, so they can only be timed with it.
RANDOM_MODULES: dict[str, Callable[[str], torch.nn.Module]] = {
    "efficientat": _efficientat,
    "passt": _passt,
    "htsat": _htsat,
    "beats": _beats,
    "ced": _ced,
    "ast": _ast,
    "dass": _dass,
}


def weights_present(name: str, checkpoint: str | None = None) -> bool:
    """Whether `create_teacher(name, checkpoint=...)` finds weights here without downloading anything."""
    from kd.core.weights import local_weights
    from kd.teachers.catalog import ENTRIES

    if checkpoint is not None:
        return os.path.exists(checkpoint)
    entry = ENTRIES.get(name)
    if entry is None:  # `onnx:PATH`, `dass:PATH`, `ast/hf:DIR`: the name itself says where the weights are
        return True
    entry = entry()
    if entry.cached is not None:
        return entry.cached() is not None
    weights = entry.card.weights if entry.card is not None else None
    return weights is None or local_weights(weights) is not None


def timing_teacher(name: str, checkpoint: str | None = None, seed: int = 0) -> tuple[Teacher, bool]:
    """The teacher `name` with its weights if they are here, else its architecture with seeded random weights.

    Returns:
        The teacher and whether its weights are random.
    """
    from kd.core.labels import audioset_labels
    from kd.teachers import teacher_names
    from kd.teachers.catalog import ENTRIES

    if name in teacher_names() and not weights_present(name, checkpoint):
        family = name.split("/", 1)[0]
        if family not in RANDOM_MODULES or name not in ENTRIES:
            raise WeightsError(
                f"{name}: no weights here, and its architecture is in its weights file; pass --checkpoint"
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = RANDOM_MODULES[family](name)
        return TorchTeacher(ENTRIES[name]().card, audioset_labels(), module, checkpoint_sha256=""), True
    return create_teacher(name, checkpoint=checkpoint), False


# -- calibration ---------------------------------------------------------------------------------------------------


@dataclass
class Calibration:
    """Real views of the manifest, rendered as the dump renders them.

    Attributes:
        waves: [views, samples] at the policy's rate.
        items: (clip index, view index) of each row.
        decode_seconds_per_view: rendering time per view.
        header_seconds_per_clip: reading one clip's header.
    """

    waves: torch.Tensor
    items: list[tuple[int, int]]
    decode_seconds_per_view: float
    header_seconds_per_clip: float


def calibration_views(manifest, policy, views: int, count: int, seed: int = 0) -> Calibration:
    """Renders `count` views spread evenly over the manifest's clips, view indices cycling through 0..views-1."""
    from kd.core.augment import draw_view, view_seed
    from kd.core.manifest import clip_duration
    from kd.core.views import ClipTable, render_view

    clips = manifest.clips
    chosen = np.unique(np.linspace(0, len(clips) - 1, min(count, len(clips))).round().astype(int))
    items = [(int(chosen[i % len(chosen)]), i % views) for i in range(count)]
    params = {
        item: draw_view(policy, view_seed(seed, clips[item[0]].id, item[1]), item[0], len(clips), item[1])
        for item in items
    }
    # Headers of the rendered clips and their mixup partners only: the plan must not read the whole manifest.
    needed = sorted({c for c, _ in items} | {p.partner for p in params.values() if p.partner >= 0})
    durations = np.full(len(clips), np.nan)
    began = time.perf_counter()
    for c in needed:
        durations[c] = clip_duration(clips[c])
    header = (time.perf_counter() - began) / len(needed)
    table = ClipTable(
        paths=[c.path for c in clips], starts=np.array([c.start or 0.0 for c in clips]), durations=durations
    )
    began = time.perf_counter()
    waves = torch.stack([render_view(table, clip, params[(clip, view)], policy) for clip, view in items])
    decode = (time.perf_counter() - began) / len(items)
    return Calibration(waves, items, decode, header)


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def time_teacher(
    teacher: Teacher,
    index: torch.Tensor,
    num_classes: int,
    waves: torch.Tensor,
    rate: int,
    k: int,
    batch_size: int,
    device: str,
) -> tuple[float, dict[str, np.ndarray]]:
    """Seconds per view of the dump's per-batch work (forward, top-k) over `waves`, after a one-view warm-up.

    Returns:
        Seconds per view and the stored arrays of the last batch (for the codec estimate).
    """
    from kd.dump.run import top_k

    top_k(teacher, index, num_classes, waves[:1], rate, k)  # first-call set-up (allocations, kernels) is not per view
    _synchronize(device)
    outputs = []
    began = time.perf_counter()
    for start in range(0, len(waves), batch_size):
        outputs.append(top_k(teacher, index, num_classes, waves[start : start + batch_size], rate, k))
    _synchronize(device)
    seconds = (time.perf_counter() - began) / len(waves)
    stacked = {key: np.concatenate([o[key] for o in outputs]) for key in ("logits", "indices", "rest")}
    return seconds, stacked


def compressed_fraction(arrays: dict[str, np.ndarray]) -> float:
    """Compressed over raw bytes of top-k rows with the store codec (Blosc zstd 5, byte shuffle)."""
    from numcodecs import Blosc

    codec = Blosc(cname="zstd", clevel=5, shuffle=Blosc.SHUFFLE)
    rows = [arrays["logits"].astype(np.float16), arrays["indices"].astype(np.int16), arrays["rest"].astype(np.float16)]
    raw = sum(a.nbytes for a in rows)
    packed = sum(len(codec.encode(np.ascontiguousarray(a))) for a in rows)
    return min(1.0, packed / raw)


def student_step_seconds(
    name: str, waves: torch.Tensor, rate: int, num_classes: int, batch_size: int, device: str
) -> tuple[float, float]:
    """Seconds per view of one `kd train-student` step (forward, BCE, backward, AdamW) and of its features.

    Returns:
        Step seconds per view (after a warm-up step) and front-end seconds per view (in the loader's workers).
    """
    from kd.core.audio import resample
    from kd.students import create_student
    from kd.train.loss import KDLoss

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_student(name, num_classes=num_classes).train()
    began = time.perf_counter()
    with torch.no_grad():
        features = model.frontend(resample(waves, rate, model.sample_rate))
    feature_seconds = (time.perf_counter() - began) / len(waves)
    model.to(device)
    features = features.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    loss_fn = KDLoss("bce", 1.0, 0.0)
    targets = torch.full((len(waves), num_classes), 0.01, device=device)
    mask = torch.ones_like(targets, dtype=torch.bool)

    def step(rows: slice) -> None:
        loss = loss_fn(model.forward_features(features[rows]), targets[rows], mask[rows], targets[rows])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(slice(0, min(2, len(waves))))
    _synchronize(device)
    began = time.perf_counter()
    for start in range(0, len(waves), batch_size):
        step(slice(start, start + batch_size))
    _synchronize(device)
    return (time.perf_counter() - began) / len(waves), feature_seconds


# -- the plan ------------------------------------------------------------------------------------------------------


def plan_dump(config: PlanConfig) -> DumpPlan:
    """Calibrates on a few real views and extrapolates the dump (and, with a student, an epoch) to the manifest."""
    from kd.core.augment import policy_by_name
    from kd.core.labels import audioset_labels
    from kd.core.manifest import load_manifest

    overrides = {} if config.clip_seconds is None else {"clip_seconds": config.clip_seconds}
    policy = policy_by_name(config.policy, **overrides)
    labels = audioset_labels(config.labels)
    manifest = load_manifest(config.manifest, labels=labels, check_files=False)
    if not manifest.clips:
        raise ConfigError(f"{config.manifest}: manifest has no clips")
    n, v = len(manifest.clips), config.views
    calibration = calibration_views(manifest, policy, v, config.calibration_views, config.seed)
    rows = []
    for name in config.teachers:
        began = time.perf_counter()
        teacher, random = timing_teacher(name, config.checkpoints.get(name))
        teacher = teacher.to(config.device)
        build = time.perf_counter() - began
        mapping = teacher.labels.map_to(labels)
        k = min(config.k, int(mapping.covered.sum()))
        per_view, arrays = time_teacher(
            teacher,
            torch.as_tensor(mapping.index),
            len(labels),
            calibration.waves,
            policy.sample_rate,
            k,
            config.batch_size,
            config.device,
        )
        raw = n * v * (k * _ENTRY_BYTES + _ROW_BYTES)
        rows.append(
            TeacherPlan(
                name=name,
                random_weights=random,
                parameters=teacher.num_parameters(),
                k=k,
                build_seconds=build,
                seconds_per_view=per_view,
                dump_seconds=per_view * n * v,
                store_bytes_raw=raw,
                store_bytes=int(raw * compressed_fraction(arrays)),
                training_bytes=raw,  # the loaded arrays are the stored ones, uncompressed
            )
        )
        del teacher
    teacher_per_view = sum(t.seconds_per_view for t in rows)
    decode = calibration.decode_seconds_per_view
    # Workers decode while the teachers run; with none, the main process does both in turn.
    per_view = teacher_per_view + decode if config.workers == 0 else max(teacher_per_view, decode / config.workers)
    header = calibration.header_seconds_per_clip * n
    plan = DumpPlan(
        manifest=config.manifest,
        clips=n,
        views=v,
        device=config.device,
        workers=config.workers,
        calibration_views=len(calibration.items),
        header_seconds=header,
        decode_seconds_per_view=decode,
        teachers=rows,
        dump_seconds=header + sum(t.build_seconds for t in rows) + per_view * n * v,
        seeds_bytes=n * v * 8,
    )
    if config.student is not None:
        step, features = student_step_seconds(
            config.student,
            calibration.waves,
            policy.sample_rate,
            len(labels),
            config.student_batch_size,
            config.device,
        )
        load = decode + features
        loader = load if config.train_workers == 0 else load / config.train_workers
        plan.student = config.student
        plan.student_step_seconds_per_view = step
        plan.epoch_seconds = n * v * (step + load if config.train_workers == 0 else max(step, loader))
    return plan


def format_bytes(count: float) -> str:
    """1536 -> '1.5 KB' (powers of 1000, as disks are sold)."""
    if abs(count) < 1000:
        return f"{count:.0f} B"
    for unit in ("KB", "MB", "GB"):
        count /= 1000
        if abs(count) < 1000:
            return f"{count:.1f} {unit}"
    return f"{count / 1000:.1f} TB"


def format_seconds(seconds: float) -> str:
    """Seconds as '42 s', '13.5 min', '7.2 h' or '3.1 days'."""
    if seconds < 120:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
