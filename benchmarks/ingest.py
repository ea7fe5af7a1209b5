"""Import throughput: a synthetic 10M-row Zeek conn.log, imported by `homecall import`.

Reports rows/s and the import process's peak RSS (docs/performance.md). Run with
`make bench` or `python benchmarks/ingest.py [--rows N] [--keep DIR]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

FIELDS = [
    "ts",
    "uid",
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "proto",
    "service",
    "duration",
    "orig_bytes",
    "resp_bytes",
    "conn_state",
    "local_orig",
    "local_resp",
    "missed_bytes",
    "history",
    "orig_pkts",
    "orig_ip_bytes",
    "resp_pkts",
    "resp_ip_bytes",
    "tunnel_parents",
]
TYPES = [
    "time",
    "string",
    "addr",
    "port",
    "addr",
    "port",
    "enum",
    "string",
    "interval",
    "count",
    "count",
    "string",
    "bool",
    "bool",
    "count",
    "string",
    "count",
    "count",
    "count",
    "count",
    "set[string]",
]
CHUNK = 1_000_000


def _ips(rng: np.random.Generator, n: int, internal: bool) -> pa.Array:
    if internal:
        a, b, c = np.full(n, 10), rng.integers(0, 4, n), rng.integers(0, 250, n)
    else:
        a, b, c = rng.integers(1, 223, n), rng.integers(0, 256, n), rng.integers(0, 256, n)
    d = rng.integers(1, 255, n)
    parts = [pa.array(x).cast(pa.string()) for x in (a, b, c, d)]
    return pc.binary_join_element_wise(*parts, ".")


def _chunk(rng: np.random.Generator, start: int, n: int, t0: float) -> pa.Table:
    ts = t0 + (start + np.arange(n)) * (86_400 / 10_000_000) + rng.uniform(0, 0.01, n)
    uid = pc.binary_join_element_wise(
        pa.scalar("C"), pa.array(start + np.arange(n)).cast(pa.string()), ""
    )
    states = np.array(["SF", "S0", "REJ", "RSTO", "SH"])[
        rng.choice(5, n, p=[0.8, 0.1, 0.04, 0.04, 0.02])
    ]
    orig_bytes = rng.lognormal(6, 1.5, n).astype(np.int64)
    resp_bytes = rng.lognormal(8, 2, n).astype(np.int64)
    columns = {
        "ts": pa.array(np.round(ts, 6)).cast(pa.string()),
        "uid": uid,
        "id.orig_h": _ips(rng, n, True),
        "id.orig_p": rng.integers(1024, 65535, n),
        "id.resp_h": _ips(rng, n, False),
        "id.resp_p": np.array([443, 80, 53, 123, 8080])[
            rng.choice(5, n, p=[0.7, 0.15, 0.1, 0.03, 0.02])
        ],
        "proto": np.full(n, "tcp"),
        "service": np.array(["ssl", "http", "-"])[rng.choice(3, n)],
        "duration": np.round(rng.exponential(5, n), 6),
        "orig_bytes": orig_bytes,
        "resp_bytes": resp_bytes,
        "conn_state": states,
        "local_orig": np.full(n, "T"),
        "local_resp": np.full(n, "F"),
        "missed_bytes": np.zeros(n, dtype=np.int64),
        "history": np.array(["ShADadFf", "S", "Sr", "ShADR"])[rng.choice(4, n)],
        "orig_pkts": orig_bytes // 500 + 2,
        "orig_ip_bytes": orig_bytes + 80,
        "resp_pkts": resp_bytes // 1000 + 2,
        "resp_ip_bytes": resp_bytes + 80,
        "tunnel_parents": np.full(n, "(empty)"),
    }
    return pa.table(
        {k: pa.array(v) if not isinstance(v, pa.Array) else v for k, v in columns.items()}
    )


def write_conn_log(path: Path, rows: int, seed: int = 0) -> None:
    """A Zeek 6 TSV conn.log of `rows` records of plausible enterprise traffic over one day."""
    rng = np.random.default_rng(seed)
    t0 = 1_764_201_600.0  # 2025-11-27 00:00 UTC
    options = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    with path.open("wb") as out:
        header = (
            "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n"
            "#path\tconn\n#open\t2025-11-27-00-00-00\n"
            "#fields\t" + "\t".join(FIELDS) + "\n#types\t" + "\t".join(TYPES) + "\n"
        )
        out.write(header.encode())
        for start in range(0, rows, CHUNK):
            pacsv.write_csv(_chunk(rng, start, min(CHUNK, rows - start), t0), out, options)
        out.write(b"#close\t2025-11-28-00-00-00\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="homecall-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "conn.log"
    if not log.exists():
        started = time.perf_counter()
        write_conn_log(log, args.rows)
        print(
            f"generated {args.rows:,} rows ({log.stat().st_size / 1e9:.2f} GB)"
            f" in {time.perf_counter() - started:.1f} s"
        )
    store = work / "store"
    subprocess.run(["rm", "-rf", str(store)], check=True)
    homecall = Path(sys.executable).with_name("homecall")
    started = time.perf_counter()
    subprocess.run([str(homecall), "-q", "import", str(log), "--store", str(store)], check=True)
    elapsed = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    parquet_mb = sum(f.stat().st_size for f in store.rglob("*.parquet")) / 1e6
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"import: {args.rows:,} rows in {elapsed:.1f} s = {args.rows / elapsed:,.0f} rows/s")
    print(
        f"peak RSS of the import process: {peak_mb:,.0f} MB; Parquet written: {parquet_mb:,.0f} MB"
    )


if __name__ == "__main__":
    main()
