"""The selective scan of Mamba/VMamba behind one function, with three backends.

Semantics are those of mamba-ssm's `selective_scan_fn` (state-spaces/mamba,
`mamba_ssm/ops/selective_scan_interface.py`): for every batch row and channel d,

    h_t = exp(delta_t * A_d) * h_{t-1} + delta_t * B_t * u_t        (state of size N, h_{-1} = 0)
    y_t = <C_t, h_t> + D_d * u_t,  then y_t *= silu(z_t) when z is given,

with `delta = softplus(delta + delta_bias)` when `delta_softplus`. Shapes: u, delta, z [batch, dim, L]; A [dim, N]
(real); B and C either [dim, N] (time-invariant), [batch, N, L] or [batch, groups, N, L] (channel d uses group
d // (dim // groups), as VMamba's four scan directions do); D and delta_bias [dim].

Backends:
- `reference`: one step per time index; exact recurrence, float64 capable, slow. The ground truth of the tests.
- `chunked`: pure PyTorch, the default off CUDA. Time is cut into chunks; all chunks run their local recurrence
  side by side (a fixed, unrolled loop over the steps of a chunk), and the chunk-to-chunk carries come from the
  same scan one level up, applied recursively (`kd.students.linear_scan`, shared with the backward in
  `kd.students.scan_grad`). Without autograd it works in place on chunk-first buffers (`_inplace_segment`); while
  tracing it is plain ops with a fixed loop count, so `torch.onnx.export` traces it with a dynamic time axis.
  Decays only ever enter as `exp(x)` with x = delta*A, or as products of such terms (never a quotient), so for
  A <= 0 nothing exceeds 1: large |A*delta| and long sequences underflow to exact zeros instead of overflowing,
  and nothing cancels.
- `mamba_ssm`: mamba-ssm's CUDA kernel, used for CUDA tensors when `mamba_ssm` imports (it fails at import when
  its compiled `selective_scan_cuda` is missing; any import failure means "unavailable").
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable

import torch
import torch.nn.functional as F

from kd.core.errors import ConfigError
from kd.students import scan_kernel
from kd.students.linear_scan import STEP_CHUNK, scan_chunk_first_, tracing
from kd.students.scan_grad import ChunkedScan, scan_graph

SEGMENT_ELEMENTS = 1 << 18
"""Without autograd, scan at most about this many state elements (batch * dim * N * steps) at a time."""

SEGMENT_MIN = 1 << 13
"""...but never fewer steps than this, so short inputs (10 s of DASS stage 1: 8000 steps) run in one piece."""
# Small segments keep each segment's dozen passes over its data in cache: at 2^23 elements the cost per step of a
# 240 s DASS-small stage-1 scan was 1.6x that of 10 s; at 2^18 it is flat (measured, one thread).

SCRATCH_MAX = 1 << 22
"""Scratch buffers kept between calls hold at most this many elements each (16 MiB in float32)."""
_SCRATCH = threading.local()

BACKENDS = ("reference", "chunked", "mamba_ssm")


def scan_backends() -> dict[str, str | None]:
    """Maps each backend name to None when it can run here, or to the reason it cannot."""
    return {"reference": None, "chunked": None, "mamba_ssm": _mamba_ssm_unavailable()}


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """Runs the selective scan (see the module docstring) and returns y [batch, dim, L] in u's dtype.

    Args:
        backend: 'auto' (mamba_ssm for CUDA tensors when it imports, else chunked), or one of `BACKENDS`.
    """
    if backend == "auto":
        backend = "mamba_ssm" if u.is_cuda and _mamba_ssm_unavailable() is None else "chunked"
    run = _RUNNERS.get(backend)
    if run is None:
        raise ConfigError(f"unknown selective-scan backend {backend!r}; known: auto, {', '.join(BACKENDS)}")
    return run(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def selective_scan_reference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """The recurrence one time step at a time, in float32 or (for float64 inputs) float64."""
    dtype = u.dtype
    uu, delta, dA, Bx, Cx = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    h = torch.zeros(dA.shape[:-1], dtype=dA.dtype, device=dA.device)
    ys = []
    static = Bx.shape[-1] == 1, Cx.shape[-1] == 1  # time-invariant B / C
    for t in range(uu.shape[-1]):
        h = torch.exp(dA[..., t]) * h + Bx[..., 0 if static[0] else t] * (delta[..., t] * uu[..., t])
        ys.append((h * Cx[..., 0 if static[1] else t]).sum(-1))
    y = torch.stack(ys, dim=-1).reshape(u.shape)
    return _finish(y, u, D, z).to(dtype)


def selective_scan_chunked(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """The recurrence as a fixed number of chunk levels of plain tensor ops (see the module docstring).

    The result is [batch, dim, L] stored time-major (dim contiguous); inputs stored that way are read fastest.
    Without autograd, long inputs are scanned in segments of about `SEGMENT_ELEMENTS` state elements, each
    starting from the previous one's final state, so temporary memory stays bounded whatever L is.
    """
    batch, dim, length = u.shape
    if A.is_complex():
        raise ConfigError("complex A is not supported by the kd selective scan; use a real A")
    if tracing() or torch.is_grad_enabled():
        # Training: a hand-written backward (a reverse scan) instead of autograd through every unrolled step.
        # Tracing records the same forward as plain ops, with no length-dependent structure.
        compute = torch.float64 if u.dtype == torch.float64 else torch.float32
        delta = delta.to(compute)
        if delta_bias is not None:
            delta = delta + delta_bias.to(compute)[:, None]
        if delta_softplus:
            delta = F.softplus(delta)
        args = u.to(compute), delta, A.to(compute), B.to(compute), C.to(compute)
        y = scan_graph(*args) if tracing() else ChunkedScan.apply(*args)
        return _finish(y, u, D, z).to(u.dtype)
    compute = torch.float64 if u.dtype == torch.float64 else torch.float32
    # The in-place scan reads rows of channels; time-contiguous inputs are regrouped once, up front.
    u, delta, z = (
        t if t is None or t.stride(1) == 1 else t.transpose(1, 2).contiguous().transpose(1, 2) for t in (u, delta, z)
    )
    segment = max(SEGMENT_MIN, SEGMENT_ELEMENTS // max(batch * dim * A.shape[1], 1)) // STEP_CHUNK * STEP_CHUNK
    out = torch.empty((batch, length, dim), dtype=compute, device=u.device)  # time-major, as the model reads it
    # Segments of whole chunks; a ragged end, shorter than a chunk, is a segment (and a chunk) of its own.
    whole = length - length % STEP_CHUNK
    edges = sorted({*range(0, whole, segment), whole, length})
    state = None
    for start, stop in itertools.pairwise(edges):
        part = slice(start, stop)
        z_part = None if z is None else z[..., part]
        state = _inplace_segment(
            u[..., part], delta[..., part], A, _time_part(B, part), _time_part(C, part), D, z_part, delta_bias,
            delta_softplus, state, out[:, part],
        )  # fmt: skip
    return out.transpose(1, 2).to(u.dtype)


def _inplace_segment(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
    state: torch.Tensor | None,
    out: torch.Tensor,
) -> torch.Tensor:
    """Scans one stretch of time from `state` (None: zeros) into out [batch, L, dim]; returns the final state.

    The compiled loop (`kd.students.scan_kernel`) scans buffers in the model's own time-major layout, [batch, L,
    groups, dim / groups, N], so every op around it is a plain contiguous pass; two of them are C passes too, the
    bias (checking softplus's threshold on the way) and, where B and C are shared by a group's channels and N is 1,
    the read-out with the D term (`scan_kernel.add_bias`, `scan_kernel.read_out`). PyTorch ops instead need many
    time steps per op: L is then a multiple of the chunk (the caller cuts a ragged end into a segment of its own)
    and the buffers are laid out chunk-first, [chunk, n_chunks, batch, groups, dim / groups, N], so that each step
    is one op on contiguous memory; inputs and output stay time-major, read and written through chunk-ordered
    views, so the regrouping costs no pass of its own. Every op but the products and the read-out works in place.
    """
    compute = out.dtype
    batch, dim, length = u.shape
    groups, n = _groups(B, C, dim), A.shape[1]
    grouped = (batch, length, groups, dim // groups, 1)
    compiled = scan_kernel.runs_on(out)
    if compiled:
        shape, first, last = grouped[:-1], (slice(None), 0), (slice(None), -1)

        def time_major(t: torch.Tensor) -> torch.Tensor:
            return t

        chunk_first = time_major
    else:
        chunk = min(STEP_CHUNK, length)
        shape, first, last = (chunk, length // chunk, batch, groups, dim // groups), (0, 0), (-1, -1)

        def time_major(t: torch.Tensor) -> torch.Tensor:  # [batch, L, ...] -> [batch, n_chunks, chunk, ...]
            return t.unflatten(1, (length // chunk, chunk)) if t.shape[1] == length else t[:, None]  # or constant

        def chunk_first(t: torch.Tensor) -> torch.Tensor:  # a buffer, seen as [batch, n_chunks, chunk, ...]
            return t.movedim((0, 1), (2, 1))

    rate = _scratch("rate", (*shape, 1), out)
    bias = None if delta_bias is None else delta_bias.to(compute).contiguous()
    dt, small = delta.transpose(1, 2).to(compute), None  # small: every biased delta is at most 20, where known
    if compiled:
        small = scan_kernel.add_bias(dt, bias, rate.view(batch, length, dim))
    elif bias is None:
        chunk_first(rate).copy_(time_major(dt.view(grouped)))
    else:
        torch.add(time_major(dt.view(grouped)), bias.view(groups, -1, 1), out=chunk_first(rate))
    if delta_softplus:
        _softplus_(rate, small)
    decay = _scratch("decay", (*shape, n), out)
    torch.mul(rate, A.to(compute).view(groups, dim // groups, n), out=decay).exp_()
    ut = u.transpose(1, 2).to(compute)
    chunk_first(rate).mul_(time_major(ut.view(grouped)))
    Bt = time_major(_time_major(B.to(compute), groups))
    if n == 1:
        x = rate
        chunk_first(x).mul_(Bt)
    else:
        x = _scratch("x", (*shape, n), out)
        torch.mul(chunk_first(rate), Bt, out=chunk_first(x))
    if state is not None:  # the carried state enters through the first step: h_0 = exp(delta_0 A) state + x_0
        x[first].addcmul_(decay[first], state)
    if compiled:
        scan_kernel.scan_(decay, x, time_dim=1)
    else:
        scan_chunk_first_(decay, x)
    final = x[last].clone()
    Ct = time_major(_time_major(C.to(compute), groups))
    if compiled and n == 1 and C.dim() > 2:  # C shared by the channels of a group: one fused pass
        skip = None if D is None else D.to(compute).contiguous()
        scan_kernel.read_out(x.view(batch, length, groups, dim // groups), Ct[..., 0, 0], skip, ut, out)
    else:
        y = time_major(out.view(batch, length, groups, dim // groups))
        if n == 1:
            torch.mul(chunk_first(x)[..., 0], Ct[..., 0], out=y)
        else:
            torch.sum(chunk_first(x) * Ct, -1, out=y)
        if D is not None:
            out.addcmul_(ut, D.to(compute))
    if z is not None:
        out.mul_(F.silu(z.transpose(1, 2).to(compute)))
    return final


def _scratch(name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """An uninitialised CPU buffer of `like`'s dtype, reused by the next segment and call in this thread.

    Each segment needs a few buffers the size of its input. Allocated afresh, large ones come from the OS each
    time, and on a VM the page faults of touching them cost as much as the scan itself (measured: 1540 faults and
    4.4 ms per 1-route call instead of 300 and 2.3 ms, depending on where malloc put them). Up to `SCRATCH_MAX`
    elements are kept per buffer and thread; larger ones (big batches) are allocated per call.
    """
    size = math.prod(shape)
    if like.device.type != "cpu" or size > SCRATCH_MAX:
        return like.new_empty(shape)
    kept = getattr(_SCRATCH, name, None)
    if kept is None or kept.numel() < size or kept.dtype != like.dtype:
        with torch.inference_mode(False):  # a normal tensor: usable in place inside and outside inference mode
            kept = like.new_empty(max(size, kept.numel() if kept is not None and kept.dtype == like.dtype else 0))
        setattr(_SCRATCH, name, kept)
    return kept[:size].view(shape)


def _softplus_(t: torch.Tensor, small: bool | None = None) -> None:
    """softplus in place. Where t <= 20 everywhere (softplus's own threshold, past which it is the identity; the
    usual case) as log1p(exp(t)), torch's own formula below the threshold, in two vectorised passes: 0.85 ms
    against softplus's 0.82 ms plus a copy for 786k float32 on one thread (log1p 0.37 ms where log(1 + e) took
    0.66); otherwise as torch computes it. `small`: whether t <= 20 is already known (the compiled bias pass
    checks it on the way)."""
    if small if small is not None else bool(t.max() <= 20):  # also false for NaN
        t.exp_().log1p_()
    else:
        torch.ops.aten.softplus.out(t, 1, 20, out=t)


def _time_major(M: torch.Tensor, groups: int) -> torch.Tensor:
    """B or C ([dim, N] | [batch, N, L] | [batch, groups, N, L]) as a view broadcastable to [batch, L, groups,
    dim / groups, N]."""
    if M.dim() == 2:
        return M.view(1, 1, groups, -1, M.shape[-1])
    if M.dim() == 3:
        return M.permute(0, 2, 1)[:, :, None, None]
    return M.permute(0, 3, 1, 2)[:, :, :, None]


def _groups(B: torch.Tensor, C: torch.Tensor, dim: int) -> int:
    groups = max(B.shape[1] if B.dim() == 4 else 1, C.shape[1] if C.dim() == 4 else 1)
    if dim % groups:
        raise ConfigError(f"selective scan: {dim} channels cannot be split into {groups} groups of B and C")
    for M in (B, C):
        if M.dim() == 4 and M.shape[1] not in (1, groups):
            raise ConfigError(f"selective scan: B and C have different group counts ({M.shape[1]} vs {groups})")
    return groups


def _time_part(M: torch.Tensor, part: slice) -> torch.Tensor:
    return M if M.dim() == 2 else M[..., part]


def _prepare(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Upcasts to float32 (float64 stays) and applies bias and softplus.

    Returns u and delta as [batch, groups, dim / groups, 1, L], delta * A as [batch, groups, dim / groups, N, L],
    and B, C broadcastable to that, so grouped B/C are never copied per channel.
    """
    if A.is_complex():
        raise ConfigError("complex A is not supported by the kd selective scan; use a real A")
    compute = torch.float64 if u.dtype == torch.float64 else torch.float32
    batch, dim, length = u.shape
    groups = _groups(B, C, dim)
    shape = (batch, groups, dim // groups, 1, length)
    u, delta, A = u.to(compute).reshape(shape), delta.to(compute), A.to(compute)
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    delta = delta.reshape(shape)
    dA = delta * A.reshape(1, groups, dim // groups, -1, 1)
    return u, delta, dA, _grouped(B.to(compute), groups, dim), _grouped(C.to(compute), groups, dim)


def _grouped(M: torch.Tensor, groups: int, dim: int) -> torch.Tensor:
    """[dim, N] | [batch, N, L] | [batch, groups, N, L] -> broadcastable to [batch, groups, dim / groups, N, L]."""
    if M.dim() == 2:
        return M.reshape(1, groups, dim // groups, -1, 1)
    if M.dim() == 3:
        return M[:, None, None]
    return M[:, :, None]


def _finish(y: torch.Tensor, u: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None) -> torch.Tensor:
    """Adds the skip term D * u and applies the silu(z) gate."""
    if D is not None:
        y = y + D.to(y.dtype)[:, None] * u.to(y.dtype)
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y


def _mamba_ssm_unavailable() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA device"
    try:
        _mamba_ssm_fn()
    except Exception as error:  # any failure (missing package, missing selective_scan_cuda) means "unavailable"
        return f"mamba_ssm does not import: {type(error).__name__}: {error}"
    return None


def _mamba_ssm_fn() -> Callable[..., torch.Tensor]:
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    return selective_scan_fn


def _selective_scan_mamba(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
) -> torch.Tensor:
    reason = _mamba_ssm_unavailable()
    if reason is not None:
        raise ConfigError(f"selective-scan backend 'mamba_ssm' is unavailable ({reason}); use backend='chunked'")
    fn = _mamba_ssm_fn()
    # The kernel wants float32 A, D and delta_bias and contiguous time-last tensors.
    args = [t.contiguous() if t is not None else None for t in (u, delta, A.float(), B, C)]
    D = D.float().contiguous() if D is not None else None
    delta_bias = delta_bias.float().contiguous() if delta_bias is not None else None
    z = z.contiguous() if z is not None else None
    return fn(*args, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)


_RUNNERS: dict[str, Callable[..., torch.Tensor]] = {
    "reference": selective_scan_reference,
    "chunked": selective_scan_chunked,
    "mamba_ssm": _selective_scan_mamba,
}
