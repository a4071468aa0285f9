"""Downloads into the kd cache: atomic (temp file + rename) and checked against a pinned sha256."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

from kd.core.permissions import follow_umask


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, target: Path, sha256: str | None = None, timeout: float = 30.0) -> Path:
    """Downloads `url` to `target`; raises OSError on network failure or a checksum mismatch."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while block := response.read(1 << 20):
                out.write(block)
            out.flush()
            follow_umask(out.fileno())
            os.fsync(out.fileno())
        if sha256 is not None and (actual := sha256_of(tmp)) != sha256:
            raise OSError(f"sha256 mismatch for {url}: expected {sha256}, got {actual}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
