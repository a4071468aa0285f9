"""The margin of a distilled student over a label-only one, across seeds: one row per study directory of
`benchmarks.esc50_study` (each trained the same pair with its own --seed), then their mean and sample sd.

    python -m benchmarks.esc50_seeds runs/fold12 runs/fold12-seed1 runs/fold12-seed2
    python -m benchmarks.esc50_seeds runs/esc50-6k runs/esc50-6k-seed1 --pair kd_mn04_v16_manifest_dp2,label_only

A single seed cannot tell a margin from noise on ESC-50: the label-only student alone moves by up to 0.07 fold-4
label mAP from seed to seed. Reads each directory's results.json (written by the study) and each run's config.json
(its seed and steps); a pair trained for different steps in different directories is refused, not averaged.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from benchmarks.common import markdown

PAIR = "kd_mn04_v16_manifest_dp2,label_only_dp2"


def read_pair(study: Path, distilled: str, labels: str) -> dict:
    """One study directory's row: seed, steps, both students' fold-4 label mAP and AUC, and the margin."""
    results_file = study / "results.json"
    if not results_file.is_file():
        raise ValueError(f"{results_file}: not found; run `python -m benchmarks.esc50_study --out {study}` first")
    results = json.loads(results_file.read_text())
    row: dict = {}
    for role, name in (("KD", distilled), ("labels", labels)):
        config_file = study / "runs" / name / "config.json"
        if name not in results or not config_file.is_file():
            raise ValueError(f"{study}: no scored run {name!r}; train it with --only {name}")
        config = json.loads(config_file.read_text())
        seed, steps = row.setdefault("seed", config["seed"]), row.setdefault("steps", config["steps"])
        if (config["seed"], config["steps"]) != (seed, steps):
            raise ValueError(f"{study}: {distilled} and {labels} differ in seed or steps; they are not a pair")
        row[f"{role} mAP"] = results[name]["label_map"]
        row[f"{role} AUC"] = results[name]["auc"]
    row["margin"] = row["KD mAP"] - row["labels mAP"]
    return {"study": str(study), **row}


def summarise(rows: list[dict]) -> list[dict]:
    """The rows, then their mean and, from two seeds on, the sample sd of each figure."""
    if len({row["steps"] for row in rows}) > 1:
        raise ValueError("the studies trained for different --steps; compare like with like")
    figures = ("KD mAP", "labels mAP", "margin", "KD AUC", "labels AUC")
    out = [dict(row) for row in rows]
    out.append({"study": "mean", **{k: statistics.fmean(r[k] for r in rows) for k in figures}})
    if len(rows) > 1:
        out.append({"study": "sd", **{k: statistics.stdev(r[k] for r in rows) for k in figures}})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("studies", nargs="+", type=Path, help="--out directories of benchmarks.esc50_study")
    parser.add_argument("--pair", default=PAIR, help="DISTILLED,LABEL_ONLY configuration names (default: %(default)s)")
    args = parser.parse_args(argv)
    names = args.pair.split(",")
    if len(names) != 2 or not all(names):
        parser.error(f"--pair {args.pair!r}: give two configuration names, the distilled one first")
    try:
        table = summarise([read_pair(study, *names) for study in args.studies])
    except ValueError as e:
        parser.exit(2, f"esc50_seeds: error: {e}\n")
    print(markdown(table))


if __name__ == "__main__":
    main()
