"""kd: offline knowledge distillation of audio taggers.

From Python: `kd.dump_teachers`, `kd.train_student`, `kd.evaluate`, `kd.predict` (and `kd.load_tagger`, the config
builders `kd.dump_config`, `kd.train_config`, and `kd.DumpConfig`, `kd.TrainConfig`): see `kd.api`.
"""

from kd.core.version import __version__
from kd.use import hf_autoregister

# `import kd` then AutoModelForAudioClassification.from_pretrained(a `kd export --format hf` directory) just works.
hf_autoregister.install()

API = (
    "DumpConfig",
    "TrainConfig",
    "dump_config",
    "dump_teachers",
    "train_config",
    "train_student",
    "evaluate",
    "predict",
    "load_tagger",
)


def __getattr__(name: str) -> object:
    # Loaded on first use: every `kd` command imports this package, and `kd.entry` must check that torch loads
    # before anything imports it.
    if name not in API:
        raise AttributeError(f"module 'kd' has no attribute {name!r}")
    from kd import api

    value = getattr(api, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *API})


__all__ = ["__version__", *API]
