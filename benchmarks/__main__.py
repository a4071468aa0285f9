"""`python -m benchmarks`: runs the benchmark suite on the real shared data, prints a table per benchmark, writes JSON.

python -m benchmarks                      # the full suite (about 15 minutes on 2 cores)
python -m benchmarks --quick              # small subsets, about 2 minutes: a smoke run
python -m benchmarks --only dump_overhead,topk_fidelity --repeats 5
python -m benchmarks --long               # also DASS-small on 600 s and 3600 s of audio (tens of minutes)
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

from benchmarks import common

# Suite order: cheap and independent first, the long timing runs after.
BENCHMARKS = {
    "store_size": "store size per clip-view-teacher by k and codec",
    "topk_fidelity": "top-k fidelity: mAP and BCE from reconstructed vs full logits, zero vs rest fill",
    "dump_overhead": "dump wall time over the bare teacher forward",
    "loader": "training input pipeline throughput vs student step rate",
    "offline_online": "offline (store) vs online (teacher in the loop) distillation epoch time",
    "dask_dump": "distributed dump on a dask LocalCluster, 1 vs 2 workers",
    "scan": "chunked vs sequential selective scan",
    "student_step": "DASS training step samples/s by size and patch, and the scan's share of a step",
    "train_loop": "training loop samples/s against its bare step, cold and with a warm feature cache, stage profile",
    "dass_duration": "DASS-small inference cost vs audio duration",
    "ensemble_swap": "one mn04+YAMNet dump, three students with different ensembles, no re-dump",
    "teacher_costs": "every teacher family at real size: cost per view, memory, offline vs online step speed-up",
    "plan_check": "kd plan's dump-time estimate against the real dump it describes",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small subsets and fewer repetitions (~2 minutes)")
    parser.add_argument("--only", default="", help=f"comma-separated benchmarks among: {', '.join(BENCHMARKS)}")
    parser.add_argument("--json", default="benchmarks/results/latest.json", help="where to write the results")
    parser.add_argument("--repeats", type=int, default=None, help="repetitions per timing (default 3, quick 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: see common.py)")
    parser.add_argument("--clips", type=int, default=None, help="use at most this many shared clips")
    parser.add_argument("--long", action="store_true", help="dass_duration up to 3600 s of audio (else 10 s, 60 s)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    args.names = names
    return args


def run_one(name: str, quick: bool, long: bool) -> list[dict]:
    module = importlib.import_module(f"benchmarks.{name}")
    if name == "dass_duration":
        # Its full list ends with an hour of audio (over 10 minutes here); only --long asks for it.
        return module.run(quick=quick or not long)
    return module.run(quick=quick)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.require_shared_data()
    common.set_repeats(args.repeats)
    common.set_threads(args.threads)
    common.set_clip_limit(args.clips)
    results = {
        "machine": common.machine(),
        "settings": {
            "quick": args.quick,
            "repeats": common.repeats(args.quick),
            "threads": args.threads,
            "clips": len(common.clip_rows(args.quick)),
            "long": args.long,
        },
        "benchmarks": {},
    }
    machine = results["machine"]
    print(f"# kd benchmarks{' (quick)' if args.quick else ''}\n")
    print(
        f"{machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} ({args.threads} thread), "
        f"load {machine['load_average']}, {machine['date']}\n",
        flush=True,
    )
    failed = []
    for name in args.names:
        start = time.perf_counter()
        try:
            rows = run_one(name, args.quick, args.long)
        except Exception as e:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            failed.append(name)
            results["benchmarks"][name] = {"error": f"{type(e).__name__}: {e}"}
            continue
        seconds = time.perf_counter() - start
        results["benchmarks"][name] = {"title": BENCHMARKS[name], "seconds": round(seconds, 1), "rows": rows}
        print(f"## {name}: {BENCHMARKS[name]} ({seconds:.0f} s)\n\n{common.markdown(rows)}\n", flush=True)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"results written to {path}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
