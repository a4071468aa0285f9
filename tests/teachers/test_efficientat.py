"""EfficientAT MobileNetV3 teachers: upstream key names and sizes, weight resolution, and tagging real clips."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pytest
import torch

from kd.core.errors import ConfigError, WeightsError
from kd.core.frontends import EfficientATMel, EfficientATMelConfig
from kd.teachers.base import TEACHERS
from kd.teachers.efficientat import VARIANTS, MobileNetConfig, MobileNetV3, build_network

# Importing the family module registers it; going through TEACHERS keeps these tests independent of other families.
create_teacher = TEACHERS.create

MN04_SHA256 = "899a8c6217063f6941793102a2780b3dd788ab11fce468d9cf5f0577c453321c"
RAIL = {"Rail transport", "Train", "Subway, metro, underground", "Railroad car, train wagon", "Train horn"}

# Parameter counts (millions, rounded as printed) from the table in upstream's README (fschmid56/EfficientAT a425fdc).
UPSTREAM_MILLION_PARAMS = {0.4: 0.983, 0.5: 1.43, 1.0: 4.88, 2.0: 17.91, 3.0: 39.09, 4.0: 68.43}

# Module paths of upstream `models/mn/model.py`: stem/last conv, inverted-residual blocks with SE, MLP head.
UPSTREAM_KEY = re.compile(
    r"features\.\d+\.(\d\.|block\.\d\.(\d\.|conc_se_layers\.0\.fc[12]\.))"
    r"(weight|bias|running_mean|running_var|num_batches_tracked)"
    r"|classifier\.[25]\.(weight|bias)"
)


@pytest.fixture(scope="module")
def mn04_file(shared_data: Path) -> Path:
    return shared_data / "weights" / "efficientat_mn04_as.pt"


@pytest.fixture(scope="module")
def mn04(mn04_file: Path):
    return create_teacher("efficientat/mn04_as", checkpoint=mn04_file)


def test_every_variant_is_registered() -> None:
    names = TEACHERS.names()
    for variant in VARIANTS:
        assert f"efficientat/{variant.name}" in names
    for name in ("mn01_as", "mn02_as", "mn04_as", "mn05_as", "mn10_as", "mn20_as", "mn30_as", "mn40_as", "mn40_as_ext"):
        assert f"efficientat/{name}" in names


def test_frontend_matches_values_computed_upstream() -> None:
    # Reference numbers printed by upstream AugmentMelSTFT(freqm=0, timem=0).eval() (models/preprocess.py, a425fdc),
    # torch 2.11, for 0.5 s of 440 Hz + 3 kHz tones: every 16th mel bin of frame 25, and of the mean over frames.
    t = torch.arange(16000) / 32000
    wave = 0.5 * torch.sin(2 * math.pi * 440 * t) + 0.1 * torch.cos(2 * math.pi * 3000 * t)
    frame_25 = [-1.398673, 0.614893, -1.388565, -1.402294, -1.028119, -1.399428, -1.401661, -1.305422]
    mean = [-1.348679, 0.622037, -1.314928, -1.328172, -0.944215, -1.327700, -1.352166, -1.315311]
    mel = EfficientATMel(EfficientATMelConfig())(wave[None])
    assert mel.shape == (1, 128, 50)
    torch.testing.assert_close(mel[0, ::16, 25], torch.tensor(frame_25), atol=1e-4, rtol=0)
    torch.testing.assert_close(mel[0].mean(-1)[::16], torch.tensor(mean), atol=1e-4, rtol=0)


def test_frontend_shapes_silence_and_settings() -> None:
    frontend = EfficientATMel(EfficientATMelConfig())
    for samples in (100, 600, 32000, 32001):
        mel = frontend(torch.zeros(2, samples))
        assert mel.shape == (2, 128, frontend.num_frames(samples))
        torch.testing.assert_close(mel, torch.full_like(mel, (math.log(1e-5) + 4.5) / 5))
    assert frontend.num_frames(32000) == 100
    settings = frontend.settings()
    assert settings["type"] == "efficientat_mel"
    assert (settings["hop_length"], settings["win_length"], settings["fmax"]) == (320, 800, 15000.0)


def test_frontend_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="fmax"):
        EfficientATMelConfig(fmax=20000.0)
    with pytest.raises(ConfigError, match="win_length"):
        EfficientATMelConfig(win_length=2048)


def test_mn04_state_dict_matches_the_released_file(mn04_file: Path) -> None:
    released = torch.load(mn04_file, map_location="cpu", weights_only=True)
    ours = MobileNetV3(MobileNetConfig(width_mult=0.4)).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in released.items()}


@pytest.mark.parametrize("width", sorted({v.width_mult for v in VARIANTS}))
def test_every_width_uses_upstream_names_and_sizes(width: float) -> None:
    net = MobileNetV3(MobileNetConfig(width_mult=width))
    keys = net.state_dict().keys()
    assert all(UPSTREAM_KEY.fullmatch(k) for k in keys), [k for k in keys if not UPSTREAM_KEY.fullmatch(k)]
    assert net.state_dict()["classifier.5.bias"].shape == (527,)
    if width in UPSTREAM_MILLION_PARAMS:
        params = sum(p.numel() for p in net.parameters()) / 1e6
        assert params == pytest.approx(UPSTREAM_MILLION_PARAMS[width], abs=0.006)


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v.width_mult <= 1.0], ids=lambda v: v.name)
def test_random_network_maps_waves_to_logits(variant) -> None:
    torch.manual_seed(0)
    module = build_network(variant).eval()
    waves = torch.randn(2, 16000) * 0.1
    with torch.inference_mode():
        logits = module(waves)
        single = module(waves[1:])
    assert logits.shape == (2, 527)
    torch.testing.assert_close(logits[1:], single, atol=1e-4, rtol=1e-4)


def test_builder_loads_a_checkpoint_of_its_own_architecture(tmp_path: Path) -> None:
    variant = next(v for v in VARIANTS if v.name == "mn10_as_mels_40")
    path = tmp_path / "mels40.pt"
    torch.save(build_network(variant).net.state_dict(), path)
    teacher = create_teacher("efficientat/mn10_as_mels_40", checkpoint=path)
    assert teacher.card.frontend["n_mels"] == 40
    assert teacher.logits(torch.zeros(1, 8000)).shape == (1, 527)


def test_card_and_provenance(mn04) -> None:
    card = mn04.card
    assert (card.name, card.sample_rate, card.num_classes, card.label_space) == (
        "efficientat/mn04_as",
        32000,
        527,
        "audioset",
    )
    assert card.frontend == EfficientATMel(EfficientATMelConfig()).settings()
    assert card.weights.sha256 == MN04_SHA256
    assert card.weights.url.endswith("/mn04_as_mAP_432.pt")
    assert "0.98 M params" in card.description and "0.432" in card.description
    assert mn04.checkpoint_sha256 == MN04_SHA256
    assert len(mn04.labels) == 527 and mn04.labels.names[0] == "Speech"


def test_weights_are_found_in_the_cache(mn04_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KD_CACHE", str(tmp_path))
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "efficientat_mn04_as.pt").symlink_to(mn04_file)
    monkeypatch.setattr("kd.core.weights.download", _no_network)
    assert create_teacher("efficientat/mn04_as").checkpoint_sha256 == MN04_SHA256


def test_offline_without_weights_says_how_to_supply_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KD_CACHE", str(tmp_path))
    monkeypatch.setattr("kd.core.weights.download", _no_network)
    with pytest.raises(WeightsError, match=r"--checkpoint PATH.*efficientat_mn10_as\.pt"):
        create_teacher("efficientat/mn10_as")


def test_checkpoint_of_another_model_is_refused(mn04_file: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"EfficientAT mn10_as model: wrong shape"):
        create_teacher("efficientat/mn10_as", checkpoint=mn04_file)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pt"):
        create_teacher("efficientat/mn04_as", checkpoint=junk)
    with pytest.raises(WeightsError, match="not found"):
        create_teacher("efficientat/mn04_as", checkpoint=tmp_path / "missing.pt")


def test_mn04_hears_a_train_in_the_paris_metro(mn04, shared_data: Path) -> None:
    from kd.core.audio import load_audio

    wave = load_audio(shared_data / "clips" / "efficientat_metro_station-paris.wav", sample_rate=32000)
    top = mn04.logits(wave[None])[0].argmax().item()
    assert mn04.labels.names[top] in RAIL


def test_mn04_tags_the_shared_clips(mn04, shared_data: Path) -> None:
    from kd.core.audio import load_audio

    with (shared_data / "clips.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    hits = []
    for row in rows:
        wave = load_audio(shared_data / row["path"], sample_rate=32000)
        top5 = {mn04.labels.names[i] for i in mn04.logits(wave[None])[0].topk(5).indices.tolist()}
        hits.append(bool(top5 & set(row["labels"].split(";"))))
    # Measured: 44 of 52 (0.846); misses are sub-second or ambiguous street/noise clips.
    assert sum(hits) / len(hits) >= 0.8, [row["path"] for row, hit in zip(rows, hits, strict=True) if not hit]


def _no_network(*args: object, **kwargs: object) -> Path:
    raise OSError("network is unreachable (test)")
