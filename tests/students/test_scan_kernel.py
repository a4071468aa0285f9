"""The compiled CPU loop of the linear scan: the step-by-step recurrence bit for bit, built on first use, and a clear
reason (with the PyTorch-ops scan serving) wherever it cannot be built."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import torch

from kd.students import scan_kernel


@pytest.fixture
def fresh_build(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Iterator[None]:
    """Builds and loads the loop again under a temporary KD_CACHE; the session's own build is restored after."""
    monkeypatch.setenv("KD_CACHE", str(tmp_path))
    scan_kernel._library.cache_clear()
    yield
    monkeypatch.undo()
    scan_kernel._library.cache_clear()


def _steps(decay: torch.Tensor, x: torch.Tensor, time_dim: int) -> torch.Tensor:
    """The recurrence one step at a time, a rounded product then a rounded sum (torch.addcmul may fuse them)."""
    h = x.movedim(time_dim, 0).clone()
    d = decay.movedim(time_dim, 0)
    for t in range(1, h.shape[0]):
        h[t] = h[t] + d[t] * h[t - 1]
    return h.movedim(0, time_dim)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler here")
def test_builds_where_a_compiler_is(fresh_build: None, tmp_path: object) -> None:
    assert scan_kernel.unavailable() is None
    assert str(tmp_path) in scan_kernel.describe()
    assert len(list((tmp_path / "kernels").glob("linear_scan-*.so"))) == 1  # type: ignore[operator]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("shape", "time_dim"), [((500, 3, 7), 0), ((2, 300, 5, 4), 1), ((1, 1), 0)])
def test_equals_the_step_by_step_recurrence(dtype: torch.dtype, shape: tuple[int, ...], time_dim: int) -> None:
    if scan_kernel.unavailable():
        pytest.skip(scan_kernel.unavailable())
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=dtype)
    decay = torch.rand(shape, generator=g, dtype=dtype)
    expected = _steps(decay, x, time_dim)
    scan_kernel.scan_(decay, x, time_dim)
    assert torch.equal(x, expected)


def test_threads_split_columns_and_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    if scan_kernel.unavailable():
        pytest.skip(scan_kernel.unavailable())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(400, 37, generator=g)  # 37 columns: ranges of 16-aligned edges and a ragged last one
    decay = torch.rand(400, 37, generator=g)
    one = x.clone()
    scan_kernel.scan_(decay, one)
    monkeypatch.setattr(scan_kernel, "MIN_SPLIT", 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        scan_kernel.scan_(decay, x)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(x, one)


def test_refuses_what_it_cannot_scan() -> None:
    if scan_kernel.unavailable():
        pytest.skip(scan_kernel.unavailable())
    x = torch.randn(10, 4)
    assert not scan_kernel.runs_on(x.half())
    with pytest.raises(ValueError, match="contiguous"):
        scan_kernel.scan_(torch.rand(4, 10).t(), x)
    with pytest.raises(ValueError, match="one shape"):
        scan_kernel.scan_(torch.rand(10, 3), x)
    with pytest.raises(ValueError, match="one dtype"):
        scan_kernel.scan_(torch.rand(10, 4, dtype=torch.float64), x)


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"KD_SCAN_KERNEL": "0"}, "disabled by KD_SCAN_KERNEL=0"),
        ({"CC": "/nonexistent/cc"}, "no C compiler (/nonexistent/cc) on PATH"),
        ({"CC": "false"}, "building the CPU scan with"),
    ],
)
def test_says_why_and_torch_ops_serve(
    fresh_build: None, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], reason: str
) -> None:
    from kd.students.scan import selective_scan_chunked, selective_scan_reference

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert reason in (scan_kernel.unavailable() or "")
    assert scan_kernel.describe().startswith("PyTorch ops (")
    x = torch.randn(1, 4, 100, dtype=torch.float64)
    assert not scan_kernel.runs_on(x)
    args = (x, torch.randn(1, 4, 100, dtype=torch.float64), -torch.rand(4, 1, dtype=torch.float64))
    B = torch.randn(1, 1, 100, dtype=torch.float64)
    with torch.no_grad():
        got = selective_scan_chunked(*args, B, B, delta_softplus=True)
    assert torch.allclose(got, selective_scan_reference(*args, B, B, delta_softplus=True), rtol=0, atol=1e-10)


def _threaded_scan_in_child() -> None:
    torch.set_num_threads(2)
    x = torch.randn(200, 40)
    scan_kernel.scan_(torch.rand(200, 40), x)
    assert torch.isfinite(x).all()


def test_a_forked_child_scans_with_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    # The parent's thread pool is copied into a fork without its threads: the child must not wait on it.
    import multiprocessing

    if scan_kernel.unavailable():
        pytest.skip(scan_kernel.unavailable())
    monkeypatch.setattr(scan_kernel, "MIN_SPLIT", 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        scan_kernel.scan_(torch.rand(200, 40), torch.randn(200, 40))  # the parent's pool now exists
        child = multiprocessing.get_context("fork").Process(target=_threaded_scan_in_child)
        child.start()
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
        assert child.exitcode == 0
    finally:
        torch.set_num_threads(threads)


def test_bias_pass_adds_and_checks_the_softplus_threshold() -> None:
    if scan_kernel.unavailable():
        pytest.skip(scan_kernel.unavailable())
    g = torch.Generator().manual_seed(3)
    dt = torch.randn(2, 60, 9, generator=g)[:, 5:55]  # a segment's stretch of time: unit channel stride
    bias = torch.randn(9, generator=g)
    rate = torch.empty(2, 50, 9)
    assert scan_kernel.add_bias(dt, bias, rate) and torch.equal(rate, dt + bias)
    assert scan_kernel.add_bias(dt, None, rate) and torch.equal(rate, dt)
    for bad in (25.0, float("nan")):
        spiked = dt.clone()
        spiked[1, 7, 3] = bad
        assert not scan_kernel.add_bias(spiked, None, rate)
    with pytest.raises(ValueError, match="shape"):
        scan_kernel.add_bias(dt, torch.randn(8), rate)  # would read past the bias


@pytest.mark.parametrize("skip", [True, False])
def test_read_out_pass_equals_the_products(skip: bool) -> None:
    if scan_kernel.unavailable():
        pytest.skip(scan_kernel.unavailable())
    g = torch.Generator().manual_seed(4)
    h = torch.randn(2, 30, 4, 3, generator=g)
    c = torch.randn(2, 1, 30, generator=g).permute(0, 2, 1)  # [2, 30, 1]: one C for every group (a broadcast)
    u = torch.randn(2, 35, 12, generator=g)[:, 5:]  # [2, 30, 12]: a segment's stretch of time
    d = torch.randn(12, generator=g) if skip else None
    y = torch.full((2, 40, 12), float("nan"))[:, 5:35]  # a slice of a longer output, as a segment writes it
    scan_kernel.read_out(h, c, d, u, y)
    expected = (h * c[..., None]).reshape(2, 30, 12)
    if skip:
        expected = expected + d * u
    assert torch.equal(y, expected)
    with pytest.raises(ValueError, match="shape"):
        scan_kernel.read_out(h, c, d, u[:, :20], y)  # would read past u
