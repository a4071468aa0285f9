"""The chunked linear scan h_t = a_t h_{t-1} + x_t: the core shared by the selective scan's forward and backward.

Time is cut into chunks of `CHUNK` steps; all chunks run their local recurrence side by side (a fixed, unrolled loop
of `CHUNK` steps) and the chunk-to-chunk carries come from the same scan one level up, applied recursively. Work is
linear in L and the Python loop count is fixed, so tracing gives a graph with a dynamic time axis.
"""

from __future__ import annotations

import torch

CHUNK = 64
"""Time steps per chunk: each level of the chunked scan runs a loop of this many steps over all chunks at once."""

TRACE_LEVELS = 4
"""Levels used while tracing (ONNX export), so one exported graph serves any L up to CHUNK ** 4 (16.7 M steps)."""


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
    if levels is None:
        levels = TRACE_LEVELS if tracing() else levels_for(length)
    h = scan_chunks(to_chunks(torch.exp(log_a)), to_chunks(x), levels, inplace=False)
    return from_chunks(h)[:length]


def levels_for(length: int) -> int:
    """The fewest chunk levels whose reach, CHUNK ** levels, covers `length` steps."""
    levels, reach = 1, CHUNK
    while reach < length:
        levels, reach = levels + 1, reach * CHUNK
    return levels


def to_chunks(t: torch.Tensor) -> torch.Tensor:
    """[L, ...] -> [CHUNK, n_chunks, ...], zero-padded at the end, contiguous."""
    length, rest = t.shape[0], t.shape[1:]
    n_chunks = (length + CHUNK - 1) // CHUNK
    t = torch.cat([t, t.new_zeros((n_chunks * CHUNK - length, *rest))])
    return t.reshape(n_chunks, CHUNK, *rest).transpose(0, 1).contiguous()


def from_chunks(t: torch.Tensor) -> torch.Tensor:
    """[CHUNK, n_chunks, ...] -> [n_chunks * CHUNK, ...]."""
    return t.transpose(0, 1).reshape(-1, *t.shape[2:])


def scan_chunks(decay: torch.Tensor, x: torch.Tensor, levels: int, inplace: bool) -> torch.Tensor:
    """h_t = decay_t * h_{t-1} + x_t over [CHUNK, n_chunks, ...] inputs (time = chunk index * CHUNK + step).

    Decays are exp(delta * A) in [0, 1] and are only ever multiplied together, never divided or subtracted: values
    shrink or underflow to exact zeros, nothing overflows or cancels. With `inplace`, x is overwritten by the
    states and decay by its running products.
    """
    n_chunks = decay.shape[1]
    if inplace:
        for t in range(1, CHUNK):
            x[t].addcmul_(decay[t], x[t - 1])
            if levels > 1:
                decay[t].mul_(decay[t - 1])
        local, running = x, decay
    else:
        h, p = x[0], decay[0]
        states, products = [h], [p]
        for t in range(1, CHUNK):
            h = torch.addcmul(x[t], decay[t], h)
            states.append(h)
            if levels > 1:
                p = p * decay[t]
                products.append(p)
        local = torch.stack(states)
        running = torch.stack(products) if levels > 1 else None
    if levels == 1:
        return local
    # One level up, each chunk is one step: its decay is the product of its decays, its input its local end state.
    ends = from_chunks(scan_chunks(to_chunks(running[-1]), to_chunks(local[-1]), levels - 1, inplace))
    carry = torch.cat([torch.zeros_like(ends[:1]), ends[: n_chunks - 1]])  # the state entering each chunk
    return local.addcmul_(running, carry[None]) if inplace else torch.addcmul(local, running, carry[None])
