"""ONNX teachers: any ONNX tagger, given the front end and labels it was trained with (`onnx:/path/model.onnx`).

An ONNX file holds the network but not what feeds it, so the model declares that in a sidecar JSON beside it
(`model.onnx` -> `model.json`) or in keyword arguments, which override the sidecar:

    {
      "sample_rate": 16000,                 # rate of the waveforms the teacher receives
      "frontend": "waveform",               # or a kd.core.frontends settings dict: {"type": "kaldi_fbank", "mean": ...}
      "num_frames": 1024,                   # optional: pad or cut the features' time axis to this many frames
      "pad_value": 0.0,                     # optional: value of padded frames, in the front end's output units
      "labels": "labels.txt",               # one name per line, or a class_labels_indices.csv; relative to the JSON
      "output": "logits"                    # or "probabilities" (sigmoid outputs, turned into logits)
    }

`labels` may also be the label space itself (`{"name", "mids", "names"}`). A file made by `kd export --format onnx`
carries its declaration inside, as JSON under the `metadata_props` key `kd_declaration`, so it needs no sidecar; a
sidecar, then keyword arguments, override what a file carries.

Waveform models with a fixed sample count get their input zero-padded or cut to it. Features reach the model in the
front end's layout (kaldi_fbank: [batch, frames, bins]; efficientat_mel: [batch, bins, frames]), with a channel axis
added when the model's input has one more dimension.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kd.core.errors import ConfigError, KdError, LabelError, WeightsError
from kd.core.frontends import build_frontend
from kd.core.labels import LabelSpace, load_label_csv, load_label_names
from kd.core.weights import file_sha256
from kd.teachers.base import Teacher, TeacherCard, register_teacher
from kd.teachers.catalog import ENTRIES, TeacherEntry
from kd.teachers.yamnet import probabilities_to_logits

# Which axis of each front end's output is time, for `num_frames`.
FRONTEND_TIME_AXIS = {"kaldi_fbank": 1, "efficientat_mel": 2}
SIDECAR_KEYS = {"sample_rate", "frontend", "num_frames", "pad_value", "labels", "output"}
ONNX_METADATA_KEY = "kd_declaration"  # metadata_props entry holding a declaration inside the .onnx file


def sidecar_path(model_path: str | os.PathLike) -> Path:
    """Where the declaration of `model.onnx` lives: `model.json` beside it."""
    return Path(model_path).with_suffix(".json")


def load_declaration(
    model_path: Path, overrides: dict[str, Any], embedded: dict[str, Any] | None = None
) -> tuple[dict[str, Any], Path]:
    """The declaration `embedded` in the file, updated with the sidecar's and then with `overrides`.

    Returns it and the folder relative paths start from.
    """
    sidecar = sidecar_path(model_path)
    declared: dict[str, Any] = dict(embedded or {})
    base = model_path.parent
    if sidecar.is_file():
        try:
            from_sidecar = json.loads(sidecar.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ConfigError(f"{sidecar}: not valid JSON ({e})") from None
        if not isinstance(from_sidecar, dict):
            raise ConfigError(f"{sidecar}: expected a JSON object")
        declared.update(from_sidecar)
        base = sidecar.parent
    declared.update({k: v for k, v in overrides.items() if v is not None})
    if unknown := sorted(set(declared) - SIDECAR_KEYS):
        raise ConfigError(f"{sidecar}: unknown settings {unknown}; known: {sorted(SIDECAR_KEYS)}")
    for key in ("sample_rate", "labels"):
        if key not in declared:
            raise ConfigError(f"{model_path}: {key!r} not declared; write it in {sidecar} or pass {key}=...")
    if declared.setdefault("output", "logits") not in ("logits", "probabilities"):
        raise ConfigError(f"{sidecar}: output must be 'logits' or 'probabilities', got {declared['output']!r}")
    declared.setdefault("frontend", "waveform")
    return declared, base


def embedded_declaration(model_path: Path, session: Any) -> dict[str, Any] | None:
    """The declaration a kd export wrote into the file's metadata_props, if any."""
    text = session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)
    if text is None:
        return None
    try:
        declared = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{model_path}: metadata {ONNX_METADATA_KEY!r} is not valid JSON ({e})") from None
    if not isinstance(declared, dict):
        raise ConfigError(f"{model_path}: metadata {ONNX_METADATA_KEY!r} is not a JSON object")
    return declared


def _load_labels(labels: str | os.PathLike | dict, base: Path) -> tuple[LabelSpace, str]:
    """The declared label space (a file relative to `base`, or the space itself) and how to name it in errors."""
    if isinstance(labels, dict):
        try:
            return LabelSpace.from_json(labels), "the declared labels"
        except (KeyError, TypeError) as e:
            raise ConfigError(f"declared labels: expected {{name, mids, names}}, missing {e}") from None
    path = base / labels
    if path.suffix.lower() == ".csv":
        return load_label_csv(path, name=path.stem), str(path)
    return load_label_names(path, name=path.stem), str(path)


def _fit_length(array: np.ndarray, length: int, axis: int, value: float) -> np.ndarray:
    """Pads (with `value`) or cuts `array` along `axis` to `length`."""
    size = array.shape[axis]
    if size >= length:
        return np.take(array, np.arange(length), axis=axis)
    widths = [(0, 0)] * array.ndim
    widths[axis] = (0, length - size)
    return np.pad(array, widths, constant_values=value)


class OnnxTeacher(Teacher):
    """An onnxruntime session behind a kd front end; runs the whole batch at once unless the model's batch is 1."""

    def __init__(
        self,
        card: TeacherCard,
        labels: LabelSpace,
        session: Any,
        frontend: torch.nn.Module | None,
        declaration: dict[str, Any],
        sha256: str,
    ) -> None:
        self.card = card
        self.labels = labels
        self.checkpoint_sha256 = sha256
        self._session = session
        self._frontend = frontend
        self._declaration = declaration
        self._input = session.get_inputs()[0]
        self._output_name = session.get_outputs()[0].name

    def _features(self, waves: torch.Tensor) -> np.ndarray:
        shape = self._input.shape
        if self._frontend is None:
            x = waves.detach().cpu().float().numpy()
            if isinstance(shape[-1], int):  # a fixed-length waveform model
                x = _fit_length(x, shape[-1], axis=-1, value=0.0)
            return x
        with torch.inference_mode():
            x = self._frontend(waves.detach().cpu().float()).numpy()
        if (frames := self._declaration.get("num_frames")) is not None:
            axis = FRONTEND_TIME_AXIS[self._declaration["frontend"]["type"]]
            x = _fit_length(x, int(frames), axis=axis, value=float(self._declaration.get("pad_value", 0.0)))
        if len(shape) == x.ndim + 1:
            x = x[:, None]  # the model wants a channel axis
        return x

    def logits(self, waves: torch.Tensor) -> torch.Tensor:
        x = self._features(waves).astype(np.float32, copy=False)
        if self._input.shape[0] == 1 and len(x) > 1:
            out = np.concatenate([self._run(x[i : i + 1]) for i in range(len(x))])
        else:
            out = self._run(x)
        if out.ndim != 2 or out.shape[1] != len(self.labels):
            raise WeightsError(
                f"{self.card.name}: output shape {list(out.shape)}, expected [batch, {len(self.labels)}] (the labels)"
            )
        scores = torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))
        return probabilities_to_logits(scores) if self._declaration["output"] == "probabilities" else scores

    def _run(self, x: np.ndarray) -> np.ndarray:
        try:
            return self._session.run([self._output_name], {self._input.name: x})[0]
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise WeightsError(
                f"{self.card.name}: the model refused input {list(x.shape)} ({type(e).__name__}: {e}); "
                "check the declared front end and num_frames"
            ) from None


@register_teacher("onnx")
def onnx_teacher(
    checkpoint: str | os.PathLike | None = None,
    sample_rate: int | None = None,
    frontend: str | dict[str, Any] | None = None,
    num_frames: int | None = None,
    pad_value: float | None = None,
    labels: str | os.PathLike | None = None,
    output: str | None = None,
    providers: list[str] | None = None,
) -> OnnxTeacher:
    """A teacher from an ONNX file and its declaration (sidecar `model.json`, overridden by these arguments).

    Args:
        checkpoint: the .onnx file (`create_teacher("onnx:/path/model.onnx")` passes it here).
        sample_rate: rate of the waveforms the model's front end expects.
        frontend: "waveform", or a kd.core.frontends settings dict with its "type".
        num_frames: pad or cut the features' time axis to this many frames.
        pad_value: value of padded frames.
        labels: label file (names, one a line, or a class_labels_indices.csv); in the sidecar, relative to it.
        output: "logits" (default) or "probabilities".
        providers: onnxruntime execution providers (default CPU).
    """
    try:
        import onnxruntime
    except ImportError:
        raise KdError("ONNX teachers need onnxruntime: pip install kd[onnx]") from None
    if checkpoint is None:
        raise WeightsError("the onnx teacher needs a model file: create_teacher('onnx:/path/model.onnx')")
    model_path = Path(checkpoint)
    if not model_path.is_file():
        raise WeightsError(f"{model_path}: ONNX model not found")
    overrides = dict(
        sample_rate=sample_rate,
        frontend=frontend,
        num_frames=num_frames,
        pad_value=pad_value,
        labels=labels,
        output=output,
    )
    try:
        session = onnxruntime.InferenceSession(str(model_path), providers=providers or ["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise WeightsError(f"{model_path}: not a loadable ONNX model ({type(e).__name__})") from None
    declaration, base = load_declaration(model_path, overrides, embedded_declaration(model_path, session))
    # A `labels` argument is the caller's path (from the working directory); a declared one is relative to it.
    label_space, label_source = _load_labels(declaration["labels"], Path() if labels is not None else base)
    module = None
    if (settings := declaration["frontend"]) != "waveform":
        if not isinstance(settings, dict):
            raise ConfigError(f"{model_path}: frontend must be 'waveform' or a front end settings dict")
        module = build_frontend(settings)
        if declaration.get("num_frames") is not None and settings["type"] not in FRONTEND_TIME_AXIS:
            raise ConfigError(f"{model_path}: num_frames is not supported for front end {settings['type']!r}")
        if (rate := getattr(module.config, "sample_rate", None)) is not None and rate != declaration["sample_rate"]:
            raise ConfigError(f"{model_path}: sample_rate {declaration['sample_rate']} but the front end is at {rate}")
    declared_classes = session.get_outputs()[0].shape[-1]
    if isinstance(declared_classes, int) and declared_classes != len(label_space):
        raise LabelError(f"{label_source}: {len(label_space)} labels, the model outputs {declared_classes} classes")
    frontend_card = {**declaration, "labels": label_source}
    if module is not None:
        frontend_card["frontend"] = module.settings()
    card = TeacherCard(
        name=f"onnx:{checkpoint}",
        sample_rate=int(declaration["sample_rate"]),
        num_classes=len(label_space),
        label_space=label_space.name,
        frontend=frontend_card,
        description=f"ONNX model {model_path.name}, input {session.get_inputs()[0].shape}",
    )
    return OnnxTeacher(card, label_space, session, module, declaration, file_sha256(model_path))


ENTRIES["onnx"] = lambda: TeacherEntry(
    None,
    runtime="onnx",
    weights_origin="checkpoint required (onnx:/path/model.onnx)",
    description="any ONNX tagger, declared by a sidecar model.json (sample rate, front end, labels)",
)
