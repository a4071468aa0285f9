"""A trained DASS as a teacher: kd checkpoints (`dass:PATH`) and released checkpoints in upstream naming."""

from __future__ import annotations

import pytest
import torch

from kd.core.errors import WeightsError
from kd.core.labels import audioset_labels
from kd.students import create_student
from kd.students.checkpoint import save_checkpoint
from kd.teachers import create_teacher


def test_kd_checkpoint_teaches_with_its_ema_weights(tmp_path):
    model = create_student("dass-tiny")
    ema = {k: v + 0.01 if v.dtype.is_floating_point else v for k, v in model.state_dict().items()}
    path = save_checkpoint(
        {
            "student": "dass-tiny",
            "student_kwargs": {"num_classes": 527},
            "labels": audioset_labels().to_json(),
            "model": model.state_dict(),
            "ema": ema,
        },
        tmp_path / "last.pt",
    )
    teacher = create_teacher(f"dass:{path}")
    model.load_state_dict(ema)
    wave = torch.randn(2, 16000)
    assert teacher.card.sample_rate == 16000 and len(teacher.labels) == 527
    torch.testing.assert_close(teacher.logits(wave), model.eval()(wave))
    assert len(teacher.checkpoint_sha256) == 64


def test_released_checkpoint_in_upstream_naming_loads(tmp_path, shared_data):
    from kd.core.audio import load_audio
    from tests.students.test_dass import _random_state, _upstream

    with pytest.raises(WeightsError, match="--checkpoint"):
        create_teacher("dass/small")
    # A checkpoint with the original repository's key names and shapes (nn.DataParallel prefix included).
    state = {k: v * 0.02 for k, v in _random_state(_upstream("small")["original"]).items()}
    torch.save(state, tmp_path / "DASS_small.pth")
    teacher = create_teacher("dass/small", checkpoint=tmp_path / "DASS_small.pth")
    wave = load_audio(shared_data / "clips" / "scaper_dogbark.wav", 16000)[None]
    logits = teacher.logits(wave)
    assert logits.shape == (1, 527) and torch.isfinite(logits).all()
    assert "original" in teacher.card.description
