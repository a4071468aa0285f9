"""The linear recurrence h_t = a_t h_{t-1} + x_t as one compiled C loop, for CPU tensors outside autograd.

On a CPU the recurrence is memory-bound, and as PyTorch ops every time step is an op of its own: the chunked form
in `kd.students.linear_scan` keeps the op count fixed but reads its inputs twice and pays a dispatch per step of a
chunk. A plain loop over time, vectorised over the contiguous row of each step, reads each input once. It is built
on first use with the system C compiler (`$CC`, else `cc`; about 0.2 s), kept in `$KD_CACHE/kernels` under a hash
of its source and flags, and called through ctypes, so kd ships no binary and needs no build step. Without a
compiler (or with `KD_SCAN_KERNEL=0`) `unavailable()` says why and kd scans with PyTorch ops.

Results are those of the step-by-step recurrence in the input's precision: `-ffp-contract=off` keeps every
a * h + x a rounded multiply then a rounded add (no fused multiply-add), as `x + a * h` computes it in PyTorch and
as the `reference` backend does, on any CPU.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import torch

from kd.core.cache import cache_root

ENV = "KD_SCAN_KERNEL"

SOURCE = r"""
#define SCAN(NAME, T)                                                                                  \
    void NAME(T *x, const T *a, long long outer, long long length, long long width, long long lo,      \
              long long hi) {                                                                          \
        for (long long o = 0; o < outer; o++)                                                          \
            for (long long t = 1; t < length; t++) {                                                     \
                T *h = x + (o * length + t) * width;                                                   \
                const T *prev = h - width, *decay = a + (o * length + t) * width;                      \
                for (long long i = lo; i < hi; i++) h[i] += decay[i] * prev[i];                        \
            }                                                                                          \
    }
SCAN(kd_scan_f32, float)
SCAN(kd_scan_f64, double)
"""

FLAGS = ("-O3", "-ffp-contract=off", "-shared", "-fPIC")

MIN_SPLIT = 1 << 16
"""A scan is split by columns (which are independent) over torch's intra-op threads only where each thread gets at
least this many elements; below that, handing the work out costs more than it saves."""


def unavailable() -> str | None:
    """None when the compiled loop can run here, else why not (shown by `kd env` and `kd students`)."""
    lib = _library()
    return lib if isinstance(lib, str) else None


def describe() -> str:
    """How the chunked backend scans CPU tensors outside autograd here, for `kd env` and `kd students`."""
    lib = _library()
    return f"PyTorch ops ({lib})" if isinstance(lib, str) else f"compiled C loop ({lib._name})"


def runs_on(t: torch.Tensor) -> bool:
    """Whether `scan_` can scan tensors like t: the loop is built and on, t is a float32 or float64 CPU tensor."""
    return _ON[0] and t.device.type == "cpu" and t.dtype in _NAMES and not isinstance(_library(), str)


@contextmanager
def turned_off() -> Iterator[None]:
    """Scans with PyTorch ops while active, as where no compiler is (benchmarks and tests compare the two)."""
    _ON[0] = False
    try:
        yield
    finally:
        _ON[0] = True


def scan_(decay: torch.Tensor, x: torch.Tensor, time_dim: int = 0) -> None:
    """h_t = decay_t * h_{t-1} + x_t along `time_dim` of contiguous tensors of one shape, in place: x becomes h.
    `runs_on(x)` must hold."""
    if not (runs_on(x) and decay.dtype == x.dtype and decay.shape == x.shape and x.dim() > time_dim):
        raise ValueError(f"scan_: needs two {tuple(x.shape)} float CPU tensors of one dtype and a built loop")
    if not (x.is_contiguous() and decay.is_contiguous()):
        raise ValueError("scan_: needs contiguous tensors")
    outer, length, width = x.shape[:time_dim].numel(), x.shape[time_dim], x.shape[time_dim + 1 :].numel()
    run = getattr(_library(), _NAMES[x.dtype])
    pointers = ctypes.c_void_p(x.data_ptr()), ctypes.c_void_p(decay.data_ptr()), outer, length, width
    parts = min(torch.get_num_threads(), x.numel() // MIN_SPLIT)
    if parts <= 1:
        run(*pointers, 0, width)
        return
    # ctypes releases the GIL, so threads scan disjoint column ranges in parallel; 16-element edges keep each
    # range's rows aligned for the vector loop.
    edges = [min(width, -(-width * i // parts) // 16 * 16) for i in range(parts)] + [width]
    list(_pool(parts, os.getpid()).map(lambda span: run(*pointers, *span), zip(edges, edges[1:], strict=False)))


_NAMES = {torch.float32: "kd_scan_f32", torch.float64: "kd_scan_f64"}
_ON = [True]


@functools.cache
def _pool(threads: int, pid: int) -> ThreadPoolExecutor:
    """Keyed by process too: a forked child inherits the parent's pool object but none of its threads."""
    return ThreadPoolExecutor(threads, thread_name_prefix="kd-scan")


@functools.cache
def _library() -> ctypes.CDLL | str:
    """The loaded library, or the reason there is none."""
    if os.environ.get(ENV, "1") == "0":
        return f"compiled CPU scan disabled by {ENV}=0"
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        return f"no C compiler ({os.environ.get('CC', 'cc')}) on PATH to build the CPU scan; set CC or install gcc"
    key = hashlib.sha256("\0".join((SOURCE, *FLAGS, compiler, platform.machine())).encode()).hexdigest()[:16]
    path = cache_root() / "kernels" / f"linear_scan-{key}.so"
    if not path.is_file():
        try:
            _build(compiler, path)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"building the CPU scan with {compiler} failed: {str(exc).strip().splitlines()[0]}"
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        return f"loading the CPU scan {path} failed: {exc}"
    for name in _NAMES.values():
        getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_longlong] * 5
        getattr(lib, name).restype = None
    return lib


def _build(compiler: str, path: Path) -> None:
    """Compiles next to `path` and renames into place, so processes building at once never load a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as work:
        source = Path(work) / "linear_scan.c"
        source.write_text(SOURCE)
        done = subprocess.run(
            [compiler, *FLAGS, str(source), "-o", str(Path(work) / "out.so")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise subprocess.SubprocessError(done.stderr or f"exit code {done.returncode}")
        os.replace(Path(work) / "out.so", path)
