"""`homecall pcap search` on a 1 GB capture: how long a search takes once the capture is indexed.

Writes a synthetic capture (`benchmarks/synthetic_pcap.py`: 2,000 hosts, HTTPS, HTTP, DNS, NTP,
ICMP and five HTTP beacons, about 1.2M packets for 1 GB), indexes it with `homecall pcap index`
(timed, with its peak RSS), then runs searches: a beacon host, the busiest host, a beacon host
and its C2 port, ten minutes of everything, the largest flow by uid, and a finding (a beacon
finding saved in the store, as `homecall hunt` would). Each search runs as the `homecall pcap
search` command in a fresh process, first cold (the capture's and the store's pages dropped
from the page cache with posix_fadvise, so they are read from disk) then warm (best of three),
timed twice: the whole command, Python start-up and imports included, and the command alone
(docs/performance.md).

    python benchmarks/pcap_search.py [--bytes 1000000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from benchmarks.synthetic_pcap import BEACONS, START_US, write_capture
from homecall.findings import Finding
from homecall.pipeline import save_findings
from homecall.store import Store

HOMECALL = Path(sys.executable).with_name("homecall")  # the console script beside this Python
WARM_RUNS = 3
# `homecall ARGS` in this process, timing the command apart from Python's start-up and imports
CHILD = """
import sys, time
from homecall.cli import app
started = time.perf_counter()
try:
    app(sys.argv[1:], prog_name="homecall")
except SystemExit as exit:
    if exit.code:
        raise
print(f"COMMAND_S {time.perf_counter() - started}")
"""


def _homecall(*args: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([str(HOMECALL), "-q", *args], check=True, capture_output=True, text=True)
    return time.perf_counter() - started, done.stdout


def _timed(args: list[str]) -> tuple[float, float, float, str]:
    """Whole command s, command without start-up s, CPU s (user + system, every thread) and
    output of `homecall -q ARGS` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, "-q", *args], check=True, capture_output=True, text=True
    )
    whole = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    found = re.search(r"COMMAND_S ([\d.]+)", done.stdout)
    assert found is not None, done.stdout
    return whole, float(found.group(1)), cpu, done.stdout


def _drop_cache(paths: list[Path]) -> None:
    """Evict the files' pages from the page cache (no root needed for clean pages)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _busiest(store: Store) -> tuple[str, str]:
    """The internal host with most packets, and the uid of the flow with most packets."""
    files = ", ".join(f"'{f}'" for f in store.files("packets"))
    scan = f"read_parquet([{files}], hive_partitioning = false)"
    con = duckdb.connect()
    (host,) = con.execute(
        f"SELECT orig_ip FROM {scan} WHERE orig_ip LIKE '10.%' GROUP BY 1 ORDER BY count(*) DESC"
        " LIMIT 1"
    ).fetchall()[0]
    (uid,) = con.execute(
        f"SELECT uid FROM {scan} GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
    ).fetchall()[0]
    return str(host), str(uid)


def _save_beacon_finding(store: Store) -> None:
    """A beacon finding about BEACONS[0], spanning the capture, as a hunt would save it."""
    src, dst, port = BEACONS[0]
    first = datetime.fromtimestamp(START_US / 1e6, UTC)
    last = datetime.fromtimestamp(START_US / 1e6 + 4 * 3600, UTC)
    finding = Finding(
        detector="beacon",
        src=src,
        dst=dst,
        dst_port=port,
        score=0.95,
        first_seen=first,
        last_seen=last,
        summary=f"{src} connected to {dst}:{port} about every 60 s.",
        evidence={"uids": []},
    )
    save_findings(store, [finding])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bytes", type=float, default=1e9, help="capture size (default 1 GB)")
    parser.add_argument("--keep", type=Path, help="write the capture and the store here, keep them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        capture = root / "synthetic.pcap"
        if not capture.exists():
            started = time.perf_counter()
            packets = write_capture(capture, int(args.bytes), seed=0)
            print(f"wrote {packets:,} packets ({capture.stat().st_size:,} bytes) in"
                  f" {time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
        store = Store(root / "store")
        if not store.row_counts().get("packets"):
            seconds, _ = _homecall("pcap", "index", str(capture), "--store", str(store.root))
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(f"index: {seconds:.1f} s, peak RSS {rss:.0f} MB", flush=True)
        rows = store.row_counts()
        print(f"rows: packets {rows.get('packets', 0):,}, conn {rows.get('conn', 0):,}")
        _save_beacon_finding(store)
        busy, uid = _busiest(store)
        beacon, _, port = BEACONS[0]
        ten_min_start = START_US // 1_000_000 + 2 * 3600
        searches = {
            "beacon host": ["--host", beacon],
            "busiest host": ["--host", busy],
            "beacon host + port": ["--host", beacon, "--port", str(port)],
            "10 minutes": ["--start", str(ten_min_start), "--end", str(ten_min_start + 600)],
            "largest flow (uid)": ["--uid", uid],
            "finding #1": ["--finding", "1"],
        }
        cached = [capture, *(root / "store").rglob("*.parquet")]
        out = root / "out.pcap"
        print("seconds: whole command (Python start-up included) / the search alone; CPU s")
        print(f"{'search':20s} {'packets':>9s} {'cold':>13s} {'warm':>13s} {'cpu':>5s}")
        for name, options in searches.items():
            command = ["pcap", "search", "--store", str(store.root), *options, "-o", str(out)]
            out.unlink(missing_ok=True)
            _drop_cache(cached)
            cold_whole, cold_search, _, text = _timed(command)
            warm = []
            for _ in range(WARM_RUNS):
                out.unlink(missing_ok=True)
                warm.append(_timed(command)[:3])
            warm_whole, warm_search, cpu = min(warm)
            found = re.search(r"Wrote ([\d,]+) packets", text)
            count = found.group(1) if found else "0"
            print(
                f"{name:20s} {count:>9s} {cold_whole:5.2f} / {cold_search:4.2f}"
                f" {warm_whole:5.2f} / {warm_search:4.2f} {cpu:5.2f}",
                flush=True,
            )
        startup, _ = _homecall("version")
        print(f"(start-up alone: `homecall version` takes {startup:.2f} s)")


if __name__ == "__main__":
    main()
