"""Registers kd's Hugging Face classes with transformers' Auto classes whenever transformers gets imported.

`import kd` must be enough for `AutoModelForAudioClassification.from_pretrained(kd_export_dir)`, in either import
order, yet importing transformers costs seconds that no other kd command should pay. So `kd/__init__.py` registers at
once when transformers is already loaded, and otherwise leaves this finder on `sys.meta_path`, which runs
`import kd.use.hf` right after transformers' own `__init__` has executed (the post-import hook pattern).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType


def _register() -> None:
    try:
        import kd.use.hf  # noqa: F401 - importing it registers model type kd-dass
    except ImportError as e:  # a broken optional stack must not break the user's `import transformers`
        warnings.warn(f"kd: could not register kd models with transformers ({e})", stacklevel=3)


class _RegisterAfterTransformers(importlib.abc.MetaPathFinder):
    """Finds `transformers` with the other finders and wraps its loader so kd registers once it is loaded."""

    def find_spec(self, name: str, path: object, target: ModuleType | None = None) -> importlib.machinery.ModuleSpec:
        if name != "transformers":
            return None
        sys.meta_path.remove(self)  # one shot; also keeps find_spec below from finding this finder again
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module: ModuleType) -> None:
            exec_module(module)
            _register()

        spec.loader.exec_module = exec_then_register
        return spec


def install() -> None:
    """Registers now if transformers is loaded, else on its first import."""
    if "transformers" in sys.modules:
        _register()
    elif not any(isinstance(f, _RegisterAfterTransformers) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterTransformers())
