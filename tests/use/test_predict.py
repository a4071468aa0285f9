"""kd predict: window spans, one-window-at-a-time decoding of a long real file, pooling, timeline and plot."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import kd.core.audio
from kd.core.errors import ConfigError
from kd.use.models import load_tagger
from kd.use.predict import iter_windows, plot_timeline, predict_file, window_spans, write_timeline


def test_window_spans() -> None:
    assert window_spans(4.0, 10.0, 10.0) == [(0.0, 4.0)]
    assert window_spans(30.0, 10.0, 10.0) == [(0.0, 10.0), (10.0, 20.0), (20.0, 30.0)]
    # The tail is covered by a last full window aligned to the end, never by a short one.
    assert window_spans(25.0, 10.0, 10.0) == [(0.0, 10.0), (10.0, 20.0), (15.0, 25.0)]
    assert window_spans(20.0, 10.0, 5.0) == [(0.0, 10.0), (5.0, 15.0), (10.0, 20.0)]
    with pytest.raises(ConfigError):
        window_spans(20.0, 10.0, 0.0)


@pytest.fixture(scope="module")
def long_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five minutes of real clips (dog, speech, rain, ...) concatenated at 16 kHz."""
    from tests.conftest import SHARED_DATA

    if not (SHARED_DATA / "clips.csv").is_file():
        pytest.skip("real test data not found")
    names = ["freesound_dog.wav", "efficientat-demo_speech.wav", "freesound_rain.wav", "freesound_piano.wav"]
    pieces = [kd.core.audio.load_audio(SHARED_DATA / "clips" / n, 16000).numpy() for n in names]
    wave = np.concatenate(pieces)
    wave = np.tile(wave, int(np.ceil(300 * 16000 / len(wave))))[: 300 * 16000]
    path = tmp_path_factory.mktemp("long") / "five_minutes.wav"
    sf.write(path, wave, 16000, subtype="PCM_16")
    return path


def test_decoder_never_reads_more_than_one_window(long_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = []
    original = kd.core.audio.load_audio

    def spy(path: object, sample_rate: int | None = None, start: float | None = None, end: float | None = None):
        assert start is not None and end is not None, "a whole-file decode"
        reads.append(end - start)
        return original(path, sample_rate, start, end)

    monkeypatch.setattr(kd.core.audio, "load_audio", spy)
    windows = list(iter_windows(long_file, 16000, window=10.0, hop=5.0))
    assert len(windows) == 59 and max(reads) <= 10.0 + 1e-9
    assert all(len(w) == 160000 for _, _, w in windows)
    assert windows[-1][1] == pytest.approx(300.0)


def test_predict_long_file_pools_windows_and_writes_timeline(
    long_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tagger = load_tagger("toy/tiny16k")
    seen = []
    forward = tagger.forward
    tagger.forward = lambda waves: (seen.append(tuple(waves.shape)), forward(waves))[1]
    prediction = predict_file(tagger, long_file, window=10.0, pooling="max", batch_size=8)
    assert prediction.window_probs.shape == (30, 527)
    assert max(shape[0] * shape[1] for shape in seen) <= 8 * 160000  # a batch of windows, never the file
    np.testing.assert_allclose(prediction.clip_probs, prediction.window_probs.max(axis=0))
    mean = predict_file(tagger, long_file, window=10.0, pooling="mean", batch_size=8)
    np.testing.assert_allclose(mean.clip_probs, prediction.window_probs.mean(axis=0), rtol=1e-6)
    # Windows scored in batches equal windows scored one by one.
    with torch.no_grad():
        third = torch.sigmoid(tagger(kd.core.audio.load_audio(long_file, 16000, 20.0, 30.0)[None]))[0].numpy()
    np.testing.assert_allclose(prediction.window_probs[2], third, atol=1e-5)
    assert len(prediction.top(5)) == 5 and prediction.top(1)[0][1] == prediction.clip_probs.max()

    rows = list(csv.reader(write_timeline([prediction], tmp_path / "t.csv").open()))
    assert rows[0][:3] == ["file", "start", "end"] and len(rows[0]) == 3 + 527 and len(rows) == 31
    data = json.loads(write_timeline([prediction], tmp_path / "t.json").read_text())
    assert len(data["files"][0]["windows"]) == 30 and len(data["labels"]) == 527
    png = plot_timeline(prediction, tmp_path / "plot.png", top=4)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError):
        write_timeline([prediction], tmp_path / "t.txt")


def test_cli_predict_short_and_long_files(long_file: Path, tmp_path: Path, shared_data: Path) -> None:
    from typer.testing import CliRunner

    from kd.cli import app

    short = shared_data / "clips" / "freesound_dog.wav"
    args = ["predict", "toy/tiny16k", str(short), str(long_file), "--top", "3", "--window", "20"]
    result = CliRunner().invoke(app, [*args, "--timeline", str(tmp_path / "t.csv"), "--plot", str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p-0.png").is_file() and (tmp_path / "p-1.png").is_file()
    assert "15 windows" in result.output


def test_predict_writes_clip_level_tags_as_json_and_csv(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from kd.cli import app
    from tests.conftest import SHARED_DATA

    if not (SHARED_DATA / "clips.csv").is_file():
        pytest.skip("real test data not found")
    files = [str(SHARED_DATA / "clips" / n) for n in ("scaper_dogbark.wav", "tflite_speech.wav")]
    args = ["predict", "toy/tiny16k", *files, "--top", "3", "--window", "2"]
    runner = CliRunner()
    written = runner.invoke(app, [*args, "--json", str(tmp_path / "t.json"), "--csv", str(tmp_path / "t.csv")])
    assert written.exit_code == 0, written.output
    data = json.loads((tmp_path / "t.json").read_text())
    expected = [predict_file(load_tagger("toy/tiny16k"), f, window=2.0) for f in files]
    assert [d["path"] for d in data["files"]] == files
    for entry, prediction in zip(data["files"], expected, strict=True):
        assert entry["windows"] == len(prediction.spans) and entry["pooling"] == "max"
        assert [(t["label"], t["probability"]) for t in entry["tags"]] == [
            (label, round(prob, 6)) for label, prob in prediction.top(3)
        ]
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert [(r["file"], r["rank"], r["label"]) for r in rows] == [
        (f, str(rank), t["label"])
        for f, e in zip(files, data["files"], strict=True)
        for rank, t in enumerate(e["tags"], start=1)
    ]
    # On stdout alone, the output is parseable as is: no tables mixed in.
    piped = runner.invoke(app, [*args, "--json", "-"])
    assert piped.exit_code == 0 and json.loads(piped.stdout) == data
