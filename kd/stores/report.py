"""`kd store report`: what a store's teachers are worth before any student trains, from the stored top-k alone.

Per teacher: label mAP against the manifest's labels (kept in the store) on the clean view and on the augmented
views (a mixed view is labelled with both clips' labels), calibration (mean probability per class against how often
the class is labelled), the entropy of the soft targets, class coverage and failed views. Per pair of teachers:
top-5 overlap and the rank correlation of their probabilities. Probabilities are the sigmoid of the stored logits
expanded as training expands them (`kd.stores.targets.expand_topk`: the top k exact, the other covered classes at
the stored rest fill), so the report sees exactly what a student would be taught.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
import torch

from kd.core.augment import draw_view
from kd.core.labels import resolve_labels
from kd.core.metrics import tagging_metrics
from kd.stores.logit_store import LogitStore
from kd.stores.targets import expand_topk

TOP = 5
# Rank correlations are computed per view; beyond this many views an evenly spaced subset gives the same mean.
MAX_RANK_VIEWS = 5000


@dataclass
class TeacherQuality:
    """One teacher's row of the report.

    Attributes:
        usable_views: views done and not failed (what training can use).
        clean_map: label mAP on view 0 (the clean clip) over the classes the teacher covers; None without labels or
            without a clean view.
        augmented_map: label mAP over the other views.
        classes_scored: classes with a positive clip among those the clean mAP averages.
        probability_mass: mean over usable views of the summed class probabilities (predicted labels per view).
        label_cardinality: mean labels per labelled clip, among the classes the teacher covers.
        calibration_correlation: Pearson correlation over covered classes of mean probability and label frequency.
        entropy_bits: mean over usable views of the targets' summed binary entropy (bits per view).
        covered: store classes the teacher has a logit for.
        in_top_k: classes in at least one view's stored top k.
        top1_classes: distinct classes ranked first in some view.
        labelled_missing: labelled classes (covered) never in this teacher's top k.
        mean_probability: per store class, over usable views (NaN where not covered).
        view_entropy: per usable view, bits.
    """

    name: str
    k: int
    usable_views: int
    failed_views: int
    clean_map: float | None
    augmented_map: float | None
    classes_scored: int
    probability_mass: float
    label_cardinality: float | None
    calibration_correlation: float | None
    entropy_bits: float
    covered: int
    in_top_k: int
    top1_classes: int
    labelled_missing: int
    mean_probability: np.ndarray = field(repr=False)
    view_entropy: np.ndarray = field(repr=False)


@dataclass
class PairAgreement:
    """How much two teachers agree, over the views usable for both.

    Attributes:
        top5_overlap: mean fraction of one teacher's top 5 classes in the other's.
        rank_correlation: mean Spearman correlation of the two probability vectors over the classes both cover
            (ties, such as the rest fill, share their mean rank).
    """

    first: str
    second: str
    views: int
    top5_overlap: float
    rank_correlation: float


@dataclass
class StoreReport:
    """The whole report; `label_frequency` is per store class, over labelled clips."""

    store: str
    clips: int
    views: int
    labelled_clips: int
    teachers: list[TeacherQuality]
    pairs: list[PairAgreement]
    label_frequency: np.ndarray = field(repr=False)


def view_labels(store: LogitStore, clip_targets: np.ndarray) -> np.ndarray:
    """Ground truth per view [clips, views, classes]: the clip's labels, plus its mixup partner's where mixed."""
    seeds = store.seeds()
    out = np.repeat(clip_targets[:, None, :], store.num_views, axis=1)
    for clip in range(store.num_clips):
        for view in range(store.num_views):
            partner = draw_view(store.policy, int(seeds[clip, view]), clip, store.num_clips, view).partner
            if partner >= 0:
                out[clip, view] |= clip_targets[partner]
    return out


def _map(targets: np.ndarray, scores: np.ndarray, rows: np.ndarray) -> tuple[float | None, int]:
    if not rows.any() or not targets[rows].any():
        return None, 0
    metrics = tagging_metrics(targets[rows], scores[rows])
    return (None if math.isnan(metrics.mAP) else metrics.mAP), metrics.classes_scored


def binary_entropy_bits(probs: torch.Tensor) -> torch.Tensor:
    """Summed binary entropy over the last axis, in bits (NaN entries, uncovered classes, count as zero)."""
    p = probs.double().clamp(1e-12, 1 - 1e-12)
    h = -(p * torch.log2(p) + (1 - p) * torch.log2(1 - p))
    return torch.nan_to_num(h, nan=0.0).sum(-1)


def mid_ranks(rows: np.ndarray) -> np.ndarray:
    """Ranks along the last axis, tied values sharing the mean of their ranks (as Spearman's rho needs)."""
    out = np.empty(rows.shape, dtype=np.float64)
    for i, row in enumerate(rows):
        ordered = np.sort(row)
        out[i] = (np.searchsorted(ordered, row, "left") + np.searchsorted(ordered, row, "right") + 1) / 2
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of `a` with the same row of `b` (NaN where a row is constant)."""
    ra, rb = mid_ranks(a), mid_ranks(b)
    ra -= ra.mean(-1, keepdims=True)
    rb -= rb.mean(-1, keepdims=True)
    denominator = np.sqrt((ra * ra).sum(-1) * (rb * rb).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ra * rb).sum(-1) / denominator


def store_report(path: str) -> StoreReport:
    """Builds the report of the store at `path` (every teacher, every pair)."""
    store = LogitStore(path)
    n, v = store.num_clips, store.num_views
    clip_labels = store.clip_labels()
    labelled = np.array([bool(x) for x in clip_labels])
    clip_targets = resolve_labels(clip_labels, store.labels).targets
    targets = view_labels(store, clip_targets)
    frequency = clip_targets[labelled].mean(0) if labelled.any() else np.zeros(len(store.labels))
    clean = np.zeros(v, dtype=bool)
    clean[0] = store.policy.clean_first_view
    probs, usable, tops = {}, {}, {}
    teachers = []
    for name in store.teacher_names():
        group = store.teacher(name)
        arrays = group.load()
        covered = arrays["covered"]
        done = np.repeat(group.done_blocks(), store.block_size)[:n]
        ok = ~arrays["failed"] & done[:, None]
        p = torch.sigmoid(expand_topk(arrays["logits"], arrays["indices"], arrays["rest"], covered)).numpy()
        p[~ok] = np.nan
        probs[name], usable[name], tops[name] = p, ok, arrays["indices"]
        scores = p[..., covered]
        truth = targets[..., covered]
        rows = ok & labelled[:, None]
        clean_map, scored = _map(
            truth[:, clean].reshape(-1, covered.sum()),
            scores[:, clean].reshape(-1, covered.sum()),
            rows[:, clean].reshape(-1),
        )
        augmented_map, _ = _map(
            truth[:, ~clean].reshape(-1, covered.sum()),
            scores[:, ~clean].reshape(-1, covered.sum()),
            rows[:, ~clean].reshape(-1),
        )
        entropy = binary_entropy_bits(torch.from_numpy(scores[ok])).numpy()
        mean_p = np.full(len(store.labels), np.nan)
        if ok.any():
            mean_p[covered] = scores[ok].mean(0)
        cardinality, correlation = None, None
        if labelled.any():
            cardinality = float(clip_targets[labelled][:, covered].sum(1).mean())
            f, m = frequency[covered], mean_p[covered]
            if ok.any() and f.std() > 0 and m.std() > 0:
                correlation = float(np.corrcoef(f, m)[0, 1])
        indices = arrays["indices"][ok]
        seen = np.unique(indices[indices >= 0])
        labelled_classes = np.flatnonzero(clip_targets.any(0) & covered)
        teachers.append(
            TeacherQuality(
                name=name,
                k=group.k,
                usable_views=int(ok.sum()),
                failed_views=int(arrays["failed"].sum()),
                clean_map=clean_map,
                augmented_map=augmented_map,
                classes_scored=scored,
                probability_mass=float(np.nansum(scores[ok], axis=-1).mean()) if ok.any() else float("nan"),
                label_cardinality=cardinality,
                calibration_correlation=correlation,
                entropy_bits=float(entropy.mean()) if len(entropy) else float("nan"),
                covered=int(covered.sum()),
                in_top_k=len(seen),
                top1_classes=len(np.unique(indices[:, 0])) if len(indices) else 0,
                labelled_missing=len(np.setdiff1d(labelled_classes, seen)),
                mean_probability=mean_p,
                view_entropy=entropy,
            )
        )
    pairs = [_agreement(a, b, probs, usable, tops) for a, b in combinations(store.teacher_names(), 2)]
    return StoreReport(path, n, v, int(labelled.sum()), teachers, pairs, frequency)


def _agreement(a: str, b: str, probs: dict, usable: dict, tops: dict) -> PairAgreement:
    both = usable[a] & usable[b]
    top = min(TOP, tops[a].shape[-1], tops[b].shape[-1])
    ta, tb = tops[a][both][:, :top], tops[b][both][:, :top]
    overlap = (ta[:, :, None] == tb[:, None, :]).any(-1).mean(-1)
    shared = ~np.isnan(probs[a][both][0]) & ~np.isnan(probs[b][both][0]) if both.any() else None
    rho = float("nan")
    if shared is not None and shared.sum() > 1:
        pa, pb = probs[a][both][:, shared], probs[b][both][:, shared]
        pick = np.linspace(0, len(pa) - 1, min(len(pa), MAX_RANK_VIEWS)).round().astype(int)
        rho = float(np.nanmean(spearman(pa[pick], pb[pick])))
    mean_overlap = float(overlap.mean()) if len(overlap) else float("nan")
    return PairAgreement(a, b, int(both.sum()), mean_overlap, rho)


# -- rendering -----------------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


TEACHER_COLUMNS = (
    "teacher",
    "k",
    "usable views",
    "failed",
    "clean mAP",
    "augmented mAP",
    "classes scored",
    "prob. mass / view",
    "labels / clip",
    "calibration r",
    "entropy (bits)",
    "covered",
    "in top-k",
    "top-1 classes",
    "labelled never in top-k",
)


def teacher_cells(t: TeacherQuality) -> list[str]:
    return [
        t.name,
        str(t.k),
        str(t.usable_views),
        str(t.failed_views),
        _fmt(t.clean_map),
        _fmt(t.augmented_map),
        str(t.classes_scored),
        _fmt(t.probability_mass, 2),
        _fmt(t.label_cardinality, 2),
        _fmt(t.calibration_correlation, 2),
        _fmt(t.entropy_bits, 2),
        str(t.covered),
        str(t.in_top_k),
        str(t.top1_classes),
        str(t.labelled_missing),
    ]


PAIR_COLUMNS = ("teacher", "teacher", "views", "top-5 overlap", "rank correlation")


def pair_cells(p: PairAgreement) -> list[str]:
    return [p.first, p.second, str(p.views), _fmt(p.top5_overlap), _fmt(p.rank_correlation)]


def report_markdown(report: StoreReport) -> str:
    """The report as markdown tables (for docs, issues and notebooks)."""

    def table(columns: tuple[str, ...], rows: list[list[str]]) -> list[str]:
        return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)] + [
            "| " + " | ".join(r) + " |" for r in rows
        ]

    lines = [
        f"# Store report: {report.store}",
        "",
        f"{report.clips} clips x {report.views} views, {report.labelled_clips} clips labelled.",
        "",
        *table(TEACHER_COLUMNS, [teacher_cells(t) for t in report.teachers]),
    ]
    if report.pairs:
        lines += ["", *table(PAIR_COLUMNS, [pair_cells(p) for p in report.pairs])]
    return "\n".join(lines) + "\n"


def plot_report(report: StoreReport, path: str | Path) -> Path:
    """A PNG: label mAP per teacher, pairwise top-5 overlap, calibration per class, target entropy per view."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [t.name for t in report.teachers]
    fig, axes = plt.subplots(2, 2, figsize=(13, 10))
    ax = axes[0, 0]
    x = np.arange(len(names))
    for offset, label, values in (
        (-0.2, "clean view", [t.clean_map for t in report.teachers]),
        (0.2, "augmented views", [t.augmented_map for t in report.teachers]),
    ):
        ax.bar(x + offset, [np.nan if v is None else v for v in values], width=0.4, label=label)
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("label mAP (stored top-k)")
    ax.set_title("label mAP against the manifest's labels")
    ax.legend()
    ax = axes[0, 1]
    overlap = np.eye(len(names))
    for p in report.pairs:
        i, j = names.index(p.first), names.index(p.second)
        overlap[i, j] = overlap[j, i] = p.top5_overlap
    image = ax.imshow(overlap, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    ax.set_yticks(x, names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{overlap[i, j]:.2f}", ha="center", va="center", color="w", fontsize=8)
    fig.colorbar(image, ax=ax)
    ax.set_title("top-5 overlap between teachers")
    ax = axes[1, 0]
    for t in report.teachers:
        keep = ~np.isnan(t.mean_probability) & (report.label_frequency > 0)
        ax.scatter(report.label_frequency[keep], t.mean_probability[keep], s=12, alpha=0.7, label=t.name)
    ax.plot([1e-3, 1], [1e-3, 1], color="grey", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("label frequency (labelled clips)")
    ax.set_ylabel("mean probability (all usable views)")
    ax.set_title("calibration per labelled class")
    if report.teachers:
        ax.legend(fontsize=8)
    ax = axes[1, 1]
    for t in report.teachers:
        if len(t.view_entropy):
            ax.hist(t.view_entropy, bins=30, alpha=0.5, label=t.name)
    ax.set_xlabel("target entropy per view (bits, summed over classes)")
    ax.set_ylabel("views")
    ax.set_title("entropy of the soft targets")
    if report.teachers:
        ax.legend(fontsize=8)
    fig.suptitle(f"{report.store}: {report.clips} clips x {report.views} views")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
