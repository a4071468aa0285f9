"""Audio input: decode any file soundfile reads, mix to mono, resample, and read segments without decoding it all."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from kd.core.errors import AudioError

MAX_SAMPLE = 1e4
"""Largest sample magnitude accepted (80 dB above full scale): beyond it a file is broken, not loud."""


@dataclass(frozen=True)
class AudioInfo:
    """What the header says: rate, frames per channel, channels, container and codec."""

    sample_rate: int
    frames: int
    channels: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Reads the header of `path`; raises AudioError for anything that is not complete, decodable audio."""
    path = Path(path)
    _check_file(path)
    if path.suffix.lower() == ".mp3":
        _check_mp3_start(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(path, f"not a readable audio file ({_reason(e)})") from None
    if info.frames <= 0:
        raise AudioError(path, "contains no audio frames")
    if info.format in ("WAV", "WAVEX"):
        _check_wav_complete(path)
    return AudioInfo(info.samplerate, info.frames, info.channels, info.format, info.subtype)


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    start: float | None = None,
    end: float | None = None,
) -> torch.Tensor:
    """Decodes `path` to a mono float32 tensor [samples].

    Args:
        path: any file libsndfile decodes (wav PCM/float, flac, ogg/vorbis, mp3).
        sample_rate: resample to this rate; None keeps the file's rate.
        start: segment start in seconds; only the segment is decoded (the file is seeked where the format allows).
        end: segment end in seconds (exclusive), clamped to the file's end.
    """
    path = Path(path)
    info = audio_info(path)
    first = 0 if start is None else int(round(start * info.sample_rate))
    last = info.frames if end is None else min(info.frames, int(round(end * info.sample_rate)))
    if not 0 <= first < last:
        raise AudioError(path, f"segment [{start}, {end}) s is empty or outside the file's {info.duration:.3f} s")
    try:
        with sf.SoundFile(str(path)) as f:
            if first:
                f.seek(first)
            data = f.read(last - first, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(path, f"decoding failed ({_reason(e)})") from None
    if len(data) < last - first:
        raise AudioError(path, f"truncated: header promises {last - first} frames, only {len(data)} decode")
    if not np.isfinite(data).all():
        raise AudioError(path, "contains NaN or infinite samples")
    peak = float(np.abs(data).max(initial=0.0))
    if peak > MAX_SAMPLE:
        # Finite but absurd (float WAVs can hold anything): teachers' power spectra would overflow to inf/NaN.
        raise AudioError(path, f"samples reach {peak:.3g}, far beyond full scale (1.0); rescale the file")
    wave = torch.from_numpy(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0])
    return resample(wave, info.sample_rate, sample_rate) if sample_rate else wave


def resample(wave: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Band-limited resampling along the last axis, with the kernel for each rate pair built once."""
    if orig_sr == new_sr:
        return wave
    return _resampler(int(orig_sr), int(new_sr))(wave)


@lru_cache(maxsize=32)
def _resampler(orig_sr: int, new_sr: int) -> torchaudio.transforms.Resample:
    # Resample keeps its sinc kernel as a buffer; building it is the costly part for odd rate pairs.
    g = gcd(orig_sr, new_sr)
    return torchaudio.transforms.Resample(orig_sr // g, new_sr // g)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(path, "file not found")
    if not path.is_file():
        raise AudioError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")


def _check_wav_complete(path: Path) -> None:
    """libsndfile silently shortens a truncated WAV to what is there; the RIFF data chunk says what should be."""
    size = path.stat().st_size
    with path.open("rb") as f:
        header = f.read(12)
        if len(header) < 12 or header[:4] not in (b"RIFF", b"RF64"):
            return
        offset = 12
        while offset + 8 <= size:
            f.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                # 0xFFFFFFFF marks RF64 / streamed files whose real size lives elsewhere.
                if chunk_size != 0xFFFFFFFF and offset + 8 + chunk_size > size:
                    raise AudioError(
                        path, f"truncated: data chunk declares {chunk_size} bytes, file holds {size - offset - 8}"
                    )
                return
            offset += 8 + chunk_size + (chunk_size & 1)


def _check_mp3_start(path: Path) -> None:
    """Refuses a .mp3 that starts with neither an ID3 tag nor an MPEG frame header, before libmpg123 sees it (it
    prints resync notes to the terminal and libsndfile then blames a pipe)."""
    with path.open("rb") as f:
        head = f.read(3)
    if head != b"ID3" and not (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        raise AudioError(path, "not an MP3 file (no ID3 tag or MPEG frame header at the start)")


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    if text.startswith("Error opening"):
        text = text.split(": ", 1)[-1]
        # libsndfile says this for any format it cannot recognise; the file itself was checked to be regular.
        if "possibly a pipe" in text:
            return "format not recognised or file corrupt"
    return text
