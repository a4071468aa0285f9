"""The main job's small default data for a clone without `../shared`: real clips and the mn04 teacher's weights,
fetched from their upstream repositories (sha256-pinned) into the kd cache.

The clips are files of permissively licensed GitHub repositories, pinned to a commit; each sha256 was computed from
the copy in the project's shared test data. The weights are EfficientAT's mn04_as release file (its registry entry
holds the URL and sha256), cached where `kd dump-teachers` looks for them, so no `--checkpoint` is needed.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from kd.core.cache import cache_root
from kd.core.download import download, sha256_of
from kd.core.errors import KdError, WeightsError

DEMO_TEACHER = "efficientat/mn04_as"
RAW = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class DemoClip:
    """One clip: its file name here, its upstream URL, the pinned sha256, AudioSet labels and licence."""

    name: str
    url: str
    sha256: str
    labels: str
    licence: str


def _github(repo: str, commit: str, path: str) -> str:
    return f"{RAW}/{repo}/{commit}/{path}"


_NIKIH94 = ("nikih94/swch-audio-classification", "fb7aeb817ef5ca8b3833e5a75cc8eab27c73e2c7")
_IBM = ("IBM/MAX-Audio-Classifier", "a6c6bb50bd464a394cb057e609ff97ad8ecdb4c9")
_IBM_EARLIER = ("IBM/MAX-Audio-Classifier", "dbd1a027f6cab10da36d852685c31c2aa267ae51")
_SCAPER = "justinsalamon/scaper"
DEMO_CLIPS = (
    DemoClip(
        "music.wav",
        _github(*_NIKIH94, "sample_audio/music.wav"),
        "46a9514ae0cd88b89e269168877a81281ef17fdc88f18463354102d59f8aace5",
        "Music",
        "MIT",
    ),
    DemoClip(
        "speech.wav",
        _github(*_NIKIH94, "sample_audio/speach.wav"),  # sic: upstream's file name
        "bb5450b24b0c499e92420c827d01cd76e3dbbedb9ad734ac51a0e323e235cf90",
        "Speech",
        "MIT",
    ),
    DemoClip(
        "typing.wav",
        _github(*_NIKIH94, "sample_audio/typing.wav"),
        "605ed77a7a6d88617746a86ea668773d1c632a58be3c7f91a111a9924e61cd64",
        "Typing;Computer keyboard",
        "MIT",
    ),
    DemoClip(
        "metro_station-paris.wav",
        _github(
            "fschmid56/EfficientAT", "bcaaae82530fc70fa3ce1274fd6278fe6aaaa008", "resources/metro_station-paris.wav"
        ),
        "75d28a33f45fd6eebd862bb25a3738dd83b7aa92ad64c26d5b1879ff2a715b3f",
        "Rail transport;Train;Subway, metro, underground",
        "MIT",
    ),
    DemoClip(
        "guitar.wav",
        _github(*_IBM_EARLIER, "samples/guitar.wav"),
        "6d0d800d42c6b0dec34310199e6e6b4bb1fbb18f49309f49b626a6311b3be4b6",
        "Music;Guitar",
        "CC (freesound 389401)",
    ),
    DemoClip(
        "gunshots.wav",
        _github(*_IBM, "samples/gunshots.wav"),
        "d6811f307ddd0074f7cec2e401d3926e32c5874dee94167d2c362f4888cc5c10",
        "Gunshot, gunfire;Explosion",
        "Sampling+ (freesound 36815)",
    ),
    DemoClip(
        "jazz_guitar.wav",
        _github(*_IBM, "samples/jazz_guitar.wav"),
        "e3e637e7bebd6145c22469e5362e3613525a9cd280ae627035e1615dbcee25a4",
        "Music;Guitar;Jazz",
        "CC0 (freesound 49658)",
    ),
    DemoClip(
        "piano.wav",
        _github(*_IBM_EARLIER, "samples/piano.wav"),
        "2a4b1da95931608f127a6110cf68b5d3269b95de87a8fcf115b0f94d3c1db4ec",
        "Music;Piano",
        "CC BY (freesound 186942)",
    ),
    DemoClip(
        "rain.wav",
        _github(*_IBM, "samples/rain.wav"),
        "d1a50a18aa56241134e6179f1108c3c87ab45678e9175eabe8d9a7fec4572804",
        "Rain;Water",
        "CC BY (freesound 401275)",
    ),
    DemoClip(
        "thunder.wav",
        _github(*_IBM_EARLIER, "samples/thunder.wav"),
        "f5c11ff6c5bf4b17d971cc76498ebe4429c74f844cdbec844442c2f0dc32db48",
        "Thunder;Thunderstorm",
        "CC BY (freesound 360328)",
    ),
    DemoClip(
        "dogbark.wav",
        _github(_SCAPER, "d905236010181fcd2e4fdb1f6f11254f3fb697e0", "tests/data/lufs/dogbark.wav"),
        "6640ad0f7b98d79fb4849664cc86d4a829b8d67bb576892ce0b6d76d5494fb18",
        "Animal;Dog;Bark",
        "BSD-3 (scaper)",
    ),
    DemoClip(
        "noise-0145.wav",
        _github(
            _SCAPER,
            "0f9ad4abb5effa21fbcca62e307c2a4a435fd91e",
            "tests/data/audio/short_background/noise/noise-free-sound-0145.wav",
        ),
        "26ef34e718c0f87bdec56b8d1cc9cf8624c8c87ad07eddfc86753f6b4162dba9",
        "Noise",
        "BSD-3 (scaper)",
    ),
    DemoClip(
        "street-scene-1.wav",
        _github(
            _SCAPER,
            "b3c2e0a9124cca2229b05c232f348134b2331a07",
            "tests/data/audio_alt_path/background/street/150993__saphe__street-scene-1.wav",
        ),
        "14b5a1f19e2933f47205c03a1f5b8590ae88dbc564e7f4adc8fb4a45917b6729",
        "Outside, urban or manmade;Traffic noise, roadway noise",
        "BSD-3 (scaper; freesound 150993)",
    ),
    DemoClip(
        "voice-taxi-1.wav",
        _github(
            _SCAPER,
            "37ae8ac623e4b05db2690fb9877a13615f95f60d",
            "tests/data/audio/foreground/human_voice/42-Human-Vocal-Voice-taxi-1_edit.wav",
        ),
        "0859d3cf82a3d3f83ddb2df0be42b98abf2b27f987c44ce2229dd9a30ecb3ac1",
        "Speech",
        "BSD-3 (scaper)",
    ),
)


def demo_dir() -> Path:
    """Where the demo clips and manifest live: `$KD_CACHE/demo` (default `~/.cache/kd/demo`)."""
    return cache_root() / "demo"


def fetch_demo(clips: tuple[DemoClip, ...] = DEMO_CLIPS, target: Path | None = None) -> Path:
    """Fetches whatever of the demo set is missing (clips, then the teacher's weights) and returns its manifest.

    Files already present with the pinned sha256 are not fetched again; a file whose download fails or does not
    match its pin is not kept. Every failure is reported together, with what to do instead.
    """
    from kd.core.weights import resolve_weights
    from kd.teachers.efficientat import VARIANTS

    target = target or demo_dir()
    problems = []
    for clip in clips:
        path = target / "clips" / clip.name
        if path.is_file() and sha256_of(path) == clip.sha256:
            continue
        try:
            download(clip.url, path, sha256=clip.sha256)
        except OSError as e:
            problems.append(f"{clip.url} ({e})")
    try:
        resolve_weights(next(v for v in VARIANTS if f"efficientat/{v.name}" == DEMO_TEACHER).weights)
    except WeightsError as e:
        problems.append(str(e))
    if problems:
        raise KdError(
            f"no shared data (../shared/data or $KD_SHARED_DATA) and the demo set could not be fetched: "
            f"{'; '.join(problems)}. Go online once, point KD_SHARED_DATA at a copy of the shared data, or give "
            "your own MANIFEST=... CHECKPOINT=..."
        )
    manifest = target / "clips.csv"
    with manifest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "labels", "source", "license"])
        for clip in clips:
            writer.writerow([f"clips/{clip.name}", clip.labels, clip.url, clip.licence])
    return manifest
