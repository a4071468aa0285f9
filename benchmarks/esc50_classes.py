"""Where a distilled student wins and loses against a label-only one, class by class, over seeds.

    python -m benchmarks.esc50_classes runs/long-s2 runs/long-s3 runs/long-s4

Scores each study directory's pair (as `benchmarks.esc50_study` trained it) and the teacher mn04 on fold 4 with
`kd eval`'s metrics, averages each class's AP over the directories, and prints the classes where the two students
differ most, and the mean gap over the classes where the teacher is weak (below its median AP) or strong. The
distilled student follows its teacher class by class; this says how much of its gap to the labels is the teacher's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.common import markdown
from benchmarks.esc50_seeds import PAIR
from benchmarks.esc50_study import MN04, WEIGHTS


def class_aps(model: str, fold4: Path, checkpoint: str | None = None) -> tuple[np.ndarray, list[str]]:
    """Per-class fold-4 AP (NaN where fold 4 has no positive) and the class names."""
    from kd.use.evaluate import evaluate
    from kd.use.models import load_tagger

    report = evaluate(load_tagger(model, checkpoint), fold4, progress=False)
    return report.metrics.ap, list(report.labels.names)


def compare(studies: list[Path], distilled: str, labels: str, shown: int = 8) -> tuple[list[dict], dict]:
    """Rows (class, teacher AP, both students' mean AP, gap) for the `shown` widest gaps each way, and a summary."""
    fold4 = studies[0] / "fold4.csv"
    runs = {
        role: [class_aps(str(s / "runs" / name / "last.pt"), fold4)[0] for s in studies]
        for role, name in (("KD", distilled), ("labels", labels))
    }
    teacher, names = class_aps(MN04, fold4, str(WEIGHTS[MN04]))
    kd, lab = np.mean(runs["KD"], 0), np.mean(runs["labels"], 0)
    scored = np.flatnonzero(~np.isnan(teacher))
    gap = kd - lab
    order = scored[np.argsort(gap[scored])]
    rows = [
        {"class": names[i], "teacher AP": teacher[i], "KD AP": kd[i], "labels AP": lab[i], "KD - labels": gap[i]}
        for i in [*order[:shown], *order[-shown:]]
    ]
    weak = scored[teacher[scored] < np.median(teacher[scored])]
    strong = np.setdiff1d(scored, weak)
    with np.errstate(invalid="ignore", divide="ignore"):  # a tiny smoke run's teacher can be perfect everywhere
        summary = {
            "classes": len(scored),
            "KD - labels, teacher weak": float(gap[weak].mean()) if len(weak) else float("nan"),
            "KD - labels, teacher strong": float(gap[strong].mean()),
            "corr(teacher AP, KD - labels)": float(np.corrcoef(teacher[scored], gap[scored])[0, 1]),
        }
    return rows, summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.esc50_classes", description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+", type=Path, help="study directories of the same pair (one per seed)")
    parser.add_argument("--pair", default=PAIR, help="DISTILLED,LABELS configurations (default: %(default)s)")
    parser.add_argument("--shown", type=int, default=8, help="classes shown at each end")
    args = parser.parse_args(argv)
    distilled, labels = args.pair.split(",")
    rows, summary = compare(args.studies, distilled, labels, args.shown)
    print(markdown([{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in rows]))
    print(", ".join(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
