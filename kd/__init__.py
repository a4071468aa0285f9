"""kd: offline knowledge distillation of audio taggers."""

__version__ = "0.1.0"

from kd import hf_autoregister

# `import kd` then AutoModelForAudioClassification.from_pretrained(a `kd export --format hf` directory) just works.
hf_autoregister.install()
