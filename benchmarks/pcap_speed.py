"""Capture import speed: a synthetic pcap of >= 1M packets imported by `homecall import`, one core.

The capture comes from `benchmarks/synthetic_pcap.py` (an office uplink: DNS lookups, HTTPS
sessions with TLS handshakes, plain HTTP, NTP, pings and five HTTP beacons; real headers and
sequence numbers). `homecall -q import` runs pinned to one core with `taskset -c 0` (when
taskset exists), so parsing, the flow table, the application parsers, the Parquet writing and
the content hash all share that core; the time is the whole command. Reports packets/s by wall
time and by the command's CPU time (user + system: what one core spent, whatever else ran on
the machine), the rows written per table and the import process's peak RSS
(docs/performance.md).

    python benchmarks/pcap_speed.py [--packets 1000000] [--keep DIR] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.synthetic_pcap import write_capture
from homecall.store import Store

SAMPLE_BYTES = 4_000_000  # a small capture first, to size the real one for the packet count


def _bytes_per_packet(work: Path, seed: int) -> float:
    sample = work / "sample.pcap"
    count = write_capture(sample, SAMPLE_BYTES, seed)
    size = sample.stat().st_size
    sample.unlink()
    return size / count


def build(path: Path, packets: int, seed: int) -> int:
    """Write a capture of at least `packets` packets to `path`; returns the packets written."""
    per_packet = _bytes_per_packet(path.parent, seed)
    target = int(packets * per_packet * 1.03)
    while True:
        written = write_capture(path, target, seed)
        if written >= packets:
            return written
        target = int(target * packets / written * 1.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="homecall-pcap-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    capture = work / f"synthetic-{args.packets}-{args.seed}.pcap"
    count_file = capture.with_suffix(".count")
    if not capture.exists() or not count_file.exists():
        started = time.perf_counter()
        count = build(capture, args.packets, args.seed)
        count_file.write_text(str(count))
        print(
            f"generated {count:,} packets ({capture.stat().st_size / 1e9:.2f} GB)"
            f" in {time.perf_counter() - started:.1f} s"
        )
    count = int(count_file.read_text())
    store = work / "store"
    shutil.rmtree(store, ignore_errors=True)
    homecall = Path(sys.executable).with_name("homecall")
    command = [str(homecall), "-q", "import", str(capture), "--store", str(store)]
    pinned = shutil.which("taskset") is not None
    if pinned:
        command = ["taskset", "-c", "0", *command]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    peak_mb = after.ru_maxrss / 1024
    rows = Store(store).row_counts()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"pinned to one core: {'yes (taskset -c 0)' if pinned else 'no (no taskset)'}")
    print(f"import: {count:,} packets in {elapsed:.1f} s = {count / elapsed:,.0f} packets/s")
    print(f"CPU time of the import: {cpu:.1f} s = {count / cpu:,.0f} packets per CPU second")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (wall time counts other processes)")
    print(f"rows: {dict(sorted(rows.items()))}")
    print(f"peak RSS of the import process: {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
