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

import math
import os
from pathlib import Path

import torch
from torch import nn

from kd.errors import ConfigError
from kd.frontends import KaldiFbankConfig
from kd.permissions import apply_umask

FORMATS = ("hf", "onnx")
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
        return self.student.forward_features(self.fbank(waveform))


def export_student(
    checkpoint: str | os.PathLike, format: str, out: str | os.PathLike, opset: int = 17, use_ema: bool = True
) -> Path:
    """Exports the student in `checkpoint` as `format` ('hf' directory or 'onnx' file) to `out`."""
    if format not in FORMATS:
        raise ConfigError(f"--format {format!r}: choose one of {', '.join(FORMATS)}")
    from kd.checkpoint import load_student, read_checkpoint

    model, labels = load_student(checkpoint, use_ema=use_ema)
    # Exporters write through temp files (0600): the result gets the umask's modes, so a team can read it.
    if format == "onnx":
        return apply_umask(export_onnx(model, out, opset))
    state = read_checkpoint(checkpoint)
    return apply_umask(export_hf(model, labels, state["student"], state.get("student_kwargs", {}), out))


def export_hf(model: nn.Module, labels: object, student: str, student_kwargs: dict, out: str | os.PathLike) -> Path:
    """Writes `out`/config.json and `out`/model.safetensors, loadable by AutoModelForAudioClassification after
    `import kd.hf`."""
    from kd.hf import KdStudentConfig, KdStudentForAudioClassification

    config = KdStudentConfig(
        student=student,
        student_kwargs=student_kwargs,
        sampling_rate=int(model.sample_rate),
        label_mids=list(labels.mids),
        id2label=dict(enumerate(labels.names)),
        label2id={name: i for i, name in enumerate(labels.names)},
    )
    wrapper = KdStudentForAudioClassification(config)
    wrapper.student.load_state_dict(model.state_dict(), strict=True)
    out = Path(out)
    wrapper.save_pretrained(out, safe_serialization=True)
    return out


def export_onnx(model: nn.Module, out: str | os.PathLike, opset: int = 17) -> Path:
    """Writes an ONNX graph `waveform` [batch, samples] -> `logits` [batch, classes], both axes dynamic."""
    if not hasattr(model, "forward_features") or not hasattr(model, "config"):
        raise ConfigError("ONNX export supports DASS students (a front end config and forward_features)")
    out = Path(out)
    if out.suffix != ".onnx":
        raise ConfigError(f"--out {out}: an ONNX export needs a .onnx file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    wrapped = WaveformToLogits(model.eval()).eval()
    example = torch.randn(1, int(model.sample_rate)) * 0.1  # 1 s: the trace costs time per example frame
    with torch.enable_grad():  # see the module docstring: keeps length-dependent no-grad loops out of the trace
        torch.onnx.export(
            wrapped,
            (example,),
            str(out),
            input_names=["waveform"],
            output_names=["logits"],
            dynamic_axes={"waveform": {0: "batch", 1: "samples"}, "logits": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    return out
