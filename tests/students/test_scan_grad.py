"""The hand-written backward of the chunked scan: gradcheck for every B/C form, and finite gradients at extremes."""

from __future__ import annotations

import pytest
import torch

from kd.students.scan import selective_scan, selective_scan_reference
from kd.students.scan_grad import ChunkedScan


def _inputs(form: str, length: int = 70, scale: float = 3.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    b, d, n = 2, 8, 2
    u = torch.randn(b, d, length, generator=g, dtype=dtype)
    delta = torch.rand(b, d, length, generator=g, dtype=dtype)
    A = -torch.rand(d, n, generator=g, dtype=dtype) * scale
    shape = {"dn": (d, n), "bnl": (b, n, length), "bgnl": (b, 4, n, length)}[form]
    B, C = torch.randn(*shape, generator=g, dtype=dtype), torch.randn(*shape, generator=g, dtype=dtype)
    return [t.requires_grad_() for t in (u, delta, A, B, C)]


@pytest.mark.parametrize("form", ["dn", "bnl", "bgnl"])
def test_gradcheck(form):
    assert torch.autograd.gradcheck(ChunkedScan.apply, _inputs(form))


@pytest.mark.parametrize("form", ["dn", "bgnl"])
def test_gradients_match_autograd_through_the_reference(form):
    ours, ref = _inputs(form, length=130), _inputs(form, length=130)
    D = torch.randn(8, dtype=torch.float64)
    z = torch.randn(2, 8, 130, dtype=torch.float64)
    bias = torch.randn(8, dtype=torch.float64)
    y = selective_scan(*ours, D=D, z=z, delta_bias=bias, delta_softplus=True, backend="chunked")
    r = selective_scan_reference(*ref, D=D, z=z, delta_bias=bias, delta_softplus=True)
    torch.testing.assert_close(y, r, rtol=1e-10, atol=1e-10)
    (y * torch.cos(y)).sum().backward()
    (r * torch.cos(r)).sum().backward()
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-10)


def test_extreme_decays_and_long_sequences_stay_finite():
    u, delta, A, B, C = _inputs("bgnl", length=5000, scale=1e4, dtype=torch.float32)
    y = ChunkedScan.apply(u, delta * 50, A, B, C)
    y.square().sum().backward()
    for t in (y, u.grad, delta.grad, A.grad, B.grad, C.grad):
        assert torch.isfinite(t).all()
