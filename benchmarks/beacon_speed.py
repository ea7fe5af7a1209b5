"""Beacon analysis speed: a 10M-row conn table of about 2.5M (host, destination) pairs.

Builds the store directly from Arrow batches (the import path is `benchmarks/ingest.py`'s
business), then times `homecall.pipeline.analyse(detectors=["beacon"])` in a child process and
reports its wall time and peak RSS (docs/performance.md).

    python benchmarks/beacon_speed.py [--rows 10000000] [--pairs 2500000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from benchmarks.synthetic import ips
from homecall.store import Store, schema_of

CHUNK = 1_000_000
T0_US = 1_764_201_600 * 1_000_000  # 2025-11-27 00:00 UTC


def build(store: Store, rows: int, pairs: int, seed: int = 0) -> None:
    """`rows` connections over one day spread over `pairs` pairs (heavy-tailed counts)."""
    rng = np.random.default_rng(seed)
    weights = rng.pareto(1.2, pairs) + 1
    pair_of_row = rng.choice(pairs, size=rows, p=weights / weights.sum())
    src = rng.integers(0, 20_000, pairs)  # 20k internal hosts
    dst = rng.integers(0, 2_000_000, pairs)  # external addresses
    schema = schema_of("conn")

    def batches():  # type: ignore[no-untyped-def]
        for start in range(0, rows, CHUNK):
            p = pair_of_row[start : start + CHUNK]
            n = len(p)
            ts = T0_US + rng.integers(0, 86_400_000_000, n)
            columns = {field.name: pa.nulls(n, field.type) for field in schema}
            columns["ts"] = pa.array(ts, pa.int64()).cast(schema.field("ts").type)
            columns["uid"] = pa.array(np.char.add("C", (start + np.arange(n)).astype(str)))
            columns["orig_ip"] = ips("10", src[p])
            columns["resp_ip"] = ips("93", dst[p])
            columns["orig_port"] = pa.array(rng.integers(1024, 65535, n), pa.int32())
            columns["resp_port"] = pa.array(np.full(n, 443), pa.int32())
            columns["orig_bytes"] = pa.array(rng.lognormal(6, 1, n).astype(np.int64))
            columns["resp_bytes"] = pa.array(rng.lognormal(8, 2, n).astype(np.int64))
            yield "conn", pa.RecordBatch.from_arrays(list(columns.values()), schema=schema)

    with store.importing() as job:
        job.add(Path("synthetic"), lambda: f"synthetic-{rows}-{pairs}-{seed}", "arrow", batches())


CHILD = """
import sys, time
from pathlib import Path
from homecall.config import Config
from homecall.pipeline import analyse
from homecall.store import Store
started = time.perf_counter()
found = analyse(Store(Path(sys.argv[1])), Config(), detectors=["beacon"])
print(f"{time.perf_counter() - started:.1f} {len(found)}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--pairs", type=int, default=2_500_000)
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="homecall-beacon-"))
    store = Store(work / "store")
    if not store.exists():
        started = time.perf_counter()
        build(store, args.rows, args.pairs)
        print(f"built {args.rows:,} rows in {time.perf_counter() - started:.1f} s")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(store.root)], check=True, capture_output=True, text=True
    ).stdout.split()
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"beacon analysis: {args.rows:,} rows, {args.pairs:,} pairs in {out[0]} s,")
    print(f"{out[1]} findings; peak RSS {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
