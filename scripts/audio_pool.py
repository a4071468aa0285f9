"""Builds an unlabelled pool of recorded sound effects from pinned Debian bookworm packages, as a kd manifest.

The pool is for label-free distillation (teachers label it, the student learns from their logits), so it wants
environmental sounds: animals, weather, water, footsteps, doors, tools, vehicles. Each package below is pinned to an
exact version and .deb sha256, and keeps only its sound-effect folders (music, voice acting, UI beeps are left out).

    /work/main/.venv/bin/python scripts/audio_pool.py --dest /work/pool

Writes DEST/<package>/... (the kept audio), DEST/manifest.csv (path, labels, source, licence) and DEST/pool.json.
A package already extracted (DEST/<package>/.done names its version and sha256) is skipped on rerun.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

AUDIO_SUFFIXES = (".wav", ".ogg", ".oga", ".flac", ".mp3", ".opus")
MIN_SECONDS = 0.5
DONE = ".done"


@dataclass(frozen=True)
class PoolPackage:
    """One pinned package and which of its audio files are sound effects.

    Args:
        name: Debian package name.
        version: exact bookworm version (`apt-get download name=version`).
        sha256: of the .deb, checked after download so a changed mirror is noticed.
        licence: of the kept sounds (summary of usr/share/doc/<name>/copyright).
        include: regexes; a path (inside the package, or inside an archive member) is kept if one matches.
        exclude: regexes; a path matching one is dropped even when included.
        archives: regexes naming zip/pk3 files inside the package whose members are filtered the same way.
    """

    name: str
    version: str
    sha256: str
    licence: str
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    archives: tuple[str, ...] = ()

    def keeps(self, path: str) -> bool:
        """Whether an audio file at `path` (POSIX, no leading './') belongs in the pool."""
        if not path.lower().endswith(AUDIO_SUFFIXES):
            return False
        return any(re.search(p, path) for p in self.include) and not any(re.search(p, path) for p in self.exclude)

    def is_archive(self, path: str) -> bool:
        return any(re.search(p, path) for p in self.archives)


PACKAGES: tuple[PoolPackage, ...] = (
    PoolPackage(
        "0ad-data",
        "0.0.26-1",
        "53745ae74d05bccf6783400fa98f3932b21729ab9d2e86151aa2c331c3455178",
        "CC-BY-SA-3.0",
        include=(r"^audio/(actor|ambient|attack|resource)/",),
        exclude=(r"^audio/(music|voice|interface)/",),
        archives=(r"mods/public/public\.zip$",),
    ),
    PoolPackage(
        "ufoai-sound",
        "2.5-2",
        "0224308c10e1265581d1829f19eaef031175390fd0eafeb4a1d558ac6561ed4e",
        "GPL-2+ (mixed; see copyright)",
        include=(r"^sound/",),
        exclude=(r"^sound/(ui|geoscape|seq)/",),
        archives=(r"base/0snd\.pk3$",),
    ),
    PoolPackage(
        "tuxpaint-stamps-default",
        "2022.06.04-1",
        "6db6c1bfc870a47f1499d6203b083522eacb57c5f9c87d468f2e92eb6d9d5f34",
        "GPL-2",
        # The stamps' own sounds; *_desc*.ogg are spoken descriptions, symbols/ are spoken letters and numbers.
        include=(r"^usr/share/tuxpaint/stamps/",),
        exclude=(r"_desc", r"/stamps/symbols/", r"/stamps/hobbies/music/"),
    ),
    PoolPackage(
        "scratch",
        "1.4.0.6~dfsg1-6.1",
        "36c582eb93110f64f06c4e685c41e933ccba2fa68db12f79b10bfe840b21fc10",
        "CC-BY-SA-3.0",
        include=(r"/Media/Sounds/(Animal|Effects|Human)/",),
    ),
    PoolPackage(
        "minetest-data",
        "5.6.1+dfsg+~1.9.0mt8+dfsg-2",
        "91371dd2bd51cfcd4fa60c138667989a47047dfe1a47f7523b9ad1782d397585",
        "CC-BY-SA-3.0 / CC-BY-3.0 / CC0 (mixed; see copyright)",
        include=(r"/games/minetest_game/mods/[^/]+/sounds/",),
    ),
    PoolPackage(
        "minetest-mod-homedecor",
        "20210327.1-2",
        "555d078c37e2a26a66aea20affa8031ea7ff05e9def7c2f9eb60cd422feb9f6c",
        "CC-BY-SA-4.0 / WTFPL (mixed; see copyright)",
        include=(r"/sounds/",),
    ),
    PoolPackage(
        "wesnoth-1.16-data",
        "1:1.16.9-1",
        "1012b964bd412a6770685e3324ae3b61e176caff7846192d1ee63d55cd621e26",
        "GPL-2+",
        # data/core/sounds: weapons, creatures, ambient; the top-level sounds/ folder is UI clicks.
        include=(r"/data/core/sounds/",),
    ),
    PoolPackage(
        "widelands-data",
        "2:1.1-3",
        "0e23d645b15bcfb9e3bcae0de9bc1bdfa75a6ecb36b2e449759d6eb0b4bbd8fb",
        "GPL-2+ / CC-BY-SA-3.0 (see copyright)",
        include=(r"/data/sound/",),
        exclude=(r"/data/music/", r"/data/sound/(message|ui|sound_test)"),
    ),
    PoolPackage(
        "lincity-ng-data",
        "2.9~git20150314-5",
        "8f5e85bd42879abdc7099b035d7a3d7468eceb6b93b52a12270c28f3f3c792f9",
        "GPL-2+",
        include=(r"/lincity-ng/sounds/",),
    ),
    PoolPackage(
        "lugaru-data",
        "1.2-6",
        "6a25e8d2d7c2d94b7873669d1f52137b2ba56e86ba5c2f08fefeacd65e526023",
        "CC-BY-SA-3.0",
        include=(r"/lugaru/Sounds/",),
        exclude=(r"/Console",),
    ),
    PoolPackage(
        "extremetuxracer-data",
        "0.8.2-1",
        "8ce6c82e6fb89549d284f43f6c4b0a9d82e6c0e5da753bee0ef419276a21470c",
        "GPL-2+",
        include=(r"/etr/sounds/",),
        exclude=(r"/pickup",),
    ),
)


@dataclass
class PackageResult:
    """What one package contributed: kept clips (relative to the pool root) and what was dropped."""

    name: str
    version: str
    licence: str
    deb_bytes: int = 0
    clips: list[tuple[str, float]] = field(default_factory=list)
    too_short: int = 0
    undecodable: int = 0

    def summary(self) -> dict:
        return {
            "version": self.version,
            "licence": self.licence,
            "clips": len(self.clips),
            "hours": round(sum(d for _, d in self.clips) / 3600, 3),
            "deb_mb": round(self.deb_bytes / 1e6, 1),
            "dropped_too_short": self.too_short,
            "dropped_undecodable": self.undecodable,
        }


def download_deb(package: PoolPackage, cache: Path) -> Path:
    """Fetches the pinned .deb into `cache` (unless already there with the right sha256) and checks its sha256."""
    cache.mkdir(parents=True, exist_ok=True)
    found = [p for p in cache.glob(f"{package.name}_*.deb") if _sha256(p) == package.sha256]
    if found:
        return found[0]
    subprocess.run(["apt-get", "download", f"{package.name}={package.version}"], cwd=cache, check=True)
    debs = sorted(cache.glob(f"{package.name}_*.deb"), key=lambda p: p.stat().st_mtime)
    if not debs:
        raise RuntimeError(f"apt-get download {package.name}={package.version} left no .deb in {cache}")
    deb = debs[-1]
    digest = _sha256(deb)
    if digest != package.sha256:
        raise RuntimeError(f"{deb}: sha256 {digest}, pinned {package.sha256}; the mirror's package changed")
    return deb


def deb_members(deb: Path) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    """Streams the data tarball of a .deb (via dpkg-deb) without unpacking all of it."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                if member.isfile():
                    yield tar, member
    finally:
        proc.stdout.close()
        if proc.wait() != 0:
            raise RuntimeError(f"dpkg-deb --fsys-tarfile {deb} failed")


def extract_package(package: PoolPackage, deb: Path, out: Path) -> list[Path]:
    """Writes the kept audio of `deb` under `out` (same relative paths) and returns the written files."""
    written: list[Path] = []
    for tar, member in deb_members(deb):
        path = member.name.removeprefix("./")
        if package.is_archive(path):
            with tempfile.NamedTemporaryFile(suffix=".zip", dir=out.parent) as tmp:
                shutil.copyfileobj(tar.extractfile(member), tmp)
                tmp.flush()
                written += _extract_archive(package, Path(tmp.name), out)
        elif package.keeps(path):
            written.append(_write(out / path, tar.extractfile(member)))
    return written


def _extract_archive(package: PoolPackage, archive: Path, out: Path) -> list[Path]:
    written = []
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            if not info.is_dir() and package.keeps(info.filename):
                with z.open(info) as src:
                    written.append(_write(out / info.filename, src))
    return written


def _write(target: Path, src) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as f:
        shutil.copyfileobj(src, f)
    return target


def probe_clips(package: PoolPackage, root: Path, pkg_dir: Path, min_seconds: float = MIN_SECONDS) -> PackageResult:
    """Decodes every audio file under `pkg_dir` whole, as kd does, and keeps those that last `min_seconds`.

    A header is not enough: some mp3s promise more frames than they decode, and kd refuses such a file as truncated
    wherever a view's crop (or a mixup partner's) reaches the missing end."""
    from kd.core.audio import audio_info, load_audio
    from kd.core.errors import AudioError

    result = PackageResult(package.name, package.version, package.licence)
    for path in sorted(p for p in pkg_dir.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES):
        try:
            info = audio_info(path)
            load_audio(path)
        except AudioError:
            result.undecodable += 1
            continue
        seconds = info.frames / info.sample_rate
        if seconds < min_seconds:
            result.too_short += 1
            continue
        result.clips.append((path.relative_to(root).as_posix(), seconds))
    return result


def even_subset(results: Iterable[PackageResult], max_clips: int | None, seed: int = 0) -> list[tuple[str, str, str]]:
    """(path, package, licence) rows: all clips, or `max_clips` shared as evenly as possible between packages.

    Each package's clips are shuffled by `seed` and dealt round-robin, so a package with few clips gives all it has and
    the rest go to the others; the result is sorted by path and the same for the same seed and pool.
    """
    queues = []
    for result in results:
        rows = [(path, result.name, result.licence) for path, _ in sorted(result.clips)]
        random.Random(f"{seed}:{result.name}").shuffle(rows)
        queues.append(rows)
    if max_clips is None:
        return sorted(row for rows in queues for row in rows)
    chosen: list[tuple[str, str, str]] = []
    depth = 0
    while len(chosen) < max_clips and any(depth < len(rows) for rows in queues):
        for rows in queues:
            if depth < len(rows) and len(chosen) < max_clips:
                chosen.append(rows[depth])
        depth += 1
    return sorted(chosen)


def write_pool_manifest(rows: list[tuple[str, str, str]], path: Path) -> Path:
    """Writes a kd manifest: path (relative to the manifest's folder), empty labels, source package, licence."""
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "labels", "source", "licence"])
        for rel, source, licence in rows:
            writer.writerow([rel, "", source, licence])
    os.replace(tmp, path)
    return path


def build_pool(
    dest: Path,
    packages: Iterable[PoolPackage] = PACKAGES,
    max_clips: int | None = None,
    seed: int = 0,
    keep_debs: bool = False,
) -> dict:
    """Downloads, extracts and probes each package (skipping finished ones), then writes manifest.csv and pool.json."""
    dest.mkdir(parents=True, exist_ok=True)
    cache = dest / ".debs"
    results = []
    started = time.monotonic()
    for package in packages:
        pkg_dir = dest / package.name
        marker = pkg_dir / DONE
        stamp = f"{package.version} {package.sha256}"
        if marker.is_file() and marker.read_text().split("\n")[0] == stamp:
            print(f"{package.name}: already extracted - skipping", flush=True)
            deb_bytes = int(marker.read_text().split("\n")[1])
        else:
            shutil.rmtree(pkg_dir, ignore_errors=True)  # a half-written package starts again
            deb = download_deb(package, cache)
            deb_bytes = deb.stat().st_size
            partial = dest / f".{package.name}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            written = extract_package(package, deb, partial)
            os.replace(partial, pkg_dir)
            marker.write_text(f"{stamp}\n{deb_bytes}\n")
            print(f"{package.name}: extracted {len(written)} audio files", flush=True)
            if not keep_debs:
                deb.unlink()
        result = probe_clips(package, dest, pkg_dir)
        result.deb_bytes = deb_bytes
        results.append(result)
    rows = even_subset(results, max_clips, seed)
    write_pool_manifest(rows, dest / "manifest.csv")
    chosen = {path for path, _, _ in rows}
    durations = {path: d for r in results for path, d in r.clips}
    summary = {
        "packages": {r.name: r.summary() for r in results},
        "manifest_clips": len(rows),
        "manifest_hours": round(sum(durations[p] for p in chosen) / 3600, 3),
        "max_clips": max_clips,
        "seed": seed,
        "min_seconds": MIN_SECONDS,
        "seconds_taken": round(time.monotonic() - started, 1),
    }
    (dest / "pool.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dest", type=Path, default=Path.home() / ".cache" / "kd" / "audio-pool")
    parser.add_argument(
        "--packages", nargs="+", metavar="NAME", help="a subset of: " + " ".join(p.name for p in PACKAGES)
    )
    parser.add_argument("--max-clips", type=int, help="keep this many clips in the manifest, shared evenly")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --max-clips subset")
    parser.add_argument("--keep-debs", action="store_true", help="keep the downloaded .debs in DEST/.debs")
    args = parser.parse_args(argv)
    by_name = {p.name: p for p in PACKAGES}
    unknown = sorted(set(args.packages or ()) - set(by_name))
    if unknown:
        parser.error(f"unknown packages {unknown}; choose from {sorted(by_name)}")
    packages = [by_name[n] for n in args.packages] if args.packages else list(PACKAGES)
    summary = build_pool(args.dest, packages, args.max_clips, args.seed, args.keep_debs)
    for name, s in summary["packages"].items():
        print(f"{name:26s} {s['clips']:5d} clips {s['hours']:7.3f} h {s['deb_mb']:8.1f} MB  {s['licence']}")
    print(f"manifest: {args.dest / 'manifest.csv'} ({summary['manifest_clips']} clips, {summary['manifest_hours']} h)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
