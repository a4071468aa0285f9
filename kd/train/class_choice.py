"""`--classes`: which of the store's classes a student is taught, chosen at training time like the ensemble.

A student for one domain need not fit the teachers over all 527 AudioSet classes: a small student that underfits
its teacher spends its capacity on classes the domain never uses (ESC-50: 59 of 527 classes are ever labelled).
Choosing the classes is not using labels: no clip's label enters the loss, only the vocabulary (or, with top:N,
not even that: the teachers' own mean output picks it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from kd.core.errors import ConfigError
from kd.core.labels import LabelSpace

CLASS_FORMS = "'manifest', 'top:N', a file of class names (one per line) or names joined by ';'"


def resolve_classes(
    text: str | None,
    labels: LabelSpace,
    clip_labels: list[tuple[str, ...]],
    mean_probability: Callable[[], torch.Tensor],
) -> tuple[int, ...] | None:
    """The sorted store class indices `text` names, or None (every class) when it names none.

    Args:
        text: 'manifest' (every class some clip of the store's manifest is labelled with), 'top:N' (the N classes
            of highest mean teacher probability over the training views), a file with one class per line, or
            class names / mids joined by ';' (the manifest's own label syntax).
        labels: the store's label space.
        clip_labels: the store manifest's labels per clip.
        mean_probability: [C] mean ensemble target over the training views; called only for 'top:N'.
    """
    if text is None:
        return None
    if text == "manifest":
        names = sorted({name for clip in clip_labels for name in clip})
        if not names:
            raise ConfigError("--classes manifest: the store's manifest has no labels; name the classes instead")
        return _indices(names, labels, "the store's manifest")
    if text.startswith("top:"):
        count = text[4:]
        if not count.isdigit() or not 0 < int(count) <= len(labels):
            raise ConfigError(f"--classes {text}: N must be a whole number from 1 to {len(labels)}")
        mean = mean_probability()
        order = torch.argsort(mean, descending=True, stable=True)[: int(count)]
        return tuple(sorted(int(i) for i in order))
    path = Path(text)
    if path.is_file():
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not names:
            raise ConfigError(f"--classes {text}: the file names no classes")
        return _indices(names, labels, str(path))
    names = [name.strip() for name in text.split(";") if name.strip()]
    if not names:
        raise ConfigError(f"--classes {text!r}: give {CLASS_FORMS}")
    return _indices(names, labels, "--classes")


def _indices(names: list[str], labels: LabelSpace, source: str) -> tuple[int, ...]:
    unknown = [name for name in names if name not in labels]
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:3]) + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
        raise ConfigError(
            f"--classes: {shown} from {source} not in the store's {len(labels)} classes "
            f"({labels.name}); use their display names or mids, or give {CLASS_FORMS}"
        )
    return tuple(sorted({labels.index(name) for name in names}))
