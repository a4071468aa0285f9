"""Errors that reach the user as one line: the CLI prints them and exits with code 2."""


class KdError(Exception):
    """Base of every error caused by the user's input (a file, a flag, a store); never a bug in kd."""


class AudioError(KdError):
    """A file could not be decoded as audio."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ManifestError(KdError):
    """A manifest is malformed or refers to files, ids or labels that don't exist."""


class LabelError(KdError):
    """A label file is missing or malformed."""


class WeightsError(KdError):
    """Model weights could not be found, verified or loaded."""


class StoreError(KdError):
    """A logit store is missing, incompatible or inconsistent."""


class StoreDamaged(StoreError):
    """Part of a store exists but cannot be read or holds impossible values; `detail` names the part."""

    def __init__(self, store: object, detail: str) -> None:
        super().__init__(
            f"{store}: {detail}; the store is damaged: run `kd store verify {store}` and re-dump what it lists"
        )
        self.detail = detail


class ConfigError(KdError):
    """A configuration value is out of range or contradicts another."""


class TrainingError(KdError):
    """Training cannot go on without damaging the run (for example a non-finite loss); nothing bad was written."""
