"""Audio decoding: every real clip decodes with the right duration; every broken file fails with AudioError."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf
import torch

from kd.core.audio import audio_info, load_audio, resample
from kd.core.errors import AudioError


def _clips(shared_data):
    with (shared_data / "clips.csv").open() as f:
        return [shared_data / row["path"] for row in csv.DictReader(f)]


def test_every_shared_clip_decodes_with_the_right_duration(shared_data):
    for path in _clips(shared_data):
        info = sf.info(str(path))
        wave = load_audio(path)
        assert wave.dtype == torch.float32 and wave.ndim == 1
        assert abs(len(wave) / info.samplerate - info.duration) <= 1 / info.samplerate, path.name
        assert torch.isfinite(wave).all()


def test_formats_and_channels_are_covered(shared_data):
    subtypes = {
        (sf.info(str(p)).format, sf.info(str(p)).subtype, sf.info(str(p)).channels) for p in _clips(shared_data)
    }
    formats = {s[0] for s in subtypes}
    assert {"WAV", "OGG", "MP3"} <= formats
    assert any(s[1] == "PCM_24" for s in subtypes) and any(s[2] == 2 for s in subtypes)


def test_stereo_is_mixed_to_mono(shared_data):
    path = shared_data / "clips" / "freesound_birds1.wav"
    data, _ = sf.read(str(path), dtype="float32", always_2d=True)
    assert data.shape[1] == 2
    np.testing.assert_allclose(load_audio(path).numpy(), data.mean(axis=1), atol=1e-7)


def test_segment_read_equals_slice_of_whole(shared_data):
    path = shared_data / "clips" / "freesound_rain.wav"
    sr = audio_info(path).sample_rate
    whole = load_audio(path)
    part = load_audio(path, start=1.5, end=3.25)
    assert torch.equal(part, whole[int(1.5 * sr) : int(3.25 * sr)])


def test_resample_to_any_rate(shared_data):
    path = shared_data / "clips" / "us8k_100032-3-0-0.wav"
    info = audio_info(path)
    for rate in (8000, 16000, 32000, 44100):
        wave = load_audio(path, sample_rate=rate)
        assert abs(len(wave) - info.duration * rate) <= 1


def test_resample_preserves_a_tone():
    t = torch.arange(44100) / 44100
    tone = torch.sin(2 * torch.pi * 440 * t)
    out = resample(tone, 44100, 16000)
    spectrum = torch.fft.rfft(out[1000:-1000]).abs()
    peak_hz = spectrum.argmax().item() * 16000 / (len(out) - 2000)
    assert abs(peak_hz - 440) < 2


@pytest.mark.parametrize("kind", ["missing", "empty", "truncated_wav", "truncated_mp3", "corrupt", "text"])
def test_broken_files_raise_audio_error_naming_the_file(bad_audio, kind):
    path = bad_audio[kind]
    with pytest.raises(AudioError) as info:
        load_audio(path, sample_rate=16000)
    assert str(path) in str(info.value) and info.value.reason
    assert "\n" not in str(info.value)


def test_segment_outside_file_is_refused(shared_data):
    with pytest.raises(AudioError, match="outside"):
        load_audio(shared_data / "clips" / "scaper_dogbark.wav", start=100.0, end=101.0)
