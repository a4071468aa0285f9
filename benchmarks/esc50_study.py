"""The distillation study on real data: ESC-50 folds 1-3 -> fold 4, students from stored teachers against the
teachers themselves, a label-only student and online KD.

    python -m benchmarks.esc50_study                       # every configuration, resumes where it stopped
    python -m benchmarks.esc50_study --steps 300 --only kd_mn04_v4,label_only
    python -m benchmarks.esc50_study --report              # tables and curves from what is already trained
    python -m benchmarks.esc50_study --out runs/fold1 --train-folds 1 --only kd_mn04_v16_manifest_dp2,label_only_dp2

One store holds the teachers the chosen configurations read (mn04 and YAMNet for the default set) over --views (16)
views of each training clip; a configuration with V views trains on the first V of them (view 0 is the clean clip),
which is exactly what a dump with --views V would have stored. The 48-view configurations need their own `--out` and
`--views 48`. Every student has the same architecture, steps, batch and seed, and is scored on fold 4 by label mAP
(as `kd eval`) and by top-5 overlap with mn04's tags. Learning curves come from each run's fold-4 validation in
metrics.jsonl. Writes docs/experiments/distillation-results.md (table) and docs/experiments/distillation-curves.png
(OUT/docs for another --out), and prints the best student's checkpoint.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.common import SHARED_DATA as SHARED
from benchmarks.common import markdown

ESC50 = SHARED / "esc50"
WEIGHTS = {
    "efficientat/mn04_as": SHARED / "weights" / "efficientat_mn04_as.pt",
    "yamnet": SHARED / "weights" / "yamnet.tflite",
}
MN04, YAMNET = "efficientat/mn04_as", "yamnet"
REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "experiments"  # beside the experiment log, docs/experiments/distillation.md
VIEWS = 16  # dumped per training clip by default; a configuration wanting more exists to test more views
TRAIN_FOLDS = "123"  # fold 4 is scored
K = 50  # logits stored per view and teacher by default, as kd dump-teachers


@dataclass(frozen=True)
class Study:
    """One configuration: which teachers, how many stored views, labels or not, offline or online."""

    name: str
    teachers: str = MN04
    views: int = 4
    label_weight: float = 0.0
    online: bool = False
    note: str = ""
    by_default: bool = True  # False: trained only when named by --only
    pool: bool = False  # trains on the store of the training clips plus --pool's unlabelled clips
    extra: dict = field(default_factory=dict)


CONFIGS = [  # run in this order (the longest first, so that --jobs 2 finishes together), reported as listed
    Study("online_mn04", online=True, note="online KD: mn04 in the loop on fresh views every epoch"),
    Study("label_only", views=16, label_weight=1.0, note="manifest labels only, no teacher"),
    Study("kd_mn04_v16", views=16, note="offline KD from mn04, 16 views"),
    Study(
        "kd_mn04_v16_manifest",
        views=16,
        note="offline KD from mn04, 16 views, taught only the classes the manifest names (--classes manifest)",
        by_default=False,  # ahead at 6000 steps, behind all classes at 10,000 (docs/experiments/distillation.md)
        extra={"classes": "manifest"},
    ),
    Study(
        "kd_mn04_v16_manifest_t2",
        views=16,
        note="as kd_mn04_v16_manifest, at temperature 2",
        by_default=False,
        extra={"classes": "manifest", "temperature": 2.0},
    ),
    # kd's default drop path (0.1) since 2026-12-05; these pin it to compare. Without it the 6000-step KD student
    # fits its training clips as well as mn04 does and not fold 4 (docs/experiments/distillation.md).
    *(
        Study(
            f"kd_mn04_v16_manifest_dp{round(rate * 10)}",
            views=16,
            note=f"as kd_mn04_v16_manifest, drop path {rate}",
            by_default=False,
            extra={"classes": "manifest", "drop_path": rate},
        )
        for rate in (0.0, 0.2, 0.3)
    ),
    # One setting changed from kd_mn04_v16_manifest_dp2.
    *(
        Study(
            f"kd_mn04_v16_manifest_dp2_{suffix}",
            views=16,
            note=f"as kd_mn04_v16_manifest_dp2, {what}",
            by_default=False,
            extra={"classes": "manifest", "drop_path": 0.2, **setting},
        )
        for suffix, what, setting in (
            ("t2", "at temperature 2", {"temperature": 2.0}),
            ("cm5", "each target half way to its clip's mean over the views", {"clip_mean_weight": 0.5}),
        )
    ),
    Study(
        "kd_mn04_v16_dp2",
        views=16,
        note="offline KD from mn04, 16 views, all 527 classes, drop path 0.2",
        by_default=False,
        extra={"drop_path": 0.2},
    ),
    *(
        Study(
            f"label_only_dp{round(rate * 10)}",
            views=16,
            label_weight=1.0,
            note=f"label_only at drop path {rate}",
            by_default=False,
            extra={"drop_path": rate},
        )
        for rate in (0.2, 0.3)
    ),
    # Only with --pool: the same label-free recipe on a store that holds the training clips and an unlabelled pool.
    Study(
        "kd_mn04_pool_dp2",
        views=16,
        note="as kd_mn04_v16_manifest_dp2, on the training clips plus the unlabelled --pool",
        by_default=False,
        pool=True,
        extra={"classes": "manifest", "drop_path": 0.2},
    ),
    Study("kd_mn04_v4", note="offline KD from mn04, 4 views"),
    Study("kd_mn04_v1", views=1, note="offline KD from mn04, the clean view only"),
    Study("kd_ensemble_v4", teachers=f"{MN04}:1,{YAMNET}:1", note="offline KD from mn04 + YAMNet, 4 views"),
    Study("kd_yamnet_v4", teachers=YAMNET, note="offline KD from YAMNet, 4 views"),
    Study("kd_labels_mn04_v16", views=16, label_weight=0.5, note="offline KD from mn04 and the labels, half each"),
    # Only with --views 48 (a store of 48 views): more views, each with its own teacher targets, against the same
    # 48 augmentations with the clip's one label.
    Study("label_only_v48", views=48, label_weight=1.0, note="manifest labels only, 48 views", by_default=False),
    Study("kd_mn04_v48", views=48, note="offline KD from mn04, 48 views", by_default=False),
]


def write_manifests(out: Path, limit: int = 0, folds: str = TRAIN_FOLDS) -> tuple[Path, Path]:
    """The training folds (1-3 unless `folds` names fewer; unlabelled use only through the store) and fold 4
    (scoring), absolute paths; `limit` keeps every n-th clip so that about `limit` clips remain per split (smoke
    runs). A work directory keeps the manifests it was made with (its store and runs were made from them): asked
    for other clips, it stops and asks for another --out."""
    rows = list(csv.DictReader(open(ESC50 / "esc50.csv")))
    paths = []
    for name, keep in (("train.csv", lambda f: f in folds), ("fold4.csv", lambda f: f == "4")):
        path = out / name
        chosen = [r for r in rows if keep(r["fold"])]
        if limit:
            chosen = chosen[:: max(1, len(chosen) // limit)][:limit]
        wanted = [[str(ESC50 / r["path"]), r["labels"], r["category"]] for r in chosen]
        if path.exists():
            if [row["path"] for row in csv.DictReader(open(path))] != [w[0] for w in wanted]:
                raise SystemExit(
                    f"{path}: this work directory was made for other clips (--train-folds, --limit); "
                    "give this study its own --out"
                )
        else:
            with open(path, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["path", "labels", "category"])
                writer.writerows(wanted)
        paths.append(path)
    return paths[0], paths[1]


def write_pool_manifest(out: Path, train: Path, pool: Path, clips: int) -> Path:
    """The training clips followed by `clips` clips of the unlabelled manifest `pool` (all for 0; an even subset
    otherwise, so that a smaller pool is a part of a larger one), absolute paths, no labels. Pool rows keep ids
    relative to the pool's folder, so their views do not depend on where the pool is installed."""
    from kd.core.manifest import load_manifest

    rows = [[r["path"], "", r["labels"], r["category"]] for r in csv.DictReader(open(train))]
    chosen = load_manifest(pool).clips
    if clips:
        if clips > len(chosen):
            raise SystemExit(f"--pool-clips {clips}: {pool} has only {len(chosen)} clips")
        chosen = [chosen[i] for i in np.linspace(0, len(chosen) - 1, clips).round().astype(int)]
    for clip in chosen:
        if clip.labels:
            raise SystemExit(f"{pool}: clip {clip.id} has labels; a pool is unlabelled audio")
        rows.append([clip.path, f"pool/{clip.id}", "", "pool"])
    path = out / f"train-pool{clips or len(chosen)}.csv"
    if path.exists() and [row["path"] for row in csv.DictReader(open(path))] != [r[0] for r in rows]:
        raise SystemExit(f"{path}: this work directory was made with another pool; give this study its own --out")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "id", "labels", "category"])
        writer.writerows(rows)
    return path


def dump(
    train: Path, store: Path, views: int, teachers: list[str], k: int, skip_bad: bool = False, policy: str = "default"
) -> float:
    """Dumps (or resumes) `store`; stops with the failed views named unless `skip_bad`, as kd dump-teachers does:
    without it their blocks stay undone and training would refuse the store."""
    from kd.dump import DumpConfig, dump_teachers

    began = time.perf_counter()
    report = dump_teachers(
        DumpConfig(
            manifest=str(train),
            store=str(store),
            teachers=teachers,
            checkpoints={t: str(WEIGHTS[t]) for t in teachers},
            views=views,
            k=k,
            clip_seconds=5.0,
            block_size=128,
            policy=policy,
            skip_bad=skip_bad,
        )
    )
    if report.failures:
        first = report.failures[0]
        failed = f"{store}: {len(report.failures)} views failed (first: {first.clip_id} view {first.view}: "
        failed += f"{first.reason})"
        if not skip_bad:
            raise SystemExit(
                f"{failed}; their blocks are left undone. Fix or drop those clips (scripts/audio_pool.py drops "
                "clips that do not decode whole), or rerun with --skip-bad to keep them as failed views"
            )
        print(f"{failed}; kept as failed views (--skip-bad)", flush=True)
    return time.perf_counter() - began


def teacher_scores(fold4: Path, out: Path) -> dict[str, np.ndarray]:
    """Each teacher's fold-4 probabilities in AudioSet order (cached), for label mAP and the agreement figures."""
    from kd.core.labels import audioset_labels
    from kd.core.manifest import load_manifest
    from kd.use.evaluate import score_clips
    from kd.use.models import load_tagger

    cache = out / "teacher_fold4.npz"
    if cache.exists():
        return dict(np.load(cache))
    clips = [c for c in load_manifest(fold4).clips if c.labels]
    labels = audioset_labels()
    scores = {}
    for name, weights in WEIGHTS.items():
        tagger = load_tagger(name, str(weights))
        logits, _ = score_clips(tagger, clips, progress=False)
        index = tagger.labels.map_to(labels).index
        full = np.zeros((len(clips), len(labels)), dtype=np.float32)
        full[:, index[index >= 0]] = 1 / (1 + np.exp(-logits[:, index >= 0]))
        scores[name] = full
    np.savez(cache, **scores)
    return scores


def fold4_truth(fold4: Path) -> np.ndarray:
    from kd.core.labels import audioset_labels, resolve_labels
    from kd.core.manifest import load_manifest

    clips = [c for c in load_manifest(fold4).clips if c.labels]
    return resolve_labels([c.labels for c in clips], audioset_labels()).targets


def train(study: Study, store: Path, fold4: Path, out: Path, args: argparse.Namespace) -> Path:
    from kd.train import TrainConfig, train_student

    if study.pool:
        store = args.pool_store

    run = out / "runs" / study.name
    last = run / "last.pt"
    if last.exists():
        from kd.students.checkpoint import read_checkpoint

        if read_checkpoint(last)["step"] >= args.steps:
            return run
    config = TrainConfig(
        store=str(store),
        out=str(run),
        student=args.student,
        teachers=study.teachers,
        views=None if study.online else min(study.views, args.views),  # smoke runs store fewer
        label_weight=study.label_weight,
        loss=args.loss,
        online=study.online,
        teacher_checkpoints={k: str(v) for k, v in WEIGHTS.items()} if study.online else {},
        steps=args.steps,
        seed=args.seed,
        batch_size=args.batch_size,
        workers=args.workers,
        val_fraction=0.0,
        val_manifest=str(fold4),
        val_every=max(1, args.steps // args.curve_points),
        checkpoint_every=max(1, args.steps // args.curve_points),
        resume=True,
        feature_cache=None if args.feature_cache == Path("none") else str(args.feature_cache),
        **study.extra,
    )
    train_student(config)
    return run


def torch_threads(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, args.jobs)))


def train_side_by_side(chosen: list[Study], args: argparse.Namespace, argv: list[str]):
    """Trains the configurations `args.jobs` at a time, each in its own process (a small student does not use two
    cores well, two students do); yields (name, wall seconds) as each finishes. A failed job stops the study."""
    pending, running = list(chosen), {}
    while pending or running:
        while pending and len(running) < max(1, args.jobs):
            study = pending.pop(0)
            command = [sys.executable, "-m", "benchmarks.esc50_study", *argv, "--out", str(args.out)]
            command += ["--store", str(args.store), "--train-only", "--only", study.name]
            with open(args.out / f"train-{study.name}.log", "ab") as log:  # the child keeps its own copy
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
            running[study.name] = (process, time.perf_counter())
        time.sleep(1)
        for name, (process, began) in list(running.items()):
            if process.poll() is None:
                continue
            del running[name]
            if process.returncode:
                for other, _ in running.values():
                    other.terminate()
                raise SystemExit(f"training {name} failed (exit {process.returncode}): see {args.out}/train-{name}.log")
            yield name, time.perf_counter() - began


def score(run: Path, fold4: Path, truth: np.ndarray, teachers: dict[str, np.ndarray]) -> dict:
    import torch

    from kd.core.manifest import load_manifest
    from kd.core.metrics import tagging_metrics
    from kd.students.readout import Readout
    from kd.use.evaluate import score_clips
    from kd.use.models import load_tagger

    tagger = load_tagger(str(run / "last.pt"))
    clips = [c for c in load_manifest(fold4).clips if c.labels]
    # One pass for the raw logits; the student's own readout (what `kd eval` scores) and the two plain ones follow.
    readout, tagger.module.readout = tagger.module.readout, Readout(tagger.module.readout.num_classes)
    raw, _ = score_clips(tagger, clips, progress=False)
    raw = torch.from_numpy(raw)
    probs = torch.sigmoid(readout(raw)).numpy()
    metrics = tagging_metrics(truth, probs)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rates = [r["samples_per_s"] for r in records if "samples_per_s" in r]
    return {
        "label_map": metrics.mAP,
        "readout": readout.kind,
        "map_sigmoid": tagging_metrics(truth, torch.sigmoid(raw).numpy()).mAP,
        "map_softmax": tagging_metrics(truth, torch.softmax(raw, -1).numpy()).mAP,
        "auc": metrics.mean_auc,
        "top5_mn04": top5_overlap(probs, teachers[MN04]),
        "samples_per_s": float(np.median(rates)) if rates else float("nan"),
        "curve": [(r["step"], r["val_manifest_map"]) for r in records if "val_manifest_map" in r],
    }


def top5_overlap(a: np.ndarray, b: np.ndarray) -> float:
    ta, tb = np.argsort(-a, axis=1)[:, :5], np.argsort(-b, axis=1)[:, :5]
    return float(np.mean([len(set(x) & set(y)) / 5 for x, y in zip(ta, tb, strict=True)]))


def stored_k(store: Path) -> int:
    """The most logits per view any teacher in the store keeps (the made-by line's --k)."""
    from kd.stores.logit_store import LogitStore

    if not store.exists():
        return K
    logits = LogitStore(str(store))
    return max(logits.teacher(name).k for name in logits.teacher_names())


def report(results: dict, teachers: dict[str, np.ndarray], truth: np.ndarray, timings: dict, args) -> str:
    from kd.core.metrics import tagging_metrics

    rows = []
    ensemble = (teachers[MN04] + teachers[YAMNET]) / 2
    for name, probs in ((MN04, teachers[MN04]), (YAMNET, teachers[YAMNET]), ("mn04 + YAMNet (mean prob)", ensemble)):
        m = tagging_metrics(truth, probs)
        rows.append(
            {
                "model": f"teacher {name}",
                "label mAP": m.mAP,
                "AUC": m.mean_auc,
                "top-5 overlap mn04": top5_overlap(probs, teachers[MN04]),
            }
        )
    samples = args.steps * args.batch_size
    for study in CONFIGS:
        if study.name not in results:
            continue
        r = results[study.name]
        clips = args.train_clips + (args.pool_size if study.pool else 0)
        epoch_clips = clips * (1 if study.online else study.views)
        rows.append(
            {
                "model": f"{args.student} {study.name}",
                "label mAP": r["label_map"],
                "readout": r["readout"],
                "mAP sigmoid(logits)": r["map_sigmoid"],
                "mAP softmax(logits)": r["map_softmax"],
                "AUC": r["auc"],
                "top-5 overlap mn04": r["top5_mn04"],
                "samples/s": r["samples_per_s"],
                "s per epoch": epoch_clips / r["samples_per_s"] if r["samples_per_s"] else float("nan"),
                "epochs": samples / epoch_clips,
                "what": study.note,
            }
        )
    if args.train_folds == TRAIN_FOLDS:
        folds, folds_flag = "folds 1-3", ""
    else:
        many = "s" * (len(args.train_folds) > 1)
        folds, folds_flag = f"fold{many} {', '.join(args.train_folds)}", f" --train-folds {args.train_folds}"
    k_flag = f" --k {k}" if (k := stored_k(args.store)) != K else ""
    if args.pool:
        k_flag += f" --pool {args.pool} --pool-clips {args.pool_size}"
    if args.policy != "default":
        k_flag += f" --policy {args.policy}"
    lines = [
        "# Distillation on ESC-50: stored teachers against labels and online KD",
        "",
        f"Made by `python -m benchmarks.esc50_study --steps {args.steps} --batch-size {args.batch_size} "
        f"--student {args.student} --loss {args.loss} --seed {args.seed}{folds_flag}{k_flag}` on "
        f"{time.strftime('%Y-%m-%d')}. Train: ESC-50 {folds} "
        f"({args.train_clips} clips incl. two unlabelled categories, label-free unless stated); score: fold 4 "
        "(label mAP over the AudioSet classes fold 4 has, whole 5 s clips, EMA weights). "
        "Every student: same architecture, steps, batch, seed. `label mAP` scores each student through its readout, "
        "as `kd eval` does (sigmoid for BCE students, logit(softmax) for label-free KL ones); the next two columns "
        "score the same logits through a plain sigmoid and a softmax over all classes.",
        "",
        markdown(rows),
        "",
        "Timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()),
        "",
        "![fold-4 label mAP against step](distillation-curves.png)",
    ]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, r in results.items():
        if r["curve"]:
            steps, maps = zip(*r["curve"], strict=True)
            ax.plot(steps, maps, marker="o", label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("fold-4 label mAP")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def read_times(path: Path) -> dict[str, float]:
    return json.loads(path.read_text()) if path.exists() else {}


def add_time(path: Path, part: str, seconds: float) -> None:
    """Adds one part's wall time to the study's record at once, re-read first: a study interrupted later, or
    another one started in the same --out meanwhile, keeps what was already recorded."""
    times = read_times(path)
    times[part] = times.get(part, 0.0) + seconds
    path.write_text(json.dumps(times, indent=2))


def choose(args: argparse.Namespace) -> list[Study]:
    """The configurations to train: those named by --only, else the default set. A configuration trains on at most
    --views views (smoke runs store fewer); one that exists to test more views than VIEWS must have them."""
    if not args.only:
        return [c for c in CONFIGS if c.by_default]
    names = args.only.split(",")
    if unknown := [n for n in names if n not in {c.name for c in CONFIGS}]:
        raise SystemExit(
            f"--only: no configuration {', '.join(unknown)}; choose among {', '.join(c.name for c in CONFIGS)}"
        )
    chosen = [c for c in CONFIGS if c.name in names]
    if wide := [c.name for c in chosen if c.views > max(args.views, VIEWS)]:
        raise SystemExit(
            f"--only {','.join(wide)}: needs more than --views {args.views} stored views; pass --views "
            f"{max(c.views for c in chosen)} (with its own --out: a store keeps the views it was made with)"
        )
    return chosen


def dumped_teachers(chosen: list[Study]) -> list[str]:
    """The teachers the chosen offline configurations read (mn04 when only labels are trained: the store needs one)."""
    from kd.stores.targets import parse_teachers

    names = {name for c in chosen if not c.online for name, _ in parse_teachers(c.teachers)}
    return [t for t in WEIGHTS if t in names] or [MN04]


def main(argv: list[str] | None = None) -> None:
    from kd.core.augment import POLICIES
    from kd.train import LOSSES

    parser = argparse.ArgumentParser(prog="python -m benchmarks.esc50_study", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/esc50"), help="work directory (resumable)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--student", default="dass-mini-p16")
    parser.add_argument(
        "--loss", default="kl", choices=LOSSES, help="distillation loss (KL learned faster than BCE on ESC-50)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="every student's seed (another seed, another --out: the spread of a figure)"
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--views", type=int, default=VIEWS, help="views dumped per training clip")
    parser.add_argument(
        "--k",
        type=int,
        default=K,
        help="logits stored per view (kd dump-teachers --k; 527 = all): with 50, about 50 of the 59 ESC-50 classes "
        "of a view share one fill value",
    )
    parser.add_argument(
        "--store",
        type=Path,
        help="logit store (default OUT/store.zarr); another study's store is reused, and extended with any teacher "
        "the chosen configurations need and it lacks; --pool's store lives beside it",
    )
    parser.add_argument(
        "--policy",
        default="default",
        choices=list(POLICIES),
        help="augmentation policy of the dumped views (kd dump-teachers --policy; a store keeps its own: own --out)",
    )
    parser.add_argument("--curve-points", type=int, default=6, help="fold-4 validations per run")
    parser.add_argument("--only", default="", help=f"comma-separated among {', '.join(c.name for c in CONFIGS)}")
    parser.add_argument(
        "--docs",
        type=Path,
        help="where the table and the PNG go (default: docs/experiments/ for the default --out, else OUT/docs)",
    )
    parser.add_argument("--report", action="store_true", help="only score and report what is trained")
    parser.add_argument("--limit", type=int, default=0, help="about this many clips per split (smoke runs)")
    parser.add_argument(
        "--train-folds",
        default=TRAIN_FOLDS,
        help=f"the ESC-50 folds the store and every student train on (a subset of {TRAIN_FOLDS}, with its own "
        "--out): fewer labelled clips, the regime where a teacher's targets should count most",
    )
    parser.add_argument(
        "--pool",
        type=Path,
        help="a kd manifest of unlabelled audio (scripts/audio_pool.py writes one): the *_pool configurations train "
        "label-free on a store of the training clips plus these",
    )
    parser.add_argument("--pool-clips", type=int, default=0, help="use this many of --pool's clips (0: all)")
    parser.add_argument(
        "--feature-cache",
        type=Path,
        help="kd train-student --feature-cache (default: beside the store; 'none': off); bit-identical training, "
        "about 255 KB of disk per stored view",
    )
    parser.add_argument(
        "--jobs", type=int, default=2, help="configurations trained side by side, each on cores / jobs threads"
    )
    parser.add_argument(
        "--skip-bad", action="store_true", help="keep views whose clips do not decode as failed views (kd's --skip-bad)"
    )
    parser.add_argument("--train-only", action="store_true", help=argparse.SUPPRESS)  # one job of --jobs
    args = parser.parse_args(argv)
    if not args.train_folds or set(args.train_folds) - set(TRAIN_FOLDS):
        parser.error(f"--train-folds {args.train_folds!r}: name training folds among 1, 2, 3 (fold 4 is scored)")
    # A study in another work directory (a trial, other steps) must not overwrite the committed table.
    default_out = args.out == Path(parser.get_default("out"))
    args.out = args.out.resolve()
    args.docs = args.docs or (DOCS if default_out else args.out / "docs")
    args.store = (args.store or args.out / "store.zarr").resolve()
    args.pool = args.pool and args.pool.resolve()
    args.feature_cache = args.feature_cache or args.store.parent / "features"
    args.pool_size = 0  # the pool's clip count, once its manifest is written (below)
    args.pool_store = args.store.parent / f"pool{args.pool_clips or 'all'}-store.zarr"  # reused with --store
    if args.train_only:
        torch_threads(args)
        for study in [c for c in CONFIGS if c.name in args.only.split(",")]:
            train(study, args.store, args.out / "fold4.csv", args.out, args)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = choose(args)
    timings = args.out / "timings.json"
    train_csv, fold4 = write_manifests(args.out, args.limit, args.train_folds)
    args.train_clips = sum(1 for _ in open(train_csv)) - 1
    pooled = [c for c in chosen if c.pool]
    if pooled and not args.pool:
        raise SystemExit(f"--only {','.join(c.name for c in pooled)}: needs --pool MANIFEST (unlabelled audio)")
    if args.pool:
        pool_csv = write_pool_manifest(args.out, train_csv, args.pool, args.pool_clips)
        args.pool_size = sum(1 for _ in open(pool_csv)) - 1 - args.train_clips
    if not args.report:
        if unpooled := [c for c in chosen if not c.pool]:
            took = dump(
                train_csv, args.store, args.views, dumped_teachers(unpooled), args.k, args.skip_bad, args.policy
            )
            add_time(timings, "dump", took)
        if pooled:
            took = dump(
                pool_csv, args.pool_store, args.views, dumped_teachers(pooled), args.k, args.skip_bad, args.policy
            )
            add_time(timings, f"dump pool {args.pool_size}", took)
    teachers = teacher_scores(fold4, args.out)
    truth = fold4_truth(fold4)
    if not args.report:
        for name, took in train_side_by_side(chosen, args, sys.argv[1:] if argv is None else argv):
            add_time(timings, f"train {name}", took)
    torch_threads(args)
    from kd.students.checkpoint import read_checkpoint

    results = {}
    for study in CONFIGS:  # every configuration trained here, so that an --only run keeps the others in the table
        run = args.out / "runs" / study.name
        if not (run / "last.pt").exists():
            continue
        if (step := read_checkpoint(run / "last.pt")["step"]) != args.steps:
            print(f"{study.name}: left out of the table, trained for {step} steps, not --steps {args.steps}")
            continue
        results[study.name] = score(run, fold4, truth, teachers)
        print(study.name, {k: v for k, v in results[study.name].items() if k != "curve"}, flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    args.docs.mkdir(parents=True, exist_ok=True)
    (args.docs / "distillation-results.md").write_text(
        report(results, teachers, truth, read_times(timings), args) + "\n"
    )
    plot(results, args.docs / "distillation-curves.png")
    label_free = {c.name for c in CONFIGS if c.label_weight == 0}
    students = {n: r for n, r in results.items() if n in label_free}
    if students:
        best = max(students, key=lambda n: students[n]["label_map"])
        print(
            f"best label-free student: {best} (fold-4 label mAP {students[best]['label_map']:.3f}): "
            f"{args.out / 'runs' / best / 'last.pt'}"
        )


if __name__ == "__main__":
    main()
