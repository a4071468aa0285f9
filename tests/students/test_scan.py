"""Selective-scan backends agree with the sequential recurrence, forward and backward, on ordinary and extreme data."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch

from kd.core.errors import ConfigError
from kd.students import linear_scan as chunk_core
from kd.students import scan, scan_kernel
from kd.students.linear_scan import linear_scan
from kd.students.scan import (
    scan_backends,
    selective_scan,
    selective_scan_chunked,
    selective_scan_reference,
)


def _inputs(
    length: int,
    dtype: torch.dtype = torch.float64,
    batch: int = 2,
    dim: int = 8,
    n: int = 2,
    bc: str = "grouped",
    a_scale: float = 1.0,
    delta_scale: float = 1.0,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=dtype)

    bc_shape = {"grouped": (batch, 4, n, length), "shared": (batch, n, length), "static": (dim, n)}[bc]
    return {
        "u": randn(batch, dim, length),
        "delta": randn(batch, dim, length) * delta_scale,
        "A": -torch.rand(dim, n, generator=g, dtype=dtype) * 2 * a_scale,
        "B": randn(*bc_shape),
        "C": randn(*bc_shape),
        "D": randn(dim),
        "z": randn(batch, dim, length),
        "delta_bias": randn(dim),
    }


@pytest.fixture(params=["compiled loop", "torch ops"])
def loop(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs a test with each way the scan runs outside autograd: the compiled CPU loop, and the PyTorch ops that
    serve where no C compiler is."""
    if request.param == "compiled loop" and scan_kernel.unavailable():
        pytest.skip(scan_kernel.unavailable())
    with scan_kernel.turned_off() if request.param == "torch ops" else contextlib.nullcontext():
        yield request.param


def _rel(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.double() - expected.double()).abs().max() / expected.double().abs().max().clamp_min(1e-30)).item()


@pytest.mark.parametrize("length", [1, 63, 64, 65, 300, 4097])
@pytest.mark.parametrize("bc", ["grouped", "shared", "static"])
def test_chunked_matches_reference(length: int, bc: str) -> None:
    args = _inputs(length, bc=bc)
    expected = selective_scan_reference(**args, delta_softplus=True)
    assert _rel(selective_scan_chunked(**args, delta_softplus=True), expected) < 1e-10
    args32 = {k: v.float() for k, v in args.items()}
    got32 = selective_scan_chunked(**args32, delta_softplus=True)
    assert got32.dtype == torch.float32
    assert _rel(got32, expected) < 1e-5
    assert _rel(selective_scan_reference(**args32, delta_softplus=True), expected) < 1e-5


@pytest.mark.parametrize("length", [1, 63, 64, 65, 300, 4097, 20_001])
@pytest.mark.parametrize("bc", ["grouped", "shared", "static"])
@pytest.mark.parametrize("time_major", [True, False])
def test_inference_matches_reference(length: int, bc: str, time_major: bool, loop: str) -> None:
    # Without autograd the scan runs in place on the time-major layout; 20 001 steps take four chunk levels.
    args = _inputs(length, bc=bc, batch=2 if length < 5000 else 1, dim=8 if length < 5000 else 4)
    if time_major:
        args = {k: v.transpose(1, 2).contiguous().transpose(1, 2) if v.dim() == 3 else v for k, v in args.items()}
    expected = selective_scan_reference(**args, delta_softplus=True)
    with torch.no_grad():
        got = selective_scan_chunked(**args, delta_softplus=True)
        got32 = selective_scan_chunked(**{k: v.float() for k, v in args.items()}, delta_softplus=True)
    assert _rel(got, expected) < 1e-10
    assert got32.dtype == torch.float32
    assert _rel(got32, expected) < 1e-5


def test_chunked_without_softplus_d_or_z() -> None:
    args = _inputs(200)
    args["delta"] = args["delta"].abs()
    del args["D"], args["z"], args["delta_bias"]
    assert _rel(selective_scan_chunked(**args), selective_scan_reference(**args)) < 1e-10


@pytest.mark.parametrize(("a_scale", "delta_scale"), [(1e4, 30.0), (1e-6, 1e-3), (1e3, 1.0)])
def test_extreme_decays_stay_finite_and_exact(a_scale: float, delta_scale: float, loop: str) -> None:
    args = _inputs(3000, dtype=torch.float32, a_scale=a_scale, delta_scale=delta_scale)
    got = selective_scan_chunked(**args, delta_softplus=True)
    assert torch.isfinite(got).all()
    reference32 = selective_scan_reference(**args, delta_softplus=True)
    assert _rel(got, reference32) < 1e-5
    # Against the float64 truth the chunked scan is no worse than float32 step-by-step arithmetic (with almost no
    # decay, 3000 float32 accumulations alone drift by ~3e-5).
    truth = selective_scan_reference(**{k: v.double() for k, v in args.items()}, delta_softplus=True)
    assert _rel(got, truth) <= 1.5 * _rel(reference32, truth) + 1e-6


def test_long_sequence_with_no_decay_is_finite(loop: str) -> None:
    # A = 0 for some channels: the state is a plain running sum over 20 000 steps, nothing may overflow.
    args = _inputs(20_000, dtype=torch.float32, batch=1, dim=4, n=1, bc="shared")
    args["A"][:2] = 0.0
    with torch.no_grad():
        got = selective_scan_chunked(**args, delta_softplus=True)
    assert torch.isfinite(got).all()
    truth = selective_scan_reference(**{k: v.double() for k, v in args.items()}, delta_softplus=True)
    assert _rel(got, truth) <= 1.5 * _rel(selective_scan_reference(**args, delta_softplus=True), truth) + 1e-6


def test_backward_matches_reference(loop: str) -> None:
    args = {k: v.float().requires_grad_() for k, v in _inputs(150).items()}
    grads = []
    for fn in (selective_scan_reference, selective_scan_chunked):
        out = fn(**args, delta_softplus=True)
        grads.append(torch.autograd.grad((out * torch.linspace(-1, 1, out.shape[-1])).sum(), list(args.values())))
    for got, expected in zip(grads[1], grads[0], strict=True):
        assert _rel(got, expected) < 1e-5


def test_gradcheck_chunked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunk_core, "CHUNK", 4)  # 21 steps then span three chunk levels at gradcheck's small size
    args = {k: v.requires_grad_() for k, v in _inputs(21, batch=1, dim=4, n=1, bc="grouped").items()}
    names = list(args)

    def fn(*tensors: torch.Tensor) -> torch.Tensor:
        return selective_scan_chunked(**dict(zip(names, tensors, strict=True)), delta_softplus=True)

    assert torch.autograd.gradcheck(fn, tuple(args.values()))


def test_segmented_inference_equals_one_pass(monkeypatch: pytest.MonkeyPatch, loop: str) -> None:
    args = _inputs(1000, batch=1, dim=4)
    expected = selective_scan_reference(**args, delta_softplus=True)
    monkeypatch.setattr(scan, "SEGMENT_MIN", 130)
    monkeypatch.setattr(scan, "SEGMENT_ELEMENTS", 1)
    with torch.no_grad():
        got = selective_scan_chunked(**args, delta_softplus=True)
    assert _rel(got, expected) < 1e-10


def test_reused_buffers_serve_inference_mode_and_no_grad_alike(loop: str) -> None:
    # Scratch buffers outlive a call: one made under inference_mode must still take in-place ops under no_grad.
    args = {k: v.float() for k, v in _inputs(300, batch=1, dim=4).items()}
    results = []
    for mode in (torch.inference_mode, torch.no_grad, torch.inference_mode):
        with mode():
            results.append(selective_scan_chunked(**args, delta_softplus=True))
    assert torch.equal(results[0], results[1]) and torch.equal(results[1], results[2])


def test_linear_scan_matches_loop() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5000, 3, dtype=torch.float64, generator=g)
    log_a = -torch.rand(5000, 3, dtype=torch.float64, generator=g)
    h, expected = torch.zeros(3, dtype=torch.float64), []
    for t in range(5000):
        h = log_a[t].exp() * h + x[t]
        expected.append(h)
    assert _rel(linear_scan(log_a, x), torch.stack(expected)) < 1e-12


def test_linear_scan_outside_autograd_matches_loop(loop: str) -> None:
    # As inside ChunkedScan's forward and backward: [L, batch, dim, N] views that are not contiguous.
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 700, 2, dtype=torch.float64, generator=g).permute(2, 0, 1, 3)
    log_a = -torch.rand(700, 3, 4, 2, dtype=torch.float64, generator=g)
    h, expected = torch.zeros(3, 4, 2, dtype=torch.float64), []
    for t in range(700):
        h = log_a[t].exp() * h + x[t]
        expected.append(h)
    with torch.no_grad():
        got = linear_scan(log_a, x)
    assert got.shape == x.shape and _rel(got, torch.stack(expected)) < 1e-12


def test_backends_and_dispatch() -> None:
    backends = scan_backends()
    assert backends["reference"] is None and backends["chunked"] is None
    if not torch.cuda.is_available():
        assert isinstance(backends["mamba_ssm"], str) and backends["mamba_ssm"]
    args = _inputs(50)
    assert torch.equal(selective_scan(**args), selective_scan_chunked(**args))  # auto on CPU is chunked
    assert torch.equal(selective_scan(**args, backend="reference"), selective_scan_reference(**args))
    with pytest.raises(ConfigError, match="unknown selective-scan backend"):
        selective_scan(**args, backend="fast")
    if backends["mamba_ssm"] is not None:
        with pytest.raises(ConfigError, match="unavailable"):
            selective_scan(**args, backend="mamba_ssm")


def test_mamba_ssm_import_failure_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise ImportError("libselective_scan_cuda.so: cannot open shared object file")

    monkeypatch.setattr(scan, "_mamba_ssm_fn", broken)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert "selective_scan_cuda" in scan_backends()["mamba_ssm"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mamba_ssm_matches_chunked() -> None:
    if scan_backends()["mamba_ssm"] is not None:
        pytest.skip(scan_backends()["mamba_ssm"])
    args = {k: v.float().cuda() for k, v in _inputs(500).items()}
    got = selective_scan(**args, delta_softplus=True, backend="mamba_ssm")
    assert _rel(got.cpu(), selective_scan_chunked(**{k: v.cpu() for k, v in args.items()}, delta_softplus=True)) < 1e-4


def test_onnx_export_with_dynamic_time_axis(tmp_path: pytest.TempPathFactory) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")

    class Scan(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.A = torch.nn.Parameter(-torch.rand(8, 1))
            self.D = torch.nn.Parameter(torch.randn(8))
            self.bias = torch.nn.Parameter(torch.randn(8))

        def forward(self, u: torch.Tensor, delta: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
            return selective_scan_chunked(u, delta, self.A, B, C, self.D, None, self.bias, True)

    model = Scan().eval()
    names = ["u", "delta", "B", "C"]

    def inputs(length: int) -> list[torch.Tensor]:
        return [
            torch.randn(1, 8, length),
            torch.randn(1, 8, length),
            torch.randn(1, 2, 1, length),
            torch.randn(1, 2, 1, length),
        ]

    path = tmp_path / "scan.onnx"
    with torch.no_grad():
        torch.onnx.export(
            model, tuple(inputs(100)), str(path), input_names=names, dynamo=False, opset_version=17,
            dynamic_axes={"u": {2: "L"}, "delta": {2: "L"}, "B": {3: "L"}, "C": {3: "L"}},
        )  # fmt: skip
    session = ort.InferenceSession(str(path))
    for length in (5, 100, 5000):
        args = inputs(length)
        (got,) = session.run(None, {n: a.numpy() for n, a in zip(names, args, strict=True)})
        with torch.no_grad():
            expected = selective_scan_reference(*args[:2], model.A, *args[2:], model.D, None, model.bias, True)
        assert _rel(torch.from_numpy(got), expected) < 1e-5
