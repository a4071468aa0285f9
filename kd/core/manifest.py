"""Manifests: the list of clips (path, optional segment and labels) a dump or an evaluation runs over."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from kd.core.errors import ManifestError
from kd.core.labels import LabelSpace

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".opus")
MAX_LISTED = 10


@dataclass(frozen=True)
class Clip:
    """One clip: a file, optionally a [start, end) segment of it in seconds, and its labels (as given)."""

    id: str
    path: str
    start: float | None = None
    end: float | None = None
    labels: tuple[str, ...] = ()


@dataclass
class Manifest:
    """Clips in a fixed order; `root` is the directory relative paths were resolved against."""

    clips: list[Clip]
    root: Path
    source: str = ""
    label_counts: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.clips)

    def to_records(self) -> list[dict]:
        """Rows with paths relative to `root` where possible (what a store records)."""
        return [_record(clip, self.root) for clip in self.clips]


def load_manifest(source: str | os.PathLike, labels: LabelSpace | None = None, check_files: bool = True) -> Manifest:
    """Loads a CSV/TSV/JSONL manifest, or scans a directory for audio files.

    Every problem (missing files, duplicate ids, unknown labels, bad segments, bad rows) is collected and raised
    together as one ManifestError, so a user fixes a manifest in one pass.

    Args:
        source: a manifest file, or a directory scanned recursively.
        labels: when given, every label must be a display name or mid of this space; labels are kept as given.
        check_files: check that every referenced file exists.
    """
    source = Path(source)
    if source.is_dir():
        rows = [{"path": str(p.relative_to(source))} for p in _scan_audio(source)]
        root = source.resolve()
        if not rows:
            raise ManifestError(f"{source}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found under this directory")
    elif source.is_file():
        rows = _read_rows(source)
        # Relative paths start in the folder the manifest path names, with symlinks followed (whatever the cwd).
        root = source.absolute().parent.resolve()
    else:
        raise ManifestError(f"{source}: manifest not found (give a CSV, TSV or JSONL file, or a directory of audio)")
    problems: dict[str, list[str]] = {}
    clips: list[Clip] = []
    for line, row in enumerate(rows, start=2 if source.suffix.lower() in (".csv", ".tsv") else 1):
        clip = _parse_row(row, line, root, problems)
        if clip is not None:
            clips.append(clip)
    ids = Counter(clip.id for clip in clips)
    for clip_id, count in ids.items():
        if count > 1:
            problems.setdefault("duplicate ids", []).append(f"{clip_id} (x{count})")
    counts: Counter = Counter()
    for clip in clips:
        if check_files and not Path(clip.path).is_file():
            problems.setdefault("missing files", []).append(clip.path)
        for label in clip.labels:
            if labels is not None and label not in labels:
                problems.setdefault("unknown labels", []).append(f"{label!r} ({clip.id})")
            counts[label] += 1
    if problems:
        raise ManifestError(f"{source}: " + "; ".join(_summarise(kind, items) for kind, items in problems.items()))
    return Manifest(clips=clips, root=root, source=str(source), label_counts=counts)


def write_manifest(manifest: Manifest, path: str | os.PathLike) -> Path:
    """Writes `manifest` as CSV or JSONL (by suffix) with paths relative to the written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [_record(clip, path.parent.resolve()) for clip in manifest.clips]
    if path.suffix.lower() == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        return path
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "path", "start", "end", "labels"], delimiter=delimiter)
        writer.writeheader()
        for r in records:
            writer.writerow({**r, "labels": ";".join(r["labels"]), "start": r["start"] or "", "end": r["end"] or ""})
    return path


def _read_rows(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    try:
        # utf-8-sig: a byte-order mark (Excel's CSV) is not part of the first column's name.
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: cannot read manifest ({e})") from None
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise ManifestError(f"{path}:{n}: not a JSON object ({e})") from None
        return rows
    if suffix not in (".csv", ".tsv"):
        raise ManifestError(f"{path}: unknown manifest type {suffix!r}; use .csv, .tsv or .jsonl, or a directory")
    # Not splitlines(): a quoted field may hold a newline (a file name with one, as write_manifest writes it).
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
    if reader.fieldnames is None or "path" not in reader.fieldnames:
        raise ManifestError(f"{path}: manifest needs a 'path' column (found {reader.fieldnames})")
    return list(reader)


def _parse_row(row: dict, line: int, root: Path, problems: dict[str, list[str]]) -> Clip | None:
    if not isinstance(row, dict) or not row.get("path"):
        problems.setdefault("rows without a path", []).append(f"line {line}")
        return None
    rel = str(row["path"]).strip()
    try:
        start = _seconds(row.get("start"))
        end = _seconds(row.get("end"))
    except ValueError:
        problems.setdefault("bad segments", []).append(
            f"line {line}: start={row.get('start')!r} end={row.get('end')!r}"
        )
        return None
    if (
        any(t is not None and not math.isfinite(t) for t in (start, end))
        or (start is not None and start < 0)
        or (end is not None and end <= (start or 0.0))
    ):
        problems.setdefault("bad segments", []).append(f"line {line}: [{start}, {end})")
        return None
    labels = row.get("labels") or ()
    if isinstance(labels, str):
        labels = [label.strip() for label in labels.split(";")]
    # realpath: symlinks are followed before '..' applies, as the file system itself does.
    path = Path(os.path.realpath(Path(rel) if Path(rel).is_absolute() else root / rel))
    clip_id = str(row.get("id") or "").strip() or _default_id(rel, start, end)
    return Clip(id=clip_id, path=str(path), start=start, end=end, labels=tuple(lb for lb in labels if lb))


def _default_id(rel: str, start: float | None, end: float | None) -> str:
    # The relative path (POSIX form) is the same on every machine and run; a segment suffix keeps segments apart.
    clip_id = Path(rel).as_posix()
    if start is not None or end is not None:
        clip_id += f"@{start or 0:g}-{'' if end is None else f'{end:g}'}"
    return clip_id


def _seconds(value: object) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return float(value)


def _scan_audio(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def _record(clip: Clip, root: Path) -> dict:
    path = Path(clip.path).resolve()
    try:
        rel = path.relative_to(root.resolve()).as_posix()
    except ValueError:
        rel = str(path)  # outside the root: absolute, never relative to the current directory
    return {"id": clip.id, "path": rel, "start": clip.start, "end": clip.end, "labels": list(clip.labels)}


def _summarise(kind: str, items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    more = f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return f"{len(items)} {kind}: {shown}{more}"


@dataclass(frozen=True)
class ManifestSummary:
    """Totals for display; durations are None when not read."""

    labelled: int
    hours: float | None
    shortest: float | None
    longest: float | None


def clip_duration(clip: Clip) -> float:
    """The clip's duration in seconds (its segment's, if it has one), from the file header."""
    from kd.core.audio import audio_info

    total = audio_info(clip.path).duration
    start = clip.start or 0.0
    end = total if clip.end is None else min(clip.end, total)
    if end <= start:
        raise ManifestError(f"{clip.path}: segment [{clip.start}, {clip.end}) lies outside the file ({total:.3f} s)")
    return end - start


def summarise_manifest(manifest: Manifest, durations: bool = True) -> ManifestSummary:
    """Counts labelled clips and, when `durations`, reads every header (collecting all undecodable files)."""
    from kd.core.errors import AudioError
    from kd.core.progress import track

    labelled = sum(1 for clip in manifest.clips if clip.labels)
    if not durations or not manifest.clips:
        return ManifestSummary(labelled, None, None, None)
    seconds, bad = [], []
    for clip in track(manifest.clips, "reading headers"):
        try:
            seconds.append(clip_duration(clip))
        except (AudioError, ManifestError) as e:
            bad.append(str(e))
    if bad:
        raise ManifestError(_summarise("unreadable clips", bad))
    return ManifestSummary(labelled, sum(seconds) / 3600, min(seconds), max(seconds))
