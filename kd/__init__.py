"""kd: offline knowledge distillation of audio taggers."""

__version__ = "0.1.0"
