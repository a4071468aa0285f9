"""Converts released DASS checkpoints (original repository or Hugging Face port) to kd's `Dass` state_dict.

Key names and shapes are those of upstream's code:
- original: github.com/Saurabhbhati/DASS @ 246c9f419caed161243d97da933dcbf90159b93c, `src/models/ast_models.py`
  (`DASS.v` is a `VSSM`, saved from `nn.DataParallel`, hence `module.v.`) and `src/models/vmamba.py` (VSSM with
  `patchembed_version="v2"` -> `patch_embed.{0,2,5,7}`, `downsample_version="v3"` -> `downsample.{1,3}`,
  `classifier.{norm,head}`, SS2D parameters `x_proj_weight` [4, R + 2N, D], `dt_projs_weight` [4, D, R]).
- Hugging Face: github.com/Saurabhbhati/transformers-DASS @ 026609335df78498406a154f947c30e5b1b06fa6,
  `modeling_dass.py` and `convert_dass_original_pytorch_checkpoint_to_pytorch.py` (`dass.` prefix,
  `patch_embeddings.projection.{0,1,3,4}`, `downsample.{down,norm}`, grouped linears `op.x_proj.weight`
  [4 * (R + 2N), D] and `op.dt_projs.weight` [4 * D, R], head at top level `head.`).

The converted dict must then load with `strict=True`; `load_upstream_dass` does both and says what did not match.
"""

from __future__ import annotations

import os
import re

import torch

from kd.core.errors import WeightsError
from kd.core.weights import load_state_dict

_ORIGINAL_RULES: list[tuple[str, str]] = [
    (r"^patch_embed\.0\.", "patch_embed.conv1."),
    (r"^patch_embed\.2\.", "patch_embed.norm1."),
    (r"^patch_embed\.5\.", "patch_embed.conv2."),
    (r"^patch_embed\.7\.", "patch_embed.norm2."),
    (r"^(layers\.\d+)\.downsample\.1\.", r"\1.downsample.conv."),
    (r"^(layers\.\d+)\.downsample\.3\.", r"\1.downsample.norm."),
    (r"^classifier\.norm\.", "norm."),
    (r"^classifier\.head\.", "head."),
]

_HF_RULES: list[tuple[str, str]] = [
    (r"^dass\.patch_embeddings\.projection\.0\.", "patch_embed.conv1."),
    (r"^dass\.patch_embeddings\.projection\.1\.", "patch_embed.norm1."),
    (r"^dass\.patch_embeddings\.projection\.3\.", "patch_embed.conv2."),
    (r"^dass\.patch_embeddings\.projection\.4\.", "patch_embed.norm2."),
    (r"^dass\.(layers\.\d+)\.downsample\.down\.", r"\1.downsample.conv."),
    (r"^dass\.(layers\.\d+)\.downsample\.norm\.", r"\1.downsample.norm."),
    (r"\.op\.x_proj\.weight$", ".op.x_proj_weight"),
    (r"\.op\.dt_projs\.weight$", ".op.dt_projs_weight"),
    (r"^dass\.", ""),
]


def detect_layout(state_dict: dict[str, torch.Tensor]) -> str:
    """'original', 'hf' or 'kd', from the key names."""
    keys = list(state_dict)
    if any(k.startswith("dass.") for k in keys):
        return "hf"
    if any(".classifier.head." in f".{k}" or k.startswith(("module.v.", "v.")) for k in keys):
        return "original"
    if any(k.startswith("patch_embed.conv1.") for k in keys):
        return "kd"
    raise WeightsError(
        "not a DASS state_dict: expected keys like 'module.v.patch_embed.0.weight' (original), "
        "'dass.patch_embeddings.projection.0.weight' (Hugging Face) or 'patch_embed.conv1.weight' (kd)"
    )


def convert_dass_state_dict(
    state_dict: dict[str, torch.Tensor], reference: dict[str, torch.Tensor] | None = None, layout: str = "auto"
) -> dict[str, torch.Tensor]:
    """Renames an upstream DASS state_dict to kd's `Dass` names.

    Args:
        state_dict: original (`module.v.` or bare VSSM keys) or Hugging Face (`dass.` keys) naming.
        reference: the target model's state_dict; when given, tensors with the same number of elements are viewed
            to its shapes (upstream's Linear2d and the HF grouped linears store some weights flattened).
        layout: 'original', 'hf', 'kd' or 'auto' (detected from the keys).
    """
    layout = detect_layout(state_dict) if layout == "auto" else layout
    rules = {"original": _ORIGINAL_RULES, "hf": _HF_RULES, "kd": []}.get(layout)
    if rules is None:
        raise WeightsError(f"unknown DASS checkpoint layout {layout!r}; use original, hf, kd or auto")
    converted = {}
    for key, value in state_dict.items():
        if layout == "original":
            key = re.sub(r"^(module\.)?v\.", "", key)
        for pattern, replacement in rules:
            key = re.sub(pattern, replacement, key)
        if reference is not None and key in reference:
            target = reference[key].shape
            if value.shape != target and value.numel() == reference[key].numel():
                value = value.reshape(target)
        converted[key] = value
    return converted


def load_upstream_dass(model: torch.nn.Module, source: str | os.PathLike | dict[str, torch.Tensor]) -> str:
    """Loads a released DASS checkpoint (file or state_dict, any supported layout) into `model`, strictly.

    Returns the detected layout. Raises WeightsError naming the missing, unexpected and mis-shaped keys.
    """
    state_dict = source if isinstance(source, dict) else load_state_dict(source)
    name = "state_dict" if isinstance(source, dict) else str(source)
    layout = detect_layout(state_dict)
    reference = model.state_dict()
    converted = convert_dass_state_dict(state_dict, reference, layout)
    missing = sorted(set(reference) - set(converted))
    unexpected = sorted(set(converted) - set(reference))
    shapes = [
        f"{k}: {tuple(converted[k].shape)} vs {tuple(v.shape)}"
        for k, v in reference.items()
        if k in converted and converted[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        raise WeightsError(
            f"{name}: does not match this DASS ({layout} layout): missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"shape mismatches {shapes[:5]}; check the model size (dass-small / dass-medium) and num_classes"
        )
    model.load_state_dict(converted, strict=True)
    return layout
