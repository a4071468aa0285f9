"""Registries of named model builders (in the manner of timm's `register_model` / `create_model`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from kd.core.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to builder functions; `kind` names what is built, for error messages."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._builders: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(builder: Callable[..., T]) -> Callable[..., T]:
            if name in self._builders:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._builders[name] = builder
            return builder

        return decorator

    def create(self, name: str, **kwargs: object) -> T:
        """Builds `name`; a name `prefix:arg` whose prefix is registered calls that builder with checkpoint=arg.

        (`onnx:/models/tagger.onnx`, `ast/hf:MIT/ast-finetuned-audioset-10-10-0.4593`.)
        """
        builder = self._builders.get(name)
        if builder is not None:
            return builder(**kwargs)
        prefix, sep, arg = name.partition(":")
        if sep and prefix in self._builders:
            if kwargs.get("checkpoint") is not None:
                raise ConfigError(f"{self.kind} {name!r} already names its weights; drop --checkpoint")
            return self._builders[prefix](**{**kwargs, "checkpoint": arg})
        raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name: str) -> bool:
        return name in self._builders

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
