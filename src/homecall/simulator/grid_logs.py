"""The beacon grid as Zeek logs: `homecall simulate --grid`, for hunting the benchmark traffic
end to end (readers, store, detectors) rather than through the scoring functions alone.

Every series of `simulator.grid` (implants over every cell, and the irregular null) becomes one
internal host talking to one external address, over 30 days of daily conn.log files; a series
whose window is shorter (24 h, 7 days) stops when its window ends. `truth.json` lists them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from homecall.simulator.addresses import int_to_ip, ip_to_int
from homecall.simulator.flows import Flows, concat, finalize, tcp_conns
from homecall.simulator.grid import (
    DAY_S,
    NULL_KINDS,
    SLEEPS_S,
    Series,
    beacon_series,
    cells,
    null_series,
    window_for,
)
from homecall.simulator.zeeklog import write_log

__all__ = ["GRID_DAYS", "write_grid"]

GRID_DAYS = 30  # the longest window of the grid (daily sleeps)
_FIRST_HOST = ip_to_int("10.200.0.1")
_FIRST_DST = ip_to_int("198.18.0.1")  # RFC 2544 benchmarking range: never a real destination


def write_grid(
    out: Path,
    *,
    replicates: int = 1,
    nulls: int = 100,
    seed: int = 0,
    sleeps_s: Sequence[float] = SLEEPS_S,
    start: dt.date = dt.date(2026, 11, 2),
) -> dict[str, int]:
    """Write the grid's conn logs and truth.json under `out`; returns rows per day folder."""
    rng = np.random.default_rng(seed)
    series: list[tuple[dict[str, object], Series]] = []
    for cell in cells():
        if cell.sleep_s not in sleeps_s:
            continue
        for r in range(replicates):
            series.append(
                ({"kind": "beacon", "replicate": r, **asdict(cell)}, beacon_series(rng, cell))
            )
    for window in sorted({window_for(s) for s in sleeps_s}):
        for i in range(nulls):
            kind = NULL_KINDS[i % len(NULL_KINDS)]
            series.append(({"kind": kind, "window_s": window}, null_series(rng, kind, window)))
    t0_us = int(dt.datetime.combine(start, dt.time(), dt.UTC).timestamp()) * 1_000_000
    truth = []
    parts: list[list[Flows]] = [[] for _ in range(GRID_DAYS)]
    for index, (label, s) in enumerate(series):
        src, dst = _FIRST_HOST + index, _FIRST_DST + index
        truth.append({"src": int_to_ip(src), "dst": int_to_ip(dst), "dst_port": 443, **label})
        ts_us = t0_us + np.round(s.ts_s * 1e6).astype(np.int64)
        day = ((ts_us - t0_us) // int(DAY_S * 1e6)).astype(np.int64)
        for d in np.unique(day):
            rows = day == d
            n = int(rows.sum())
            parts[int(d)].append(
                Flows(
                    conn=tcp_conns(
                        rng,
                        ts_us=ts_us[rows],
                        orig_h=np.full(n, src, dtype=np.uint32),
                        resp_h=np.full(n, dst, dtype=np.uint32),
                        resp_p=443,
                        service="ssl",
                        orig_bytes=s.bytes_out[rows],
                        resp_bytes=s.bytes_in[rows],
                        duration_us=rng.integers(50_000, 2_000_000, n),
                        state=np.zeros(n, dtype=np.int64),
                    )
                )
            )
    written: dict[str, int] = {}
    for d, flows in enumerate(parts):
        if not flows:
            continue
        date = start + dt.timedelta(days=d)
        folder = out / date.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        logs = finalize(concat(flows), rng)
        opened = dt.datetime.combine(date, dt.time(), dt.UTC)
        rows = write_log(
            folder / "conn.log", "conn", logs["conn"], opened, opened + dt.timedelta(days=1)
        )
        written[date.isoformat()] = rows
    (out / "truth.json").write_text(json.dumps({"seed": seed, "series": truth}, indent=1))
    return written
