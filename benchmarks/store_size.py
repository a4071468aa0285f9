"""Store size: bytes per clip-view-teacher for k = 10, 20, 50, 527 with the store's codec, against alternatives.

The arrays are written with a teacher group's dtypes and codec from real mn04 outputs on the shared clips (4 views
each), in one chunk of all clips: a store's chunks hold 64 clips, and there are only 52 shared clips, so a 64-row
chunk would be part padding (an uncompressed edge chunk is stored at full size). Bytes are what lands on disk for
`logits`, `indices` and `rest` (chunk data and the shard index, not the constant `zarr.json`); raw is
k * (2 + 2) + 2 bytes. A real store's 512-clip shard index adds about 0.07 B per view.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import MN04, markdown, repeats, stored_topk, teacher_outputs, timed

KS = (10, 20, 50, 527)
VIEWS = 4


def codecs() -> dict[str, list]:
    from zarr.codecs import BloscCodec, ZstdCodec

    return {
        "blosc zstd-5 byte-shuffle (kd)": [BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")],
        "blosc zstd-5 bit-shuffle": [BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")],
        "blosc lz4-5 byte-shuffle": [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")],
        "zstd-5, no shuffle": [ZstdCodec(level=5)],
        "none": [],
    }


def write_arrays(path: Path, data: dict[str, np.ndarray], compressors: list) -> None:
    """Writes a teacher group's three top-k arrays (sharded like the store, one full chunk) with the given codec."""
    import zarr

    group = zarr.open_group(str(path), mode="w")
    n, v, k = data["logits"].shape
    rows = min(64, n)
    for name in ("logits", "indices", "rest"):
        values = data[name]
        shards = (rows, v, k)[: values.ndim]
        chunks = (rows, v, k)[: values.ndim]
        array = group.create_array(
            name, shape=values.shape, dtype=values.dtype, shards=shards, chunks=chunks, compressors=compressors
        )
        array[:] = values


def stored_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.name != "zarr.json")


def read_arrays(path: Path) -> None:
    import zarr

    group = zarr.open_group(str(path), mode="r")
    for name in ("logits", "indices", "rest"):
        group[name][:]


def run(quick: bool = False) -> list[dict]:
    """One row per (k, codec): bytes per clip-view-teacher, compression ratio vs raw, write and read time."""
    outputs = teacher_outputs(MN04, quick, 2 if quick else VIEWS)
    directory = Path(tempfile.mkdtemp(prefix="kd-bench-size-"))
    rows = []
    for k in KS:
        data = stored_topk(outputs, k)
        items = data["rest"].size
        raw = data["logits"].shape[-1] * 4 + 2
        for name, compressors in codecs().items():
            path = directory / f"k{k}-{len(rows)}.zarr"
            writes = [
                timed(lambda p=path, c=compressors, d=data: write_arrays(p, d, c))[0] for _ in range(repeats(quick))
            ]
            reads = [timed(lambda p=path: read_arrays(p))[0] for _ in range(repeats(quick))]
            size = stored_bytes(path) / items
            rows.append(
                {
                    "k": data["logits"].shape[-1],
                    "codec": name,
                    "bytes_per_view": round(size, 1),
                    "raw_bytes_per_view": raw,
                    "ratio_vs_raw": round(raw / size, 2),
                    "write_us_per_view": round(statistics.median(writes) / items * 1e6, 1),
                    "read_us_per_view": round(statistics.median(reads) / items * 1e6, 1),
                    "rows": items,
                }
            )
    shutil.rmtree(directory, ignore_errors=True)
    return rows


if __name__ == "__main__":
    print(markdown(run(quick="--quick" in sys.argv)))
