"""The label-free recipe in one command: dump once, train three seeds of the pair, report the margin.

    python -m benchmarks.esc50_recipe --out runs/recipe                  # the measured best: 12,000 steps, no pool
    python -m benchmarks.esc50_recipe --out runs/recipe-pool --pool install --steps 6000

1. With `--pool install`, `scripts/audio_pool.py` installs the pool of recorded sound effects (pinned Debian
   packages) into OUT/pool; `--pool MANIFEST` names one already built; `--pool none` (the default) uses none, the
   recipe whose label-free student reached 0.728 (sd 0.005) over three seeds (docs/experiments/distillation.md).
2. For each seed, `benchmarks.esc50_study` trains the pair side by side: the label-free student (teacher logits
   only: `kd_mn04_v16_manifest_dp2`, or `kd_mn04_pool_dp2` on folds 1-3 plus the pool) and the label-only one on
   folds 1-3's labels. Every seed shares OUT/store.zarr (and OUT/pool{N|all}-store.zarr) and the feature cache.
3. `benchmarks.esc50_seeds` turns the seeds into one table (mean and sd of fold-4 label mAP, both students, and the
   margin), printed and written to OUT/recipe.md with the time each stage took.

On a 2-core CPU here the default takes about 85 minutes (dump 4-5 min, each seed's pair 25 min side by side, the
first seed's a few minutes more while the feature cache fills). Every stage resumes: rerun the same command after a
crash. Any flag not listed below goes to every `benchmarks.esc50_study` call (e.g. `--limit 6 --views 2 --student
dass-tiny` for a smoke run, `--policy cutmix`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

from benchmarks import esc50_seeds, esc50_study
from benchmarks.common import markdown

REPO = Path(__file__).resolve().parents[1]
PAIR = ("kd_mn04_v16_manifest_dp2", "label_only_dp2")
POOL_PAIR = ("kd_mn04_pool_dp2", "label_only_dp2")


def audio_pool_module():
    """scripts/audio_pool.py as a module (scripts/ is not a package: it is run as a script by users)."""
    spec = importlib.util.spec_from_file_location("audio_pool", REPO / "scripts" / "audio_pool.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("audio_pool", module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return sys.modules["audio_pool"]


def run(args: argparse.Namespace, study_flags: list[str], packages=None) -> str:
    """The three stages; returns the report (also written to OUT/recipe.md). `packages` overrides the pinned pool."""
    args.out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    pool = None if args.pool == "none" else Path(args.pool)
    pair = PAIR if pool is None else POOL_PAIR
    if args.pool == "install":
        began = time.perf_counter()
        audio_pool = audio_pool_module()
        audio_pool.build_pool(args.out / "pool", packages or audio_pool.PACKAGES)
        pool, times["pool install"] = args.out / "pool" / "manifest.csv", time.perf_counter() - began
    studies = []
    for seed in args.seeds:
        study = args.out / f"seed{seed}"
        began = time.perf_counter()
        pooled = () if pool is None else ("--pool", str(pool), "--pool-clips", str(args.pool_clips))
        esc50_study.main(
            [
                *study_flags,
                *("--out", str(study), "--store", str(args.out / "store.zarr"), *pooled),
                *("--steps", str(args.steps), "--seed", str(seed), "--curve-points", str(args.curve_points)),
                *("--only", ",".join(pair), "--jobs", str(args.jobs)),
            ]
        )
        times[f"seed {seed} (dump and train)"] = time.perf_counter() - began
        studies.append(study)
    table = esc50_seeds.summarise([esc50_seeds.read_pair(s, *pair) for s in studies])
    timing = [{"stage": k, "seconds": round(v, 1)} for k, v in times.items()]
    timing.append({"stage": "total", "seconds": round(sum(times.values()), 1)})
    report = (
        f"# Label-free KD on ESC-50 folds 1-3{'' if pool is None else ' plus the unlabelled pool'}, against labels\n\n"
        f"Made by `python -m benchmarks.esc50_recipe {' '.join(args.argv)}`. KD = {pair[0]} (teacher logits only, "
        f"no label used), labels = {pair[1]}; fold-4 label mAP and AUC.\n\n{markdown(table)}\n\n{markdown(timing)}\n"
    )
    (args.out / "recipe.md").write_text(report)
    (args.out / "recipe.json").write_text(json.dumps({"seeds": table, "seconds": times}, indent=2) + "\n")
    return report


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """The recipe's own flags, and the rest (for every study)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/recipe"), help="work directory (resumable)")
    parser.add_argument(
        "--pool",
        default="none",
        help="unlabelled audio beside folds 1-3: none (default), install (the pinned pool, into OUT/pool) or MANIFEST",
    )
    parser.add_argument("--pool-clips", type=int, default=0, help="use this many of the pool's clips (0: all)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated student seeds (at least 3 for a figure)")
    parser.add_argument("--steps", type=int, default=12000, help="training steps of every student")
    parser.add_argument("--curve-points", type=int, default=12, help="fold-4 validations per student")
    parser.add_argument("--jobs", type=int, default=2, help="students trained side by side (one per core)")
    args, study_flags = parser.parse_known_args(argv)
    try:
        args.seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds {args.seeds!r}: give comma-separated integers, e.g. 0,1,2")
    if args.pool not in ("none", "install") and not Path(args.pool).is_file():
        parser.error(f"--pool {args.pool}: no such manifest; build one with scripts/audio_pool.py --dest DIR")
    args.out, args.argv = args.out.resolve(), sys.argv[1:] if argv is None else argv
    return args, study_flags


def main(argv: list[str] | None = None) -> None:
    print(run(*parse(argv)))


if __name__ == "__main__":
    main()
