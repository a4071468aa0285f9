"""The linear recurrence h_t = a_t h_{t-1} + x_t as one compiled C loop, for CPU tensors outside autograd.

On a CPU the recurrence is memory-bound, and as PyTorch ops every time step is an op of its own: the chunked form
in `kd.students.linear_scan` keeps the op count fixed but reads its inputs twice and pays a dispatch per step of a
chunk. A plain loop over time, vectorised over the contiguous row of each step, reads each input once. It is built
on first use with the system C compiler (`$CC`, else `cc`; about 0.2 s), kept in `$KD_CACHE/kernels` under a hash
of its source and flags, and called through ctypes, so kd ships no binary and needs no build step. Without a
compiler (or with `KD_SCAN_KERNEL=0`) `unavailable()` says why and kd scans with PyTorch ops. Beside the loop, two
passes of the inference scan are C too, since each saves a full pass over the states: the bias (`add_bias`, which
checks softplus's threshold on the way) and the read-out with the skip term (`read_out`).

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
/* rate[b, t, :] = dt[b, t, :] + bias (bias may be NULL); returns 1 where any result is above 20 or NaN. */
#define BIAS(NAME, T)                                                                                  \
    int NAME(const T *dt, long long sb, long long st, const T *bias, T *rate, long long batch,         \
             long long length, long long dim) {                                                        \
        int over = 0;                                                                                  \
        for (long long b = 0; b < batch; b++)                                                          \
            for (long long t = 0; t < length; t++) {                                                   \
                const T *in = dt + b * sb + t * st;                                                    \
                T *r = rate + (b * length + t) * dim;                                                  \
                for (long long i = 0; i < dim; i++) {                                                  \
                    r[i] = bias ? in[i] + bias[i] : in[i];                                             \
                    over |= !(r[i] <= 20);                                                             \
                }                                                                                      \
            }                                                                                          \
        return over;                                                                                   \
    }
/* y[b, t, g * per + j] = h[b, t, g * per + j] * c[b, t, g] (+ d[ch] * u[b, t, ch] where d is not NULL). */
#define READ(NAME, T)                                                                                  \
    void NAME(const T *h, const T *c, long long cb, long long ct, long long cg, const T *d, const T *u,  \
              long long ub, long long ut, T *y, long long yb, long long yt, long long batch,           \
              long long length, long long groups, long long per) {                                     \
        long long dim = groups * per;                                                                  \
        for (long long b = 0; b < batch; b++)                                                          \
            for (long long t = 0; t < length; t++) {                                                   \
                const T *hr = h + (b * length + t) * dim, *ur = u + b * ub + t * ut;                   \
                T *yr = y + b * yb + t * yt;                                                           \
                for (long long g = 0; g < groups; g++) {                                               \
                    T cv = c[b * cb + t * ct + g * cg];                                                \
                    for (long long j = g * per; j < (g + 1) * per; j++)                                \
                        yr[j] = d ? hr[j] * cv + d[j] * ur[j] : hr[j] * cv;                            \
                }                                                                                      \
            }                                                                                          \
    }
SCAN(kd_scan_f32, float)
SCAN(kd_scan_f64, double)
BIAS(kd_bias_f32, float)
BIAS(kd_bias_f64, double)
READ(kd_read_f32, float)
READ(kd_read_f64, double)
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
    _check(x, decay)
    if decay.shape != x.shape or x.dim() <= time_dim or not (x.is_contiguous() and decay.is_contiguous()):
        raise ValueError(f"scan_: needs two contiguous tensors of one shape with a dim {time_dim}")
    outer, length, width = x.shape[:time_dim].numel(), x.shape[time_dim], x.shape[time_dim + 1 :].numel()
    run = getattr(_library(), f"kd_scan_{_NAMES[x.dtype]}")
    pointers = ctypes.c_void_p(x.data_ptr()), ctypes.c_void_p(decay.data_ptr()), outer, length, width
    parts = min(torch.get_num_threads(), x.numel() // MIN_SPLIT)
    if parts <= 1:
        run(*pointers, 0, width)
        return
    # ctypes releases the GIL, so threads scan disjoint column ranges in parallel; 16-element edges keep each
    # range's rows aligned for the vector loop.
    edges = [min(width, -(-width * i // parts) // 16 * 16) for i in range(parts)] + [width]
    list(_pool(parts, os.getpid()).map(lambda span: run(*pointers, *span), zip(edges, edges[1:], strict=False)))


def add_bias(dt: torch.Tensor, bias: torch.Tensor | None, rate: torch.Tensor) -> bool:
    """rate = dt + bias over [batch, L, dim] in one pass (dt with unit channel stride, rate contiguous, bias [dim]
    or None); returns whether every value is at most 20, softplus's threshold (False for a NaN). `runs_on(rate)`
    must hold."""
    _check(rate, dt, *(() if bias is None else (bias,)))
    if dt.stride(2) != 1 or not rate.is_contiguous() or (bias is not None and not bias.is_contiguous()):
        raise ValueError("add_bias: needs unit channel strides and a contiguous rate")
    batch, length, dim = dt.shape
    if rate.shape != dt.shape or (bias is not None and bias.shape != (dim,)):
        raise ValueError(f"add_bias: shapes {tuple(dt.shape)}, {tuple(rate.shape)} and bias [{dim}] needed")
    run = getattr(_library(), f"kd_bias_{_NAMES[rate.dtype]}")
    bias_pointer = None if bias is None else bias.data_ptr()
    over = run(dt.data_ptr(), dt.stride(0), dt.stride(1), bias_pointer, rate.data_ptr(), batch, length, dim)
    return not over


def read_out(h: torch.Tensor, c: torch.Tensor, d: torch.Tensor | None, u: torch.Tensor, y: torch.Tensor) -> None:
    """y = h * c + d * u (d None: no skip term) for a state of size 1, in one pass: h contiguous [batch, L, groups,
    dim / groups]; c [batch, L, groups], broadcast views allowed; u and y [batch, L, dim] with unit channel stride;
    d [dim]. `runs_on(y)` must hold."""
    batch, length, groups, per = h.shape
    _check(y, h, c, u, *(() if d is None else (d,)))
    if not h.is_contiguous() or u.stride(2) != 1 or y.stride(2) != 1 or (d is not None and not d.is_contiguous()):
        raise ValueError("read_out: needs a contiguous h and unit channel strides")
    if u.shape != (batch, length, groups * per) or y.shape != u.shape or (d is not None and d.shape != (u.shape[2],)):
        raise ValueError(f"read_out: shapes of u, y and d do not match h {tuple(h.shape)}")
    c = c.expand(batch, length, groups)
    run = getattr(_library(), f"kd_read_{_NAMES[y.dtype]}")
    run(
        h.data_ptr(), c.data_ptr(), *c.stride(), None if d is None else d.data_ptr(), u.data_ptr(), u.stride(0),
        u.stride(1), y.data_ptr(), y.stride(0), y.stride(1), batch, length, groups, per,
    )  # fmt: skip


def _check(target: torch.Tensor, *others: torch.Tensor) -> None:
    if not runs_on(target) or any(t.dtype != target.dtype or t.device != target.device for t in others):
        raise ValueError("the compiled CPU loop needs float CPU tensors of one dtype and a built loop")


_NAMES = {torch.float32: "f32", torch.float64: "f64"}
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
    pointer, size = ctypes.c_void_p, ctypes.c_longlong
    signatures = {
        "scan": ([pointer, pointer] + [size] * 5, None),
        "bias": ([pointer, size, size, pointer, pointer, size, size, size], ctypes.c_int),
        "read": ([pointer, pointer, size, size, size, pointer, pointer, size, size, pointer] + [size] * 6, None),
    }
    for kind, (argtypes, restype) in signatures.items():
        for suffix in ("f32", "f64"):
            function = getattr(lib, f"kd_{kind}_{suffix}")
            function.argtypes, function.restype = argtypes, restype
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
