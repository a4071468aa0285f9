"""Teacher costs at real size, and what the store buys per teacher: offline vs online distillation step time.

Every registered family at its real architecture and input length (10 s views of the shared clips at the policy's
32 kHz, resampled to each teacher's rate as the dump does): AST (1212 patches), PaSST, HTS-AT, BEATs, CED
tiny/mini/base, EfficientAT mn04/mn10/mn40, YAMNet and DASS-small as a teacher. Weights do not change the cost, so a
teacher whose weights are not here runs with seeded random weights (`kd.dump.plan.timing_teacher`); the table says
which.

Each teacher runs in a fresh process (so peak memory is its own): one warm-up forward of one view, then `repeats()`
timed steps on a batch of real views. An online step is the teacher forward (full 527-class targets) plus one
dass-tiny training step (`benchmarks.loader.StudentStep`, the trainer's); an offline step is the same student step
on targets expanded from the top-50 a store would hold for those views. Rendering and the student's features are
left out of both (DataLoader workers make them in either loop), so the speed-up is online over offline step time,
median over alternating repetitions. Peak memory is the process's peak RSS above its RSS before the teacher was
built: the teacher's weights and activations at this batch size, and the dass-tiny training step's activations
(the floor every row shares; mn04's row is mostly that step).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time

import torch

from benchmarks import common

TEACHERS = (
    "ast/audioset-10-10-0.4593",
    "passt/s_swa_p16_128_ap476",
    "htsat/audioset",
    "beats/iter3_plus_as2m_cpt2",
    "ced/tiny",
    "ced/mini",
    "ced/base",
    "efficientat/mn04_as",
    "efficientat/mn10_as",
    "efficientat/mn40_as",
    "yamnet",
    "dass/small",
)
QUICK_TEACHERS = ("efficientat/mn04_as", "ced/tiny", "yamnet")
BATCH = 2
STORED_K = 50


def views(count: int) -> torch.Tensor:
    """`count` real 10 s views of the shared clips at the default policy's rate, spread over the clips."""
    from kd.core.augment import policy_by_name
    from kd.core.manifest import load_manifest
    from kd.dump.plan import calibration_views

    directory = tempfile.mkdtemp(prefix="kd-bench-costs-")
    manifest = load_manifest(common.write_manifest(directory, quick=False), check_files=False)
    return calibration_views(manifest, policy_by_name("default"), 2, count).waves


def student_features(waves: torch.Tensor) -> torch.Tensor:
    from kd.core.audio import resample
    from kd.students import create_student

    student = create_student("dass-tiny")
    with torch.no_grad():
        return student.frontend(resample(waves, 32000, student.sample_rate))


def measure(name: str, waves: torch.Tensor, features: torch.Tensor, times: int, threads: int) -> dict:
    """One teacher's row, in a fresh process: parameters, forward cost, peak memory, offline vs online step."""
    import psutil

    from benchmarks.loader import StudentStep
    from kd.core.labels import audioset_labels
    from kd.dump import top_k
    from kd.dump.plan import timing_teacher
    from kd.stores.targets import EnsembleSpec, combine, expand_topk

    torch.set_num_threads(threads)
    labels = audioset_labels()
    step = StudentStep("dass-tiny")
    checkpoint = common.checkpoint(name) if name in common.CHECKPOINTS else None
    baseline = psutil.Process().memory_info().rss
    teacher, random = timing_teacher(name, checkpoint)
    mapping = teacher.labels.map_to(labels)
    index, covered = torch.as_tensor(mapping.index), int(mapping.covered.sum())
    spec = EnsembleSpec(((name, 1.0),))

    def targets(out: dict) -> dict:
        full = expand_topk(out["logits"], out["indices"], out["rest"], mapping.covered)
        soft, mask = combine([full], spec)
        return {"features": features, "targets": soft.float(), "mask": mask, "labels": torch.zeros_like(soft)}

    top_k(teacher, index, len(labels), waves[:1], 32000, covered)  # warm-up: first-call allocations
    step(targets(top_k(teacher, index, len(labels), waves[:1], 32000, STORED_K)) | {"features": features[:1]})
    forward, online, offline = [], [], []
    for _ in range(times):
        start = time.perf_counter()
        out = top_k(teacher, index, len(labels), waves, 32000, covered)  # online: every covered class
        forward.append(time.perf_counter() - start)
        step(targets(out))
        online.append(time.perf_counter() - start)
        stored = {key: value[:, :STORED_K] for key, value in out.items() if key != "rest"}
        stored["rest"] = top_k_rest(out, covered)
        start = time.perf_counter()
        step(targets(stored))
        offline.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    seconds = statistics.median(forward) / len(waves)
    return {
        "teacher": name,
        "weights": "random (seeded)" if random else "real",
        "params_M": round(teacher.num_parameters() / 1e6, 2) if teacher.num_parameters() else "-",
        "rate": teacher.card.sample_rate,
        "s_per_10s_view": round(seconds, 4),
        "views_per_s": round(1 / seconds, 2),
        "peak_memory_MB": round(peak / 1e6),
        "online_s_per_step": round(statistics.median(online), 3),
        "offline_s_per_step": round(statistics.median(offline), 3),
        "speedup": round(statistics.median(a / b for a, b in zip(online, offline, strict=True)), 1),
    }


def top_k_rest(out: dict, covered: int):
    """The rest fill a store holds for top-`STORED_K` (mean probability of the other covered classes, as a logit),
    from full covered logits, exactly as `kd.dump.top_k` computes it."""
    import numpy as np

    logits = torch.from_numpy(out["logits"][:, :covered]).double()
    rest = torch.sigmoid(logits[:, STORED_K:]).mean(dim=1).clamp(1e-7, 1 - 1e-7)
    return np.asarray(torch.log(rest) - torch.log1p(-rest))


def run(quick: bool = False) -> list[dict]:
    """One row per teacher, each measured in its own process on the same views."""
    batch = 1 if quick else BATCH
    waves = views(batch)
    features = student_features(waves)
    threads = torch.get_num_threads()
    rows = []
    context = multiprocessing.get_context("spawn")
    for name in QUICK_TEACHERS if quick else TEACHERS:
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            try:
                rows.append(pool.submit(measure, name, waves, features, common.repeats(quick), threads).result())
            except Exception as e:  # a teacher that cannot run here is reported, not allowed to hide the rest
                rows.append({"teacher": name, "weights": f"not run: {type(e).__name__}: {e}"})
        print(f"  {name}: {rows[-1]}", file=sys.stderr, flush=True)  # a long run shows where it is
    return rows


if __name__ == "__main__":
    print(common.markdown(run(quick="--quick" in sys.argv)))
