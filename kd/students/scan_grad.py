"""A hand-written backward for the chunked selective scan, so training does not unroll the scan in autograd.

Autograd through the chunked scan records every one of its unrolled steps: on a CPU the backward then costs
several times the forward, mostly in allocating and filling per-step gradients. The recurrence is linear, so its
gradient is the same kind of scan run backwards in time:

    h_t = a_t h_{t-1} + x_t,  a_t = exp(delta_t A),  x_t = delta_t B_t u_t,  y_t = <C_t, h_t>
    g_h_t = C_t gy_t + a_{t+1} g_h_{t+1}                      (a reverse scan with the decays shifted by one)
    g_x_t = g_h_t,  g_(delta A)_t = g_h_t a_t h_{t-1}

Both scans use `kd.students.linear_scan.linear_scan` (exponents never positive). Bias, softplus, D and the z gate
stay in autograd outside this function: they are elementwise and cheap.
"""

from __future__ import annotations

import torch

from kd.students.linear_scan import linear_scan


def _time_first(B: torch.Tensor, batch: int, dim: int, length: int) -> torch.Tensor:
    """B or C ([dim, N] | [batch, N, L] | [batch, groups, N, L]) as [L, batch, dim, N] (a broadcast view)."""
    if B.dim() == 2:
        return B[None, None].expand(length, batch, dim, B.shape[-1])
    if B.dim() == 3:
        return B.permute(2, 0, 1)[:, :, None].expand(length, batch, dim, B.shape[1])
    groups = B.shape[1]
    per_group = B.permute(3, 0, 1, 2)[:, :, :, None]  # [L, batch, groups, 1, N]
    return per_group.expand(length, batch, groups, dim // groups, B.shape[2]).reshape(length, batch, dim, B.shape[2])


def _reduce_like(grad: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Sums a [L, batch, dim, N] gradient back to B's own shape."""
    length, batch, dim, n = grad.shape
    if B.dim() == 2:
        return grad.sum((0, 1))
    if B.dim() == 3:
        return grad.sum(2).permute(1, 2, 0)
    groups = B.shape[1]
    return grad.reshape(length, batch, groups, dim // groups, n).sum(3).permute(1, 2, 3, 0)


def scan_states(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """The states h [L, batch, dim, N] of the recurrence above, as plain differentiable (and traceable) ops."""
    batch, dim, length = u.shape
    dt = delta.permute(2, 0, 1)  # [L, batch, dim]
    return linear_scan(dt[..., None] * A, (dt * u.permute(2, 0, 1))[..., None] * _time_first(B, batch, dim, length))


def scan_graph(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """y [batch, dim, L] of the recurrence above as plain ops: what ChunkedScan computes, for tracing."""
    return _read_out(scan_states(u, delta, A, B), C)


def _read_out(h: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    length, batch, dim, _ = h.shape
    return (h * _time_first(C, batch, dim, length)).sum(-1).permute(1, 2, 0)


class ChunkedScan(torch.autograd.Function):
    """y [batch, dim, L] = <C_t, h_t> of the recurrence above; u, delta [batch, dim, L], A [dim, N] (real)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C):  # type: ignore[override]
        h = scan_states(u, delta, A, B)
        ctx.save_for_backward(u, delta, A, B, C, h)
        return _read_out(h, C)

    @staticmethod
    def backward(ctx, gy):  # type: ignore[override]
        u, delta, A, B, C, h = ctx.saved_tensors
        batch, dim, length = u.shape
        dt, ut, gyt = delta.permute(2, 0, 1), u.permute(2, 0, 1), gy.permute(2, 0, 1)
        Bt, Ct = _time_first(B, batch, dim, length), _time_first(C, batch, dim, length)
        log_a = dt[..., None] * A
        # g_h_t = C_t gy_t + a_{t+1} g_h_{t+1}: run forwards on the time-reversed sequence.
        shifted = torch.cat([log_a[1:], torch.zeros_like(log_a[:1])])
        gh = linear_scan(shifted.flip(0), (gyt[..., None] * Ct).flip(0)).flip(0)
        h_prev = torch.cat([torch.zeros_like(h[:1]), h[:-1]])
        g_log_a = gh * h_prev * torch.exp(log_a)
        gx_b = (gh * Bt).sum(-1)  # d y / d (delta u), summed over the state
        g_delta = (g_log_a * A).sum(-1) + gx_b * ut
        g_u = gx_b * dt
        g_A = (g_log_a * dt[..., None]).sum((0, 1))
        g_B = _reduce_like(gh * (dt * ut)[..., None], B)
        g_C = _reduce_like(gyt[..., None] * h, C)
        return g_u.permute(1, 2, 0), g_delta.permute(1, 2, 0), g_A, g_B, g_C
