"""One way to name a model for every inference command: what kd trains and exports, or a registered teacher name."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from kd.core.errors import ConfigError
from kd.core.labels import LabelSpace


@dataclass
class Tagger:
    """A model ready for inference: waveforms [B, T] at `sample_rate` -> logits [B, len(labels)] (float32, CPU).

    Attributes:
        name: what the user named (a path or a teacher name).
        kind: 'student' (a kd checkpoint or Hugging Face export) or 'teacher' (registry names, ONNX files).
        sample_rate: input rate in Hz.
        labels: the output classes, in output order.
        device: where the model runs.
        module: the torch module when there is one (students and torch teachers), else None.
    """

    name: str
    kind: str
    sample_rate: int
    labels: LabelSpace
    device: torch.device
    forward: Callable[[torch.Tensor], torch.Tensor]
    module: torch.nn.Module | None = None

    def __call__(self, waves: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.forward(waves.to(self.device)).float().cpu()


def load_tagger(spec: str, checkpoint: str | None = None, device: str | torch.device = "cpu") -> Tagger:
    """Builds the tagger `spec` names, in eval mode on `device`.

    Args:
        spec: what kd writes — a student checkpoint from `kd train-student` (an existing file), a directory from
            `kd export --format hf`, a `.onnx` file from `kd export --format onnx` — or a registered teacher name
            such as 'efficientat/mn04_as', 'yamnet', 'onnx:PATH' or 'dass:PATH.pt'.
        checkpoint: the teacher's weights file (teachers only; the others carry their own weights).
        device: torch device.
    """
    device = torch.device(device)
    path = Path(spec)
    if path.is_dir() or (path.is_file() and path.suffix.lower() != ".onnx"):
        if checkpoint is not None:
            raise ConfigError(f"{spec}: a kd student or export carries its own weights; drop --checkpoint")
        return _load_hf_export(path, device) if path.is_dir() else _load_student(path, device)
    from kd.teachers import create_teacher

    if path.is_file():  # an ONNX file, kd's own export or one with a sidecar declaration
        spec = f"onnx:{spec}"
    elif ":" not in spec and spec.endswith((".pt", ".pth", ".ckpt")):
        raise ConfigError(f"{spec}: student checkpoint not found (write one with `kd train-student`)")
    try:
        teacher = create_teacher(spec, checkpoint=checkpoint)
    except ConfigError as e:
        raise ConfigError(f"{spec}: not a checkpoint file; {e}") from None
    teacher = teacher.to(device)
    module = getattr(teacher, "module", None)
    return Tagger(spec, "teacher", int(teacher.card.sample_rate), teacher.labels, device, teacher.logits, module)


def _load_student(path: Path, device: torch.device) -> Tagger:
    from kd.students.checkpoint import load_student

    model, labels = load_student(path)
    model.to(device)
    return Tagger(str(path), "student", int(model.sample_rate), labels, device, model, module=model)


def _load_hf_export(path: Path, device: torch.device) -> Tagger:
    """A directory written by `kd export --format hf`, loaded through transformers like any user would."""
    if not (path / "config.json").is_file():
        raise ConfigError(f"{path}: a directory, but not a `kd export --format hf` export (no config.json)")
    from kd.use.hf import MODEL_TYPE, KdStudentForAudioClassification

    try:
        model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError) as e:
        raise ConfigError(f"{path}/config.json: not a readable Hugging Face config ({e})") from None
    if model_type != MODEL_TYPE:
        raise ConfigError(f"{path}: model type {model_type!r}, not a kd export ({MODEL_TYPE!r})")
    try:
        model = KdStudentForAudioClassification.from_pretrained(path).eval().to(device)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot load the exported model ({e})") from None
    config = model.config
    names = tuple(config.id2label[i] for i in range(config.num_labels))
    mids = tuple(config.label_mids) if len(config.label_mids) == len(names) else ("",) * len(names)
    labels = LabelSpace(name=config.label_space or "exported", mids=mids, names=names)

    def forward(waves: torch.Tensor) -> torch.Tensor:
        return model(input_values=waves).logits

    return Tagger(str(path), "student", int(config.sampling_rate), labels, device, forward, module=model)
