"""DASS-small inference cost against audio duration: forward time and peak memory for 10 s to 1 h of audio.

Each duration runs in its own subprocess, so its peak resident memory (`resource.getrusage` high-water mark) is its
own. Targets: cost per second of audio within 1.5x of the 10 s figure; 3600 s must finish on a 24 GB, 2-core machine.
Batch 1, inference mode, random waveforms (the cost does not depend on the content). Children inherit
OMP_NUM_THREADS; on a shared 2-core machine use 1 (see benchmarks/scan.py).
"""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.common import markdown

DURATIONS = (10, 60, 600, 3600)
QUICK_DURATIONS = (10, 60)

_CHILD = """
import json, resource, sys, time
import torch
from kd.students import create_student
seconds, name = float(sys.argv[1]), sys.argv[2]
model = create_student(name).eval()
with torch.inference_mode():
    model(torch.randn(1, 16000))  # warm-up
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    waves = torch.randn(1, int(seconds * 16000), generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    logits = model(waves)
    elapsed = time.perf_counter() - start
assert torch.isfinite(logits).all()
print(json.dumps({"seconds": elapsed, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_before_mb": rss_before / 1024, "threads": torch.get_num_threads()}))
"""


def measure(duration_s: float, student: str = "dass-small") -> dict:
    """Runs one forward pass over `duration_s` seconds of audio in a fresh process; returns its figures."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(duration_s), student], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool = False, student: str = "dass-small") -> list[dict]:
    """Measures each duration (10 s and 60 s when `quick`); returns one row per duration."""
    rows, base = [], None
    for duration in QUICK_DURATIONS if quick else DURATIONS:
        result = measure(duration, student)
        per_second = result["seconds"] / duration
        base = base or per_second
        rows.append(
            {
                "audio_s": duration,
                "forward_s": round(result["seconds"], 2),
                "ms_per_audio_s": round(per_second * 1e3, 2),
                "vs_10s": round(per_second / base, 2),
                "peak_rss_mb": round(result["peak_rss_mb"]),
            }
        )
    return rows


if __name__ == "__main__":
    print(markdown(run(quick="--quick" in sys.argv)))
