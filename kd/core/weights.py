"""Finding model weights: an explicit path, the kd cache, or a pinned release URL; loading them safely."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from kd.core.cache import cache_root
from kd.core.download import download, sha256_of
from kd.core.errors import WeightsError


@dataclass(frozen=True)
class WeightSource:
    """Where a model's weights come from: a cache file name, the upstream URL, and the pinned sha256."""

    filename: str
    url: str | None = None
    sha256: str | None = None


def weights_cache_dir() -> Path:
    return cache_root() / "weights"


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


def load_checkpoint_object(path: str | os.PathLike) -> object:
    """Whatever a PyTorch file holds, loaded on the CPU with `weights_only=True` (no code from the file runs)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt or foreign file
        raise WeightsError(f"{path}: not a loadable PyTorch checkpoint ({type(e).__name__}: {e})") from None


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Loads a PyTorch checkpoint with `weights_only=True`, unwrapping the usual {'model': ...} containers."""
    obj = load_checkpoint_object(path)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a state_dict, found {type(obj).__name__}")
    return obj


def file_sha256(path: str | os.PathLike) -> str:
    return sha256_of(path)


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state_dict from a `.safetensors` file (Hugging Face) or a PyTorch file (.pt/.pth/.bin/.ckpt, weights_only)."""
    if Path(path).suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise WeightsError(f"{path}: not a readable safetensors file ({e})") from None
    return load_state_dict(path)


def load_strict(
    module: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: object, model: str = "the model"
) -> None:
    """`module.load_state_dict(strict=True)`, refusing missing, unexpected or misshapen keys in one WeightsError line.

    Args:
        module: what receives the weights.
        state_dict: the weights, with `module`'s key names.
        source: where they came from (a path), named first in the message.
        model: what `module` is, for the message ('the BEATs model').
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = [k for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        details = [
            f"{name} {len(keys)} (first: {keys[0]})"
            for name, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        ]
        if wrong:
            k = wrong[0]
            shapes = f"{tuple(state_dict[k].shape)}, expected {tuple(expected[k].shape)}"
            details.append(f"wrong shape {len(wrong)} (first: {k} {shapes})")
        raise WeightsError(f"{source}: weights don't fit {model}: {'; '.join(details)}")
    module.load_state_dict(state_dict, strict=True)
