"""YAMNet teacher: Google's 521-class AudioSet tagger, run from its TFLite release with YAMNet's own windowing.

The TFLite graph holds the whole front end (16 kHz waveform -> 25 ms / 10 ms STFT -> 64 log-mel bins -> one 0.96 s
patch), so kd feeds it raw 16 kHz samples, 15600 (0.975 s) per call. A clip is cut into those windows exactly as
upstream's `features.pad_waveform` does (tensorflow/models, research/audioset/yamnet/features.py at commit
64f40ce19bbb9e7421b82f99e8f3cd17bbfa736f): one window of 0.96 s of patch plus the last STFT frame, hopped by 0.48 s,
the tail zero-padded to a whole hop. Per-window scores are averaged over the clip, as upstream's `inference.py` does,
and returned as logits of that mean probability.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from kd.core.errors import KdError, LabelError, WeightsError
from kd.core.labels import LabelMapping, LabelSpace, audioset_labels, load_label_names
from kd.core.weights import WeightSource, file_sha256, resolve_weights
from kd.teachers.base import Teacher, TeacherCard, register_teacher
from kd.teachers.catalog import ENTRIES, TeacherEntry

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 15600  # 0.96 s patch (96 frames of 10 ms) + 25 ms STFT window - 10 ms hop, at 16 kHz
HOP_SAMPLES = 7680  # 0.48 s patch hop
NUM_CLASSES = 521
# The released graph quantises its output scores to steps of 1/256, so exact 0 and 1 occur; the floor keeps logits
# finite (logit(1e-6) = -13.8) while staying far below the smallest non-zero score any clip can average to.
PROBABILITY_FLOOR = 1e-6
METADATA_LABEL_FILE = "yamnet_label_list.txt"
SIDE_LABEL_FILE = "yamnet_521_labels.txt"

YAMNET_WEIGHTS = WeightSource(
    filename="yamnet.tflite",
    url="https://storage.googleapis.com/mediapipe-assets/yamnet_audio_classifier_with_metadata.tflite"
    "?generation=1661875980774466",
    sha256="10c95ea3eb9a7bb4cb8bddf6feb023250381008177ac162ce169694d05c317de",
)


def yamnet_windows(wave: np.ndarray) -> np.ndarray:
    """Cuts one waveform into YAMNet's windows [windows, 15600], zero-padding as upstream's `pad_waveform` does."""
    extra = max(0, len(wave) - WINDOW_SAMPLES)
    num_windows = 1 + math.ceil(extra / HOP_SAMPLES)
    padded_length = WINDOW_SAMPLES + (num_windows - 1) * HOP_SAMPLES
    padded = np.zeros(padded_length, dtype=np.float32)
    padded[: len(wave)] = wave
    starts = np.arange(num_windows) * HOP_SAMPLES
    return np.stack([padded[s : s + WINDOW_SAMPLES] for s in starts])


def probabilities_to_logits(probabilities: torch.Tensor) -> torch.Tensor:
    """Inverse sigmoid of clip-level probabilities, clamped so that 0 and 1 give finite logits."""
    p = probabilities.double().clamp(PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)
    return torch.log(p / (1.0 - p)).float()


def load_yamnet_labels(model_path: str | os.PathLike, labels_path: str | os.PathLike | None = None) -> LabelSpace:
    """YAMNet's 521 class names from `labels_path`, else the label list in the TFLite metadata, else a file beside it.

    The released .tflite is also a zip archive whose member `yamnet_label_list.txt` is the label list.
    """
    if labels_path is not None:
        labels = load_label_names(labels_path, "yamnet")
    else:
        labels = _metadata_labels(Path(model_path))
        if labels is None:
            beside = Path(model_path).with_name(SIDE_LABEL_FILE)
            if not beside.is_file():
                raise LabelError(
                    f"{model_path}: no label list in the model's metadata and no {SIDE_LABEL_FILE} beside it; "
                    "pass labels_path=PATH (one class name per line)"
                )
            labels = load_label_names(beside, "yamnet")
    if len(labels) != NUM_CLASSES:
        raise LabelError(f"{labels_path or model_path}: YAMNet has {NUM_CLASSES} classes, label list has {len(labels)}")
    return labels


def _metadata_labels(model_path: Path) -> LabelSpace | None:
    if not zipfile.is_zipfile(model_path):
        return None
    with zipfile.ZipFile(model_path) as archive:
        if METADATA_LABEL_FILE not in archive.namelist():
            return None
        text = archive.read(METADATA_LABEL_FILE).decode("utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    return LabelSpace(name="yamnet", mids=("",) * len(names), names=names)


def yamnet_audioset_mapping(labels: LabelSpace, target: LabelSpace | None = None) -> LabelMapping:
    """Maps YAMNet's classes onto AudioSet's 527 (by exact display name, YAMNet has no mids)."""
    return labels.map_to(target if target is not None else audioset_labels())


def unmapped_yamnet_classes(labels: LabelSpace, target: LabelSpace | None = None) -> list[str]:
    """YAMNet class names that have no AudioSet class of the same name (reported, never silently dropped)."""
    return yamnet_audioset_mapping(labels, target).unmapped_source


class YamnetTeacher(Teacher):
    """Runs the YAMNet TFLite graph window by window and pools scores to one logit vector per clip.

    The graph has a fixed [15600] input and a [1, 521] output (resizing the input still yields one window's
    scores), so windows are run one call at a time; a call costs about 1 ms on one CPU core.
    """

    def __init__(
        self, card: TeacherCard, labels: LabelSpace, model_path: Path, sha256: str, num_threads: int | None
    ) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise KdError("the YAMNet teacher needs the TFLite runtime: pip install kd[tflite]") from None
        self.card = card
        self.labels = labels
        self.checkpoint_sha256 = sha256
        try:
            self._interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise WeightsError(f"{model_path}: not a loadable TFLite model ({e})") from None
        (inp,) = self._interpreter.get_input_details()
        (out,) = self._interpreter.get_output_details()
        if list(inp["shape"]) != [WINDOW_SAMPLES] or list(out["shape"]) != [1, NUM_CLASSES]:
            raise WeightsError(
                f"{model_path}: expected YAMNet's [{WINDOW_SAMPLES}] -> [1, {NUM_CLASSES}] graph, "
                f"found {list(inp['shape'])} -> {list(out['shape'])}"
            )
        self._input_index = inp["index"]
        self._output_index = out["index"]

    def window_scores(self, wave: torch.Tensor) -> np.ndarray:
        """Per-window class probabilities [windows, 521] for one waveform [samples] at 16 kHz."""
        windows = yamnet_windows(wave.detach().cpu().float().numpy())
        scores = np.empty((len(windows), NUM_CLASSES), dtype=np.float32)
        for i, window in enumerate(windows):
            self._interpreter.set_tensor(self._input_index, window)
            self._interpreter.invoke()
            scores[i] = self._interpreter.get_tensor(self._output_index)[0]
        return scores

    def logits(self, waves: torch.Tensor) -> torch.Tensor:
        """Clip-level logits [batch, 521]: logit of the mean window probability (the graph ends in a sigmoid)."""
        pooled = np.stack([self.window_scores(wave).mean(axis=0) for wave in waves])
        return probabilities_to_logits(torch.from_numpy(pooled))

    def num_parameters(self) -> int | None:
        return None  # the TFLite graph does not say which tensors are weights


def yamnet_card() -> TeacherCard:
    """YAMNet's card; it depends on nothing but the pinned release."""
    return TeacherCard(
        name="yamnet",
        sample_rate=SAMPLE_RATE,
        num_classes=NUM_CLASSES,
        label_space="yamnet",
        frontend={
            "type": "yamnet_tflite_windows",
            "window_samples": WINDOW_SAMPLES,
            "hop_samples": HOP_SAMPLES,
            "pad": "zeros to a whole hop (upstream pad_waveform)",
            "pooling": "mean of window probabilities",
            "output": "logit of pooled probability",
            "probability_floor": PROBABILITY_FLOOR,
        },
        weights=YAMNET_WEIGHTS,
        description="YAMNet TFLite (MediaPipe asset with metadata), 521 classes mapped to AudioSet by name",
    )


@register_teacher("yamnet")
def yamnet(
    checkpoint: str | os.PathLike | None = None,
    labels_path: str | os.PathLike | None = None,
    num_threads: int | None = None,
) -> YamnetTeacher:
    """YAMNet (MobileNet v1, 521 AudioSet-derived classes) from its TFLite release with metadata.

    Args:
        checkpoint: the .tflite file; default the kd cache, else a download checked against the pinned sha256.
        labels_path: one class name per line; default the label list inside the model's metadata.
        num_threads: CPU threads for the TFLite interpreter (None: the runtime's default).
    """
    model_path = resolve_weights(YAMNET_WEIGHTS, checkpoint)
    sha256 = file_sha256(model_path)
    if checkpoint is None and sha256 != YAMNET_WEIGHTS.sha256:
        raise WeightsError(f"{model_path}: sha256 {sha256} is not the pinned {YAMNET_WEIGHTS.sha256}; delete it")
    labels = load_yamnet_labels(model_path, labels_path)
    return YamnetTeacher(yamnet_card(), labels, model_path, sha256, num_threads)


ENTRIES["yamnet"] = lambda: TeacherEntry(yamnet_card(), runtime="tflite")
