"""`kd env`: what a bug report needs: versions, devices, selective-scan backends (and why one is unavailable), and
the directories kd reads weights and labels from."""

from __future__ import annotations

import os
import platform
from importlib import metadata

# Packages whose versions change results or decide what runs; optional ones show as "not installed".
PACKAGES = (
    "torch",
    "torchaudio",
    "zarr",
    "numcodecs",
    "numpy",
    "dask",
    "distributed",
    "soundfile",
    "transformers",
    "mamba-ssm",
    "onnxruntime",
    "ai-edge-litert",
    "tensorboard",
)


def describe_environment() -> dict[str, dict[str, str]]:
    """Sections of name -> text: versions, devices, scan backends, paths."""
    import torch

    from kd.core.labels import AUDIOSET_LABELS_ENV, packaged_audioset_csv
    from kd.core.version import __version__
    from kd.core.weights import weights_cache_dir
    from kd.students import scan_kernel
    from kd.students.scan import scan_backends

    versions = {"python": platform.python_version(), "kd": __version__}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    devices = {"platform": platform.platform(), "cpu cores": str(os.cpu_count())}
    if torch.cuda.is_available():
        devices["cuda"] = f"{torch.version.cuda}, {torch.cuda.device_count()} device(s)"
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            devices[f"cuda:{i}"] = f"{props.name}, {props.total_memory / 2**30:.1f} GiB"
    else:
        devices["cuda"] = "not available" + (
            f" (torch built for CUDA {torch.version.cuda})" if torch.version.cuda else ""
        )
    mps = getattr(torch.backends, "mps", None)
    devices["mps"] = "available" if mps is not None and mps.is_available() else "not available"
    backends = {name: "available" if reason is None else reason for name, reason in scan_backends().items()}
    backends["chunked on CPU, outside autograd"] = scan_kernel.describe()
    labels = os.environ.get(AUDIOSET_LABELS_ENV)
    paths = {
        "weights cache": str(weights_cache_dir()) + ("" if weights_cache_dir().is_dir() else " (not created yet)"),
        "AudioSet labels": f"{labels} (${AUDIOSET_LABELS_ENV})" if labels else f"{packaged_audioset_csv()} (shipped)",
        "Hugging Face cache": os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")),
    }
    return {"versions": versions, "devices": devices, "scan backends": backends, "paths": paths}
