"""Audio Needle-In-A-Haystack (Bhati et al. 2024, "DASS: Distilled Audio State Space Models Are Stronger and More
Duration-Scalable Learners", arXiv 2407.04082): how well a tagger finds a short labelled sound inside a long input.

Each needle (a labelled clip, cut to `needle_seconds`) is placed at each relative position p of a haystack of each
duration D: it starts at p * (D - needle length). Haystacks are silence, white noise (added over the whole input,
needle included, at `snr_db` relative to the needle's RMS), or real background audio from a manifest (clips
concatenated and looped; the needle replaces the background over its span). The model sees the whole input in one
forward pass (and optionally 10 s windows, max-pooled); the score is the mAP over the needles' classes, the
ground truth of each input being its needle's labels.

Every duration runs in a fresh subprocess (unless `isolate=False`), so its peak resident memory (VmHWM of
/proc/self/status) is that duration's alone and an out-of-memory kill or a timeout is recorded while the sweep goes on.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from kd.core.errors import ConfigError

HAYSTACKS = ("silence", "noise")
WINDOW_SECONDS = 10.0


@dataclass(frozen=True)
class NiahConfig:
    """One Audio NIAH sweep.

    Attributes:
        model: student checkpoint or teacher name (see `kd.use.models.load_tagger`).
        needles: labelled manifest of needle clips.
        checkpoint: teacher weights, if any.
        device: torch device.
        durations: haystack durations in seconds.
        positions: relative needle positions in [0, 1].
        haystack: 'silence', 'noise', or the path of a manifest of background audio.
        snr_db: needle-to-noise ratio for 'noise'.
        needle_seconds: needles longer than this are cut to their first `needle_seconds`.
        max_needles: use only the first N labelled needles (None: all).
        windowed: also score by `WINDOW_SECONDS` windows, max-pooled over the input.
        max_seconds: durations above this are skipped (recorded as such).
        memory_limit_gb: address-space limit added on top of the loaded model, per duration (CPU, isolated runs).
        timeout_s: wall-clock limit per duration (isolated runs).
        seed: seed of noise and background order.
        isolate: run each duration in a fresh subprocess (true peak memory, survives OOM kills).
    """

    model: str
    needles: str
    checkpoint: str | None = None
    device: str = "cpu"
    durations: list[float] = field(default_factory=lambda: [10.0, 60.0, 600.0, 3600.0])
    positions: list[float] = field(default_factory=lambda: [0.1, 0.5, 0.9])
    haystack: str = "silence"
    snr_db: float = 0.0
    needle_seconds: float = 10.0
    max_needles: int | None = None
    windowed: bool = False
    max_seconds: float | None = None
    memory_limit_gb: float | None = None
    timeout_s: float | None = None
    seed: int = 0
    isolate: bool = True

    def __post_init__(self) -> None:
        if not self.durations or not all(math.isfinite(d) and d > 0 for d in self.durations):
            raise ConfigError(f"--durations {self.durations}: need one or more finite, positive seconds")
        if not self.positions or any(not 0.0 <= p <= 1.0 for p in self.positions):
            raise ConfigError(f"--positions {self.positions}: every position must lie in [0, 1]")
        if self.haystack not in HAYSTACKS and not Path(self.haystack).is_file():
            raise ConfigError(f"--haystack {self.haystack!r}: use silence, noise, or the path of a background manifest")
        if not (math.isfinite(self.needle_seconds) and self.needle_seconds > 0):
            raise ConfigError(f"--needle-seconds {self.needle_seconds}: must be finite and positive")
        if not math.isfinite(self.snr_db):
            raise ConfigError(f"--snr {self.snr_db}: must be a finite number of dB")
        for flag, value in (
            ("--max-seconds", self.max_seconds),
            ("--memory-limit-gb", self.memory_limit_gb),
            ("--timeout", self.timeout_s),
        ):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{flag} {value}: must be finite and positive")
        if self.max_needles is not None and self.max_needles < 1:
            raise ConfigError(f"--max-needles {self.max_needles}: must be at least 1")


@dataclass
class NiahRow:
    """The outcome at one duration.

    Attributes:
        duration: haystack seconds.
        status: 'ok', 'skipped: ...', 'out of memory: ...', 'timeout after N s' or 'failed: ...'.
        mAP: one-pass mAP over the needles' classes (None unless ok).
        windowed_mAP: windowed mAP when asked.
        position_mAP: one-pass mAP per position.
        inputs: haystacks scored (needles x positions).
        seconds_per_input: mean wall seconds of one forward pass over one haystack.
        peak_rss_gb: peak resident memory of the process that ran this duration.
        model_rss_gb: resident memory once the model was loaded, before any haystack.
        cuda_peak_gb: peak CUDA memory allocated, on CUDA devices.
    """

    duration: float
    status: str = "ok"
    mAP: float | None = None  # noqa: N815
    windowed_mAP: float | None = None  # noqa: N815
    position_mAP: dict[str, float] = field(default_factory=dict)  # noqa: N815
    inputs: int = 0
    seconds_per_input: float | None = None
    peak_rss_gb: float | None = None
    model_rss_gb: float | None = None
    cuda_peak_gb: float | None = None


@dataclass
class NiahReport:
    """A sweep: its config, the needles used, labels the model lacks, and one row per duration."""

    config: NiahConfig
    needles: int
    rows: list[NiahRow]
    unresolved: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "config": asdict(self.config),
            "needles": self.needles,
            "unresolved_labels": self.unresolved,
            "rows": [asdict(r) for r in self.rows],
        }


def run_niah(config: NiahConfig, out: str | os.PathLike | None = None) -> NiahReport:
    """Runs the sweep duration by duration and writes `niah.json` into `out` (when given) after each one."""
    needles = _needle_clips(config)
    rows = []
    report = NiahReport(config, len(needles), rows, _unresolved(config, needles))
    for duration in config.durations:
        if config.max_seconds is not None and duration > config.max_seconds:
            rows.append(NiahRow(duration, status=f"skipped: longer than --max-seconds {config.max_seconds:g}"))
        elif config.isolate:
            rows.append(_run_isolated(config, duration))
        else:
            rows.append(run_duration(config, duration))
        if out is not None:
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / "niah.json").write_text(json.dumps(report.to_json(), indent=1), encoding="utf-8")
    return report


def run_duration(config: NiahConfig, duration: float) -> NiahRow:
    """Scores every needle at every position in a haystack of `duration` seconds, in this process."""
    from kd.use.models import load_tagger

    row = NiahRow(duration)
    tagger = load_tagger(config.model, config.checkpoint, config.device)
    row.model_rss_gb = _proc_status_gb("VmRSS")
    if config.memory_limit_gb is not None and config.isolate and tagger.device.type == "cpu":
        import resource

        tagger(torch.zeros(1, tagger.sample_rate))  # start the thread pools first: their stacks count against the limit

        limit = int(_proc_status_gb("VmSize") * 2**30 + config.memory_limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if tagger.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(tagger.device)
    try:
        _score(config, tagger, duration, row)
    except (RuntimeError, MemoryError) as e:
        if not _is_out_of_memory(e):
            raise
        row.status = f"out of memory: {str(e).splitlines()[0][:160]}"
    row.peak_rss_gb = _proc_status_gb("VmHWM")
    if tagger.device.type == "cuda":
        row.cuda_peak_gb = torch.cuda.max_memory_allocated(tagger.device) / 2**30
    return row


def _score(config: NiahConfig, tagger: object, duration: float, row: NiahRow) -> None:
    from kd.core.audio import load_audio
    from kd.core.labels import resolve_labels
    from kd.core.metrics import tagging_metrics

    rate = tagger.sample_rate
    total = int(round(duration * rate))
    clips = _needle_clips(config)
    rng = np.random.default_rng(config.seed)
    background = _background(config, total, rate, rng)
    probs, windowed, labels, where, seconds = [], [], [], [], 0.0
    for clip in clips:
        needle = load_audio(clip.path, rate, clip.start, clip.end)[: int(config.needle_seconds * rate)][:total]
        for position in config.positions:
            wave = insert_needle(background, needle, position, config)
            began = time.perf_counter()
            probs.append(torch.sigmoid(tagger(wave[None]))[0].numpy())
            seconds += time.perf_counter() - began
            if config.windowed:
                windowed.append(_windowed_probs(tagger, wave))
            del wave
            labels.append(clip.labels)
            where.append(position)
    targets = resolve_labels(labels, tagger.labels).targets
    scores = np.stack(probs)
    row.inputs = len(probs)
    row.seconds_per_input = seconds / len(probs)
    row.mAP = _nan_to_none(tagging_metrics(targets, scores).mAP)
    where = np.array(where)
    for position in config.positions:
        pick = where == position
        row.position_mAP[f"{position:g}"] = _nan_to_none(tagging_metrics(targets[pick], scores[pick]).mAP)
    if config.windowed:
        row.windowed_mAP = _nan_to_none(tagging_metrics(targets, np.stack(windowed)).mAP)


def insert_needle(
    background: torch.Tensor | None, needle: torch.Tensor, position: float, config: NiahConfig
) -> torch.Tensor:
    """A new haystack with `needle` starting at `position` * (haystack length - needle length).

    `background` is the haystack without the needle: zeros for silence, unit-RMS noise (scaled here to the
    needle's RMS and `config.snr_db`, and added everywhere), or real audio (the needle replaces it over its span).
    """
    total = len(background)
    start = int(round(position * (total - len(needle))))
    if config.haystack == "noise":
        rms = float(needle.pow(2).mean().sqrt().clamp_min(1e-8))
        wave = background * (rms / 10 ** (config.snr_db / 20))
        wave[start : start + len(needle)] += needle
        return wave
    wave = background.clone()
    wave[start : start + len(needle)] = needle
    return wave


def _background(config: NiahConfig, total: int, rate: int, rng: np.random.Generator) -> torch.Tensor:
    if config.haystack == "silence":
        return torch.zeros(total)
    if config.haystack == "noise":
        return torch.from_numpy(rng.standard_normal(total, dtype=np.float32))
    from kd.core.audio import load_audio
    from kd.core.manifest import load_manifest

    clips = load_manifest(config.haystack).clips
    if not clips:
        raise ConfigError(f"--haystack {config.haystack}: the background manifest has no clips")
    wave, filled = torch.empty(total), 0
    order = rng.permutation(len(clips))
    while filled < total:
        for i in order:
            piece = load_audio(clips[i].path, rate, clips[i].start, clips[i].end)[: total - filled]
            wave[filled : filled + len(piece)] = piece
            filled += len(piece)
            if filled == total:
                break
    return wave


def _windowed_probs(tagger: object, wave: torch.Tensor) -> np.ndarray:
    from kd.use.predict import window_spans

    rate = tagger.sample_rate
    best = None
    for start, end in window_spans(len(wave) / rate, WINDOW_SECONDS, WINDOW_SECONDS):
        piece = wave[int(round(start * rate)) : int(round(end * rate))]
        probs = torch.sigmoid(tagger(piece[None]))[0].numpy()
        best = probs if best is None else np.maximum(best, probs)
    return best


def _needle_clips(config: NiahConfig) -> list:
    from kd.core.manifest import load_manifest

    clips = [c for c in load_manifest(config.needles).clips if c.labels]
    if not clips:
        raise ConfigError(f"{config.needles}: no labelled clips to use as needles")
    return clips[: config.max_needles] if config.max_needles else clips


def _unresolved(config: NiahConfig, needles: list) -> dict[str, int]:
    from kd.core.labels import resolve_labels
    from kd.use.models import load_tagger

    labels = load_tagger(config.model, config.checkpoint, "cpu").labels
    return resolve_labels([c.labels for c in needles], labels).unresolved


def _is_out_of_memory(error: BaseException) -> bool:
    text = str(error).lower()
    return (
        isinstance(error, MemoryError)
        or "out of memory" in text
        or "can't allocate memory" in text
        or ("memory" in text and "alloc" in text)
    )


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _proc_status_gb(key: str) -> float | None:
    """A memory line of /proc/self/status (VmRSS, VmHWM, VmSize) in GiB; None where /proc is absent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        return None
    return None


def _run_isolated(config: NiahConfig, duration: float) -> NiahRow:
    with tempfile.TemporaryDirectory(prefix="kd-niah-") as tmp:
        config_path, result_path = Path(tmp) / "config.json", Path(tmp) / "row.json"
        config_path.write_text(json.dumps(asdict(config)), encoding="utf-8")
        command = [sys.executable, "-m", "kd.use.niah", str(config_path), repr(duration), str(result_path)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=config.timeout_s)
        except subprocess.TimeoutExpired:
            return NiahRow(duration, status=f"timeout after {config.timeout_s:g} s")
        if done.returncode == 0 and result_path.is_file():
            return NiahRow(**json.loads(result_path.read_text(encoding="utf-8")))
        if done.returncode < 0:
            signal = -done.returncode
            reason = "out of memory: killed by SIGKILL (likely the OOM killer)" if signal == 9 else f"signal {signal}"
            return NiahRow(duration, status=reason)
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return NiahRow(duration, status=f"failed: {last[:200]}")


def model_label(model: str) -> str:
    """A short legend name: a checkpoint as its run directory and file name, a teacher as its registry name."""
    path = Path(model)
    return f"{path.parent.name}/{path.name}" if path.suffix in (".pt", ".pth") and path.parent.name else model


def plot_niah(reports: NiahReport | list[NiahReport], path: str | os.PathLike) -> Path:
    """PNG of one or several models (e.g. a student against its teacher, as in the DASS paper's figure): needle mAP,
    seconds per input and peak memory against haystack duration (log scale); failed durations are marked in red."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("the NIAH plot needs matplotlib: pip install kd[plot]") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reports = [reports] if isinstance(reports, NiahReport) else reports
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (score, speed, memory) = plt.subplots(1, 3, figsize=(15, 4))
    for i, report in enumerate(reports):
        color, name = f"C{i}", model_label(report.config.model)
        ok = [r for r in report.rows if r.mAP is not None]
        durations = [r.duration for r in ok]
        score.plot(durations, _values(ok, "mAP"), marker="o", color=color, label=f"{name}, one pass")
        if report.config.windowed:
            score.plot(
                durations, _values(ok, "windowed_mAP"), marker="s", ls="--", color=color, label=f"{name}, 10 s windows"
            )
        speed.plot(durations, _values(ok, "seconds_per_input"), marker="o", color=color, label=name)
        memory.plot(durations, _values(ok, "peak_rss_gb"), marker="o", color=color, label=name)
        for r in report.rows:
            if r.mAP is None:
                score.plot([r.duration], [0.0], marker="x", color="red")
                score.annotate(r.status.split(":")[0], (r.duration, 0.02), fontsize="x-small", rotation=90)
    for ax, ylabel in ((score, "needle mAP"), (speed, "seconds per input"), (memory, "peak RSS (GB)")):
        ax.set_xscale("log")
        ax.set_xlabel("haystack duration (s)")
        ax.set_ylabel(ylabel)
        ax.legend(loc="best", fontsize="small")
    score.set_ylim(0, 1)
    speed.set_yscale("log")
    fig.suptitle(f"Audio NIAH ({reports[0].config.haystack} haystack, {reports[0].needles} needles)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _values(rows: list[NiahRow], name: str) -> list[float]:
    # A missing figure (no /proc here, say) is a gap in the line, not a crash.
    return [math.nan if getattr(r, name) is None else getattr(r, name) for r in rows]


def compare_niah(configs: list[NiahConfig], out: str | os.PathLike | None = None) -> list[NiahReport]:
    """Runs the same sweep for several models; writes `niah.json` ({"models": [report, ...]}) after each model."""
    reports = []
    for config in configs:
        reports.append(run_niah(config))
        if out is not None:
            Path(out).mkdir(parents=True, exist_ok=True)
            data = {"models": [r.to_json() for r in reports]}
            (Path(out) / "niah.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    return reports


def _worker(config_path: str, duration: str, result_path: str) -> None:
    """Subprocess entry: runs one duration and writes its row as JSON."""
    config = NiahConfig(**json.loads(Path(config_path).read_text(encoding="utf-8")))
    row = run_duration(config, float(duration))
    Path(result_path).write_text(json.dumps(asdict(row)), encoding="utf-8")


if __name__ == "__main__":
    _worker(*sys.argv[1:4])
