"""Finding model weights: an explicit path, the kd cache, or a pinned release URL; loading them safely."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from kd.download import download, sha256_of
from kd.errors import WeightsError


@dataclass(frozen=True)
class WeightSource:
    """Where a model's weights come from: a cache file name, the upstream URL, and the pinned sha256."""

    filename: str
    url: str | None = None
    sha256: str | None = None


def weights_cache_dir() -> Path:
    return Path(os.environ.get("KD_CACHE", Path.home() / ".cache" / "kd")) / "weights"


def local_weights(source: WeightSource) -> Path | None:
    """The cached copy of `source`, if present."""
    path = weights_cache_dir() / source.filename
    return path if path.is_file() else None


def resolve_weights(source: WeightSource, checkpoint: str | os.PathLike | None = None) -> Path:
    """Returns a local path to the weights: `checkpoint` if given, else the cache, else a verified download."""
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.exists():
            raise WeightsError(f"{path}: checkpoint not found")
        return path
    if (cached := local_weights(source)) is not None:
        return cached
    target = weights_cache_dir() / source.filename
    if source.url is None:
        raise WeightsError(f"no weights for {source.filename}: pass --checkpoint PATH or put the file at {target}")
    try:
        return download(source.url, target, sha256=source.sha256)
    except OSError as e:
        raise WeightsError(
            f"cannot download {source.url} ({e}); pass --checkpoint PATH or put the file at {target}"
        ) from None


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Loads a PyTorch checkpoint with `weights_only=True`, unwrapping the usual {'model': ...} containers."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt or foreign file
        raise WeightsError(f"{path}: not a loadable PyTorch checkpoint ({type(e).__name__}: {e})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a state_dict, found {type(obj).__name__}")
    return obj


def file_sha256(path: str | os.PathLike) -> str:
    return sha256_of(path)
