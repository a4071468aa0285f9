"""Chunked pure-PyTorch selective scan vs the sequential reference at L = 8192 (targets: >= 50x at 1 route, >= 10x
at 4 routes), and what the chunked scan changes in a student's outputs.

Shapes are DASS's: d_state 1 and, for stage 1 of DASS-small on 10 s of audio, 96 inner channels per scan route
(4 routes when scanned together). The model hands the scan time-major tensors ([batch, dim, L] with dim contiguous);
the last row shows time-contiguous inputs, which the scan regroups first. `chunked` is the default CPU path (the
compiled loop of `kd.students.scan_kernel`, where a C compiler is); `torch_ops` is the same backend with PyTorch ops
only, as where none is. Both backends run in float32; each column of differences is against the same recurrence
in float64, so the sequential column is float32's own error.
On a shared 2-core machine run it with OMP_NUM_THREADS=1: two OpenMP threads competing with other processes make
every small op wait for a descheduled thread (measured: 10x to 40x slower), which says nothing about the scan.
"""

from __future__ import annotations

import time

import torch

from benchmarks.common import markdown
from kd.students import create_student, scan_kernel
from kd.students.scan import selective_scan_chunked, selective_scan_reference

LENGTH = 8192


def _inputs(dim: int, groups: int, time_major: bool) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)

    def signal() -> torch.Tensor:
        if time_major:
            return torch.randn(1, LENGTH, dim, generator=g).transpose(1, 2)
        return torch.randn(1, dim, LENGTH, generator=g)

    u, delta = signal(), signal()
    A = -torch.rand(dim, 1, generator=g)
    B, C = (torch.randn(1, groups, 1, LENGTH, generator=g) for _ in "BC")
    return u, delta, A, B, C, torch.randn(dim, generator=g), None, torch.randn(dim, generator=g), True


def _best_time(fn: object, args: tuple, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - start)
    return best


def _diff(a: torch.Tensor, b: torch.Tensor) -> str:
    return f"{(a.double() - b.double()).abs().max().item():.1e}"


def student_outputs(name: str = "dass-mini-p16", seconds: float = 10.0) -> dict:
    """Logits of one student on the same audio with the chunked and the sequential scan (eval mode, inference)."""
    torch.manual_seed(0)
    model = create_student(name).eval()
    wave = torch.randn(1, int(seconds * 32000)) * 0.1
    logits = {}
    with torch.inference_mode():
        for backend in ("chunked", "reference"):
            for module in model.modules():
                if hasattr(module, "scan_backend"):
                    module.scan_backend = backend
            logits[backend] = model(wave)
    return {
        "shape": f"{name} logits, {seconds:g} s of noise, eval",
        "max_abs_diff_vs_sequential": _diff(logits["chunked"], logits["reference"]),
        "max_abs_logit": f"{logits['reference'].abs().max().item():.2f}",
    }


def run(quick: bool = False) -> list[dict]:
    """Times both backends (best of a few runs, inference mode) on each shape; returns one row per shape and, last,
    the student-output check."""
    cases = [("1 route, time-major", 96, 1, True), ("4 routes, time-major", 384, 4, True)]
    if not quick:
        cases.append(("4 routes, time-contiguous", 384, 4, False))
    rows = []
    with torch.inference_mode():
        for label, dim, groups, time_major in cases:
            args = _inputs(dim, groups, time_major)
            chunked = _best_time(selective_scan_chunked, args, 3 if quick else 20)
            with scan_kernel.turned_off():
                ops = _best_time(selective_scan_chunked, args, 3 if quick else 20)
            sequential = _best_time(selective_scan_reference, args, 1 if quick else 5)
            truth = selective_scan_reference(*(t.double() if isinstance(t, torch.Tensor) else t for t in args))
            rows.append(
                {
                    "shape": f"{label}: batch 1, dim {dim}, N 1, L {LENGTH}",
                    "sequential_ms": round(sequential * 1e3, 1),
                    "chunked_ms": round(chunked * 1e3, 2),
                    "speedup": round(sequential / chunked, 1),
                    "torch_ops_ms": round(ops * 1e3, 2),
                    "torch_ops_speedup": round(sequential / ops, 1),
                    "chunked_vs_float64": _diff(selective_scan_chunked(*args), truth),
                    "sequential_vs_float64": _diff(selective_scan_reference(*args), truth),
                    "chunked_vs_sequential": _diff(selective_scan_chunked(*args), selective_scan_reference(*args)),
                }
            )
    rows.append(student_outputs())
    return rows


if __name__ == "__main__":
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {scan_kernel.describe()}")
    print(markdown(run()))
