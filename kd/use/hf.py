"""Hugging Face wrappers of kd students, registered with the Auto classes when this module is imported.

Importing this module registers model type 'kd-dass'; `import kd` imports it as soon as transformers is loaded
(`kd.use.hf_autoregister`). Then `transformers.AutoModelForAudioClassification.from_pretrained(dir)` loads a directory
written by `kd export --format hf` without `trust_remote_code`: the code is kd itself. With `trust_remote_code=True`
the directory's `modeling_kd.py` (which imports these classes) does the same without `import kd`.
"""

from __future__ import annotations

import torch

# torchaudio's kaldi module makes a module-level EPSILON tensor on first import; imported first inside
# from_pretrained's meta-device init, that tensor would be a meta tensor and every fbank call would fail.
import torchaudio.compliance.kaldi  # noqa: F401
from transformers import AutoConfig, AutoModelForAudioClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from kd.students import create_student
from kd.students.readout import Readout

MODEL_TYPE = "kd-dass"


class KdStudentConfig(PretrainedConfig):
    """Names the kd student to build and its constructor arguments; labels go in `id2label` as usual.

    Args:
        student: registered student name ('dass-tiny', 'dass-small', ...).
        student_kwargs: its builder's keyword arguments (num_classes, ...).
        sampling_rate: input rate in Hz.
        label_mids: AudioSet mids of the classes, in output order ('' where unknown).
        label_space: name of the label space ('audioset').
        readout: the student's readout (`kd.students.readout.Readout.to_dict`); None is the plain sigmoid.
    """

    model_type = MODEL_TYPE

    def __init__(
        self,
        student: str = "dass-tiny",
        student_kwargs: dict | None = None,
        sampling_rate: int = 16000,
        label_mids: list[str] | None = None,
        label_space: str = "",
        readout: dict | None = None,
        **kwargs: object,
    ) -> None:
        self.student = student
        self.student_kwargs = dict(student_kwargs or {})
        self.sampling_rate = sampling_rate
        self.label_mids = list(label_mids or [])
        self.label_space = label_space
        self.readout = readout
        super().__init__(**kwargs)


class KdStudentForAudioClassification(PreTrainedModel):
    """A kd student behind the transformers API: `input_values` [batch, samples] at 16 kHz -> `logits`."""

    config_class = KdStudentConfig
    base_model_prefix = "student"
    main_input_name = "input_values"

    def __init__(self, config: KdStudentConfig) -> None:
        super().__init__(config)
        self.student = create_student(config.student, **config.student_kwargs)
        self.student.readout = Readout.from_dict(self.student.num_classes, config.readout)
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        # The student initialises itself in its constructor; exported weights overwrite everything.
        pass

    def forward(
        self, input_values: torch.Tensor, labels: torch.Tensor | None = None, **kwargs: object
    ) -> SequenceClassifierOutput:
        """Multi-label tagging: the loss, when labels (0/1 or soft, [batch, classes]) are given, is BCE with logits."""
        logits = self.student(input_values)
        loss = None
        if labels is not None:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        return SequenceClassifierOutput(loss=loss, logits=logits)


AutoConfig.register(MODEL_TYPE, KdStudentConfig, exist_ok=True)
AutoModelForAudioClassification.register(KdStudentConfig, KdStudentForAudioClassification, exist_ok=True)
