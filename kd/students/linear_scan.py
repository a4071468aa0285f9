"""The chunked linear scan h_t = a_t h_{t-1} + x_t: the core shared by the selective scan's forward and backward.

Time is cut into chunks of `CHUNK` steps; all chunks run their local recurrence side by side (a fixed, unrolled loop
of `CHUNK` steps) and the chunk-to-chunk carries come from the same scan one level up, applied recursively. Work is
linear in L and the Python loop count is fixed, so tracing gives a graph with a dynamic time axis.
"""

from __future__ import annotations

import math

import torch

from kd.students import scan_kernel

CHUNK = 64
"""Time steps per chunk: each level of the chunked scan runs a loop of this many steps over all chunks at once."""

TRACE_LEVELS = 4
"""Levels used while tracing (ONNX export), so one exported graph serves any L up to CHUNK ** 4 (16.7 M steps)."""

STEP_CHUNK = 32
"""Steps per chunk of the in-place scan (`scan_chunk_first_`), used wherever autograd does not record the ops:
measured fastest on one CPU thread for DASS's 96 and 384 channels at L = 8192."""

SMALL = 8
"""Carry scans of at most this many chunks run as one plain loop."""


def tracing() -> bool:
    """True while tracing or compiling: the graph then must not depend on the input length."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()


def linear_scan(log_a: torch.Tensor, x: torch.Tensor, levels: int | None = None) -> torch.Tensor:
    """h_t = exp(log_a_t) * h_{t-1} + x_t along dim 0, from h_{-1} = 0; returns h with x's shape.

    Args:
        log_a: log-decays, shape of x; the result has no positive exponent when they are <= 0.
        x: inputs [L, ...].
        levels: chunk levels to use; by default as many as L needs (`TRACE_LEVELS` while tracing, so that an
            exported graph has no length-dependent structure). L may not exceed CHUNK ** levels.
    """
    length = x.shape[0]
    if levels is None and not (tracing() or torch.is_grad_enabled()):
        # Nothing records the ops (as inside ChunkedScan's forward and backward): scan a copy in place, with the
        # compiled loop where it runs, else on chunked copies.
        if scan_kernel.runs_on(x):
            h = x.clone(memory_format=torch.contiguous_format)
            scan_kernel.scan_(torch.exp(log_a).contiguous(), h)
            return h
        h = to_chunks(x, STEP_CHUNK)
        scan_chunk_first_(to_chunks(torch.exp(log_a), STEP_CHUNK), h)
        return from_chunks(h)[:length]
    if levels is None:
        levels = TRACE_LEVELS if tracing() else levels_for(length)
    h = scan_chunks(to_chunks(torch.exp(log_a)), to_chunks(x), levels)
    return from_chunks(h)[:length]


def levels_for(length: int) -> int:
    """The fewest chunk levels whose reach, CHUNK ** levels, covers `length` steps."""
    levels, reach = 1, CHUNK
    while reach < length:
        levels, reach = levels + 1, reach * CHUNK
    return levels


def to_chunks(t: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """[L, ...] -> [chunk (default CHUNK), n_chunks, ...], zero-padded at the end, contiguous."""
    chunk = chunk or CHUNK
    length, rest = t.shape[0], t.shape[1:]
    n_chunks = (length + chunk - 1) // chunk
    t = torch.cat([t, t.new_zeros((n_chunks * chunk - length, *rest))])
    return t.reshape(n_chunks, chunk, *rest).transpose(0, 1).contiguous()


def from_chunks(t: torch.Tensor) -> torch.Tensor:
    """[CHUNK, n_chunks, ...] -> [n_chunks * CHUNK, ...]."""
    return t.transpose(0, 1).reshape(-1, *t.shape[2:])


def scan_chunks(decay: torch.Tensor, x: torch.Tensor, levels: int) -> torch.Tensor:
    """h_t = decay_t * h_{t-1} + x_t over [CHUNK, n_chunks, ...] inputs (time = chunk index * CHUNK + step).

    Decays are exp(delta * A) in [0, 1] and are only ever multiplied together, never divided or subtracted: values
    shrink or underflow to exact zeros, nothing overflows or cancels.
    """
    n_chunks = decay.shape[1]
    h, p = x[0], decay[0]
    states, products = [h], [p]
    for t in range(1, CHUNK):
        h = torch.addcmul(x[t], decay[t], h)
        states.append(h)
        if levels > 1:
            p = p * decay[t]
            products.append(p)
    local = torch.stack(states)
    if levels == 1:
        return local
    running = torch.stack(products)
    # One level up, each chunk is one step: its decay is the product of its decays, its input its local end state.
    ends = from_chunks(scan_chunks(to_chunks(running[-1]), to_chunks(local[-1]), levels - 1))
    carry = torch.cat([torch.zeros_like(ends[:1]), ends[: n_chunks - 1]])  # the state entering each chunk
    return torch.addcmul(local, running, carry[None])


def scan_chunk_first_(decay: torch.Tensor, x: torch.Tensor) -> None:
    """h_t = decay_t * h_{t-1} + x_t over [chunk, n_chunks, ...] tensors (time = chunk index * chunk + step), in
    place: x becomes h; decay is left as it is.

    Two sweeps over the chunks, each step one op over that step of all chunks on contiguous memory. The first only
    reads: each chunk's end state from a zero start, and the product of its decays. One level up, where each chunk
    is one step, the same scan (with a chunk of about the square root of n_chunks) turns those into the state
    entering each chunk. The second sweep runs the recurrence in place from those states. Reading everything twice
    and writing it once costs less than writing the running products and correcting every state afterwards.
    """
    chunk, n_chunks = x.shape[:2]
    xs, decays = x.unbind(0), decay.unbind(0)  # one op for all the step views, not one per use
    if n_chunks > 1:
        ends, totals = xs[0].clone(), decays[0].clone()
        for t in range(1, chunk):
            torch.addcmul(xs[t], decays[t], ends, out=ends)
            totals.mul_(decays[t])
        inner = n_chunks if n_chunks <= SMALL else math.isqrt(n_chunks - 1) + 1
        ends, totals = to_chunks(ends, inner), to_chunks(totals, inner)
        scan_chunk_first_(totals, ends)
        xs[0][1:].addcmul_(decays[0][1:], from_chunks(ends)[: n_chunks - 1])
    for t in range(1, chunk):
        xs[t].addcmul_(decays[t], xs[t - 1])
