"""`kd export`: a trained student to a Hugging Face directory or to ONNX with a dynamic time axis.

ONNX: `torchaudio.compliance.kaldi.fbank` frames waveforms with Python-side shape arithmetic and loops over the
batch, which tracing freezes to the example's length. The export therefore swaps in `ConvKaldiFbank`, the same
Kaldi fbank written as one strided convolution: per frame, DC removal, pre-emphasis, the window and the real DFT
are all linear in the frame's samples, so they compose into one [2 * bins, 1, frame] kernel. The graph takes
`waveform` [batch, samples] (at least one 25 ms frame) and returns `logits` [batch, classes]; batch and samples
are dynamic. The network is traced with autograd enabled so that DASS's no-grad memory-saving loops (whose trip
counts depend on the length) are not frozen into the graph.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from kd.core.errors import ConfigError
from kd.core.frontends import KaldiFbankConfig
from kd.core.labels import LabelSpace
from kd.core.permissions import apply_umask
from kd.core.version import __version__
from kd.teachers.onnx import ONNX_METADATA_KEY

FORMATS = ("hf", "onnx")
# einsum (DASS's scan) needs opset 12; 20 is the newest the TorchScript exporter writes (torch 2.11).
OPSETS = range(12, 21)
PREEMPHASIS = 0.97  # torchaudio kaldi.fbank's default, which KaldiFbank keeps


class ConvKaldiFbank(nn.Module):
    """`KaldiFbank` as a traceable convolution (Kaldi defaults: snip edges, power spectrum, low_freq 20 Hz)."""

    def __init__(self, config: KaldiFbankConfig) -> None:
        super().__init__()
        from torchaudio.compliance import kaldi

        if config.window_type not in ("hanning", "hamming", "povey") or config.use_energy:
            raise ConfigError(f"ONNX export supports hanning/hamming/povey fbank without energy, not {config}")
        self.config = config
        length = int(config.sample_rate * config.frame_length_ms / 1000)
        self.shift = int(config.sample_rate * config.frame_shift_ms / 1000)
        padded = 1 << (length - 1).bit_length()
        n = torch.arange(length, dtype=torch.float64)
        if config.window_type == "hanning":
            window = torch.hann_window(length, periodic=False, dtype=torch.float64)
        elif config.window_type == "hamming":
            window = torch.hamming_window(length, periodic=False, alpha=0.54, beta=0.46, dtype=torch.float64)
        else:
            window = torch.hann_window(length, periodic=False, dtype=torch.float64).pow(0.85)
        centre = torch.eye(length, dtype=torch.float64) - 1.0 / length  # frame - mean(frame)
        emphasis = torch.eye(length, dtype=torch.float64)
        emphasis[1:, :-1] -= PREEMPHASIS * torch.eye(length - 1, dtype=torch.float64)
        emphasis[0, 0] -= PREEMPHASIS  # Kaldi replicates the first sample as its predecessor
        bins = padded // 2 + 1
        angle = 2 * math.pi * torch.outer(torch.arange(bins, dtype=torch.float64), n) / padded
        dft = torch.cat([torch.cos(angle), -torch.sin(angle)])  # zero padding to `padded` adds nothing
        kernel = dft @ torch.diag(window) @ emphasis @ centre * config.waveform_scale
        self.register_buffer("kernel", kernel.float().unsqueeze(1), persistent=False)
        banks, _ = kaldi.get_mel_banks(config.num_mel_bins, padded, config.sample_rate, 20.0, 0.0, 100.0, -500.0, 1.0)
        banks = torch.nn.functional.pad(banks, (0, 1))  # kaldi.fbank pads the Nyquist bin the same way
        self.register_buffer("banks", banks.float().T.contiguous(), persistent=False)
        self.bins = bins

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        spectrum = nn.functional.conv1d(waves.float().unsqueeze(1), self.kernel, stride=self.shift)  # [B, 2*bins, T]
        real, imag = spectrum[:, : self.bins], spectrum[:, self.bins :]
        power = (real * real + imag * imag).transpose(1, 2)
        mel = torch.clamp(power @ self.banks, min=torch.finfo(torch.float32).eps).log()
        return (mel - self.config.mean) / self.config.std


class WaveformToLogits(nn.Module):
    """A DASS student with its front end replaced by `ConvKaldiFbank`: waveform [B, samples] -> logits."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.fbank = ConvKaldiFbank(student.config.frontend)
        self.student = student

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.student.readout(self.student.forward_features(self.fbank(waveform)))


def export_student(
    checkpoint: str | os.PathLike, format: str, out: str | os.PathLike, opset: int = 17, use_ema: bool = True
) -> Path:
    """Exports the student in `checkpoint` as `format` ('hf' directory or 'onnx' file) to `out`.

    Everything is checked before anything is written, and the result is built beside `out` and renamed into place,
    so a failed export leaves what was there untouched.
    """
    if format not in FORMATS:
        raise ConfigError(f"--format {format!r}: choose one of {', '.join(FORMATS)}")
    out = Path(out)
    if format == "onnx":
        _check_onnx_target(out, opset)
    else:
        _check_hf_target(out)
    from kd.students.checkpoint import load_student, read_checkpoint

    model, labels = load_student(checkpoint, use_ema=use_ema)
    state = read_checkpoint(checkpoint)
    # Exporters write through temp files (0600): the result gets the umask's modes, so a team can read it.
    if format == "onnx":
        return apply_umask(export_onnx(model, labels, out, opset, student=state["student"]))
    return apply_umask(export_hf(model, labels, state, out))


def _check_hf_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: a file is in the way; a Hugging Face export is a directory (name a new one)")
    if out.is_dir() and any(out.iterdir()) and not _is_hf_export(out):
        raise ConfigError(f"--out {out}: directory holds other files; name a new or empty directory")
    _check_parent(out)


def _is_hf_export(path: Path) -> bool:
    """Whether `path` holds an earlier `kd export --format hf` (which a new export may replace)."""
    from kd.use.hf import MODEL_TYPE

    try:
        return json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type") == MODEL_TYPE
    except (OSError, ValueError, AttributeError):
        return False


def _check_onnx_target(out: Path, opset: int) -> None:
    if out.suffix != ".onnx":
        raise ConfigError(f"--out {out}: an ONNX export needs a .onnx file name")
    if out.is_dir():
        raise ConfigError(f"--out {out}: a directory is in the way; name a .onnx file")
    if not OPSETS.start <= opset < OPSETS.stop:
        raise ConfigError(
            f"--opset {opset}: kd's ONNX export needs an opset from {OPSETS.start} (einsum) to {OPSETS.stop - 1} "
            "(the newest the TorchScript exporter writes)"
        )
    _check_parent(out)


def _check_parent(out: Path) -> None:
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"--out {out}: {parent} is a file, not a directory")
            return


def export_hf(model: nn.Module, labels: LabelSpace, state: dict, out: str | os.PathLike) -> Path:
    """Writes a directory that transformers loads and runs (see docs/commands-eval.md):

    config.json (model type kd-dass, labels, `problem_type` multi-label so pipelines apply a sigmoid, an `auto_map`
    for `trust_remote_code=True`), model.safetensors, preprocessor_config.json (a pass-through feature extractor at
    the student's rate: the front end is inside the model), modeling_kd.py and a model card (README.md).
    """
    from transformers import Wav2Vec2FeatureExtractor

    from kd.use.hf import KdStudentConfig, KdStudentForAudioClassification

    rate = int(model.sample_rate)
    config = KdStudentConfig(
        student=state["student"],
        student_kwargs=state.get("student_kwargs", {}),
        sampling_rate=rate,
        label_mids=list(labels.mids),
        label_space=labels.name,
        readout=model.readout.to_dict(),
        id2label=dict(enumerate(labels.names)),
        label2id={name: i for i, name in enumerate(labels.names)},
        problem_type="multi_label_classification",
    )
    config.auto_map = {
        "AutoConfig": f"{REMOTE_CODE_MODULE}.KdStudentConfig",
        "AutoModelForAudioClassification": f"{REMOTE_CODE_MODULE}.KdStudentForAudioClassification",
    }
    wrapper = KdStudentForAudioClassification(config)
    wrapper.student.load_state_dict(model.state_dict(), strict=True)
    # Raw waveforms in, unchanged (no normalisation): the student's fbank front end is part of the model.
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=rate, padding_value=0.0, do_normalize=False, return_attention_mask=False
    )

    def build(tmp: Path) -> None:
        wrapper.save_pretrained(tmp, safe_serialization=True)
        extractor.save_pretrained(tmp)
        (tmp / f"{REMOTE_CODE_MODULE}.py").write_text(REMOTE_CODE, encoding="utf-8")
        (tmp / "README.md").write_text(model_card(state, labels, rate), encoding="utf-8")

    return _replace_atomically(Path(out), build)


REMOTE_CODE_MODULE = "modeling_kd"
# The directory's code for trust_remote_code=True: kd's own classes (kd must be installed), never a copy of them.
REMOTE_CODE = '''"""kd student classes for transformers' trust_remote_code loading; the code is kd's (install kd)."""

from kd.use.hf import KdStudentConfig, KdStudentForAudioClassification

__all__ = ["KdStudentConfig", "KdStudentForAudioClassification"]
'''


def model_card(state: dict, labels: LabelSpace, rate: int) -> str:
    """A Hugging Face model card: metadata header, how to load it, what it was distilled from, its labels."""
    from kd.students.checkpoint import checkpoint_readout

    config = state.get("config", {})
    ensemble = state.get("ensemble", {})
    teachers = ensemble.get("teachers", [])
    sha = state.get("teacher_sha256", {})
    header = "\n".join(
        [
            "---",
            "library_name: transformers",
            "pipeline_tag: audio-classification",
            "tags: [kd, audio-tagging, knowledge-distillation, audioset]",
            "---",
        ]
    )
    teacher_rows = (
        "\n".join(f"| `{name}` | {weight:g} | `{sha.get(name, '') or 'unknown'}` |" for name, weight in teachers)
        or "| (not recorded in the checkpoint) | | |"
    )
    trained = ", ".join(
        f"{key} {config[key]}"
        for key in ("steps", "batch_size", "lr", "loss", "temperature", "label_weight", "ema_decay", "seed")
        if key in config
    )
    readout_note = (
        " Trained with KL over classes, it reads out logit(softmax): the sigmoid gives each class's share of one "
        "distribution over the classes (they sum to 1), so rank tags or take the top k rather than thresholding at "
        "0.5."
        if checkpoint_readout(state, len(labels)).kind == "softmax"
        else ""
    )
    label_rows = "\n".join(
        f"| {i} | `{mid}` | {name} |" for i, (mid, name) in enumerate(zip(labels.mids, labels.names, strict=True))
    )
    return f"""{header}

# {state["student"]} audio tagger (kd)

A `{state["student"]}` student distilled label-free by kd (offline knowledge distillation of audio taggers) from
stored teacher logits (`kd train-student`), exported with `kd export --format hf`. Multi-label: apply a sigmoid
to the logits (the pipeline does: `problem_type` is `multi_label_classification`).{readout_note}
Input: mono waveforms at {rate} Hz of any length (`input_values` [batch, samples]); the log-mel front end is inside
the model.

## Use

Both ways need kd installed (`pip install kd`), whose code the model runs:

```python
import kd  # registers model type kd-dass with transformers
from transformers import AutoModelForAudioClassification, pipeline

model = AutoModelForAudioClassification.from_pretrained("THIS_DIR")
# or, without importing kd: from_pretrained("THIS_DIR", trust_remote_code=True) (modeling_kd.py imports kd)
tagger = pipeline("audio-classification", model="THIS_DIR", trust_remote_code=True)
tagger({{"array": waveform, "sampling_rate": {rate}}}, top_k=10)
```

## Training

Teachers (the ensemble of the store it was trained from; sha256 of the teacher weights that were dumped):

| teacher | weight | checkpoint sha256 |
|---|---:|---|
{teacher_rows}

Ensemble: combine `{ensemble.get("combine", "?")}`, temperature {ensemble.get("temperature", "?")}.
Store: `{config.get("store", "?")}`. Training: {trained or "not recorded"}; step {state.get("step", "?")};
exported weights: {"EMA" if state.get("ema") is not None else "raw"}. kd {__version__}.

## Labels

{len(labels)} classes ({labels.name}), in output order:

| index | mid | name |
|---:|---|---|
{label_rows}
"""


def _replace_atomically(out: Path, build: Callable[[Path], None]) -> Path:
    """Builds `out` at a temporary sibling path, then swaps it in (replacing an earlier export of the same kind)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        build(tmp)
        if out.is_dir():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.rename(out, old)
            os.rename(tmp, out)
            _remove(old)
        else:
            os.replace(tmp, out)
    finally:
        _remove(tmp)
    return out


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def export_onnx(
    model: nn.Module, labels: LabelSpace, out: str | os.PathLike, opset: int = 17, student: str = ""
) -> Path:
    """Writes an ONNX graph `waveform` [batch, samples] -> `logits` [batch, classes], both axes dynamic.

    The file declares itself in `metadata_props` (ONNX_METADATA_KEY: sample rate, waveform input, the label space),
    so `kd predict onnx:FILE` and the ONNX teacher need no sidecar for kd's own exports.
    """
    if not hasattr(model, "forward_features") or not hasattr(model, "config"):
        raise ConfigError("ONNX export supports DASS students (a front end config and forward_features)")
    out = Path(out)
    _check_onnx_target(out, opset)
    wrapped = WaveformToLogits(model.eval()).eval()
    example = torch.randn(1, int(model.sample_rate)) * 0.1  # 1 s: the trace costs time per example frame
    declaration = {
        "sample_rate": int(model.sample_rate),
        "frontend": "waveform",
        "output": "logits",
        "labels": labels.to_json(),
    }

    def build(tmp: Path) -> None:
        import onnx

        with torch.enable_grad():  # see the module docstring: keeps length-dependent no-grad loops out of the trace
            # The TorchScript exporter (dynamo=False) keeps the time axis dynamic; docs/commands-eval.md says why
            # not dynamo yet, and tests/use/test_export.py fails loudly once this path is gone.
            torch.onnx.export(
                wrapped,
                (example,),
                str(tmp),
                input_names=["waveform"],
                output_names=["logits"],
                dynamic_axes={"waveform": {0: "batch", 1: "samples"}, "logits": {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
        graph = onnx.load(str(tmp))
        for key, value in {
            ONNX_METADATA_KEY: json.dumps(declaration),
            "kd_version": __version__,
            "kd_student": student,
        }.items():
            graph.metadata_props.add(key=key, value=value)
        graph.doc_string = f"kd student {student}: waveform [batch, samples] at {model.sample_rate} Hz -> logits"
        onnx.save(graph, str(tmp))

    return _replace_atomically(out, build)
