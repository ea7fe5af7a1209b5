"""DGA-infected hosts: bursts of lookups of the day's generated names, nearly all NXDOMAIN, until
one the operator registered resolves and the malware calls its C2 (truth.DgaTruth)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from homecall.simulator.addresses import draw_public_ips, int_to_ip
from homecall.simulator.calls import Calls, CallStyle, call_flows
from homecall.simulator.dga import FAMILIES, DgaFamily
from homecall.simulator.dns import Queries, query_flows
from homecall.simulator.flows import Flows, concat, strings
from homecall.simulator.hosts import Fleet, Presence, is_on_at
from homecall.simulator.internet import HOSTING
from homecall.simulator.truth import DgaTruth, iso_utc
from homecall.simulator.web import Sizes

__all__ = ["DGA_TTL_S", "DgaRun", "dga_count", "dga_day", "dga_truth", "plan_dga"]

DGA_TTL_S = 300  # the registered names' A record (registrar default)
DAY_S = 86_400
MIN_BURST_GAP_S = 900.0  # a burst never starts while the previous one may still run
_BURST_SIGMA = 0.5  # spread of log(gap between bursts): the malware sleeps a random while
_STARTUP_DELAY_S = (60.0, 300.0)  # a laptop's first burst after power-on (start-up run key)
_USER_AGENT = "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0)"
_HTTP_SIZES = Sizes(700, 1_400, 0.4, 0.5)  # a small POST of host data, a small task back
_TLS_SIZES = Sizes(1_300, 4_200, 0.6, 0.5)


@dataclass(frozen=True, slots=True)
class _Operation:
    """What the operator of one family does: its C2 server and the names registered each day."""

    c2: int
    names: list[list[str]]  # per simulated day, the family's generated names
    registered: list[set[int]]  # per day, indexes into names that resolve to c2


@dataclass(frozen=True, slots=True)
class DgaRun:
    """One infected host's DGA lookups and C2 calls over the whole simulation."""

    family: DgaFamily
    host_ip: int
    c2: int
    queries: Queries
    calls: Calls
    bursts: int
    registered: tuple[tuple[int, str], ...] = ()  # (day, name) the family's operator registered


def dga_count(hosts: int) -> int:
    """DGA-infected hosts: none under 20 hosts, then one more per 60 hosts, at most four."""
    return 0 if hosts < 20 else min(len(FAMILIES) + 1, 1 + hosts // 60)


def plan_dga(
    rng: np.random.Generator,
    hosts: Sequence[int],
    fleet: Fleet,
    presence: Presence,
    dates: Sequence[dt.date],
    used_ips: set[int],
    taken_names: set[str],
) -> list[DgaRun]:
    """The i-th host runs FAMILIES[i % 3]; hosts of one family share its names and C2."""
    start_s = dt.datetime(dates[0].year, dates[0].month, dates[0].day, tzinfo=dt.UTC).timestamp()
    operations: dict[int, _Operation] = {}
    runs = []
    for i, host in enumerate(hosts):
        k = i % len(FAMILIES)
        if k not in operations:
            operations[k] = _operate(rng, FAMILIES[k], dates, used_ips, taken_names)
        runs.append(_infect(rng, FAMILIES[k], operations[k], fleet, presence, host, start_s))
    return runs


def _operate(
    rng: np.random.Generator,
    family: DgaFamily,
    dates: Sequence[dt.date],
    used_ips: set[int],
    taken: set[str],
) -> _Operation:
    c2 = draw_public_ips(rng, HOSTING.blocks, 1, used_ips)[0]
    names, registered = [], []
    for date in dates:
        generated = family.generate(date, family.key, family.names_per_day)
        day_names = [name for name in generated if name not in taken]  # never a real site
        names.append(day_names)
        picked = rng.choice(len(day_names), size=family.registered_per_day, replace=False)
        registered.append({int(i) for i in picked})
    return _Operation(c2, names, registered)


def _burst_times(
    rng: np.random.Generator,
    family: DgaFamily,
    fleet: Fleet,
    presence: Presence,
    host: int,
    start_s: float,
    days: int,
) -> npt.NDArray[np.float64]:
    """Bursts at random gaps while the machine is on, and one at each power-on of a laptop."""
    gap = family.burst_gap_s
    count = int(days * DAY_S / (gap * 0.3)) + 4
    gaps = rng.lognormal(np.log(gap), _BURST_SIGMA, size=count)
    times = start_s + rng.random() * gap + np.concatenate([[0.0], np.cumsum(gaps)])
    times = times[times < start_s + days * DAY_S - 600]
    times = times[is_on_at(fleet, presence, host, times, start_s)]
    if fleet.is_laptop[host]:
        arrive = presence.arrive_s[:, host]
        days_on = np.flatnonzero(~np.isnan(arrive))
        boot = start_s + days_on * DAY_S + arrive[days_on] - 900  # hosts.is_on: on 15 min early
        times = np.concatenate([times, boot + rng.uniform(*_STARTUP_DELAY_S, size=boot.size)])
    kept: list[float] = []
    for t in np.sort(times).tolist():
        if not kept or t - kept[-1] >= MIN_BURST_GAP_S:
            kept.append(t)
    return np.array(kept, dtype=np.float64)


def _infect(
    rng: np.random.Generator,
    family: DgaFamily,
    operation: _Operation,
    fleet: Fleet,
    presence: Presence,
    host: int,
    start_s: float,
) -> DgaRun:
    days = len(operation.names)
    end_s = start_s + days * DAY_S
    bursts = _burst_times(rng, family, fleet, presence, host, start_s, days)
    ts_s: list[npt.NDArray[np.float64]] = []
    names: list[str] = []
    hits: list[bool] = []
    call_s: list[float] = []
    call_names: list[str] = []
    for t in bursts:
        day = int((t - start_s) // DAY_S)
        day_names, registered = operation.names[day], operation.registered[day]
        tried = _order(rng, family, len(day_names))
        found = [i for i, index in enumerate(tried) if int(index) in registered]
        if found:
            tried = tried[: found[0] + 1]
        gaps = rng.exponential(family.query_gap_s, size=tried.size)
        ts_s.append(t + np.cumsum(gaps) - gaps[0])
        names.extend(day_names[int(i)] for i in tried)
        hits.extend([False] * (tried.size - 1) + [bool(found)])
        if found:
            extra = rng.uniform(2.0, 60.0, size=int(rng.integers(0, 3)))
            first = ts_s[-1][-1] + rng.uniform(0.4, 1.5)  # once the answer is in
            call_s.extend([first, *(first + np.sort(extra))])
            call_names.extend([day_names[int(tried[-1])]] * (1 + extra.size))
    host_ip = int(fleet.ips[host])
    times = np.concatenate(ts_s) if ts_s else np.zeros(0)
    queries = _queries(rng, host_ip, operation.c2, times, names, np.array(hits, np.bool_))
    queries = queries.take(times < end_s)
    calls = _calls(host_ip, operation.c2, call_s, call_names, end_s)
    booked = tuple(
        (day, operation.names[day][i])
        for day in range(days)
        for i in sorted(operation.registered[day])
    )
    return DgaRun(family, host_ip, operation.c2, queries, calls, int(bursts.size), booked)


def _order(rng: np.random.Generator, family: DgaFamily, n: int) -> npt.NDArray[np.int64]:
    """The names one burst tries, in order: a walk from a random start, or a random draw."""
    k = min(family.names_per_burst, n)
    if family.is_sequential:
        return (int(rng.integers(n)) + np.arange(k, dtype=np.int64)) % n
    return rng.choice(n, size=k, replace=False).astype(np.int64)


def _queries(
    rng: np.random.Generator,
    host_ip: int,
    c2: int,
    times: npt.NDArray[np.float64],
    names: list[str],
    hit: npt.NDArray[np.bool_],
) -> Queries:
    n = len(names)
    rtt = np.where(
        hit, rng.lognormal(np.log(70_000), 0.4, n), rng.lognormal(np.log(40_000), 0.6, n)
    )
    return Queries(
        host_ip=np.full(n, host_ip, dtype=np.uint32),
        ts_us=np.round(times * 1e6).astype(np.int64),
        query=strings(names),
        qtype=np.ones(n, dtype=np.int64),
        rcode=np.where(hit, 0, 3).astype(np.int64),
        answers=pa.array([int_to_ip(c2) if h else None for h in hit], pa.string()),
        ttl_s=np.where(hit, DGA_TTL_S, 0).astype(np.int64),
        rtt_us=rtt.astype(np.int64),
    )


def _calls(host_ip: int, c2: int, call_s: list[float], names: list[str], end_s: float) -> Calls:
    times = np.array(call_s, dtype=np.float64)
    keep = np.flatnonzero(times < end_s)
    n = keep.size
    return Calls(
        np.full(n, host_ip, dtype=np.uint32),
        np.round(times[keep] * 1e6).astype(np.int64),
        np.full(n, c2, dtype=np.uint32),
        strings([names[i] for i in keep]),
    )


def _style(family: DgaFamily) -> CallStyle:
    if family.protocol == "https":  # a self-signed certificate on the C2
        return CallStyle(443, _TLS_SIZES)
    return CallStyle(
        80,
        _HTTP_SIZES,
        user_agent=_USER_AGENT,
        uri=family.uri,
        method=family.method,
        mime="application/octet-stream",
    )


def dga_day(rng: np.random.Generator, run: DgaRun, day_start_us: int) -> Flows:
    """One day of a DGA host: its lookups and the calls that followed a resolved name."""
    end_us = day_start_us + DAY_S * 1_000_000
    return concat(
        [
            query_flows(rng, run.queries.between(day_start_us, end_us)),
            call_flows(rng, run.calls.between(day_start_us, end_us), _style(run.family)),
        ]
    )


def dga_truth(run: DgaRun) -> DgaTruth:
    """What a DGA detector should find about this host."""
    queries = run.queries
    names = queries.query.to_pylist()
    resolved = sorted({name for name, rcode in zip(names, queries.rcode, strict=True) if not rcode})
    moments = np.concatenate([queries.ts_us, run.calls.ts_us])
    return DgaTruth(
        src=int_to_ip(run.host_ip),
        family=run.family.name,
        c2=int_to_ip(run.c2),
        c2_port=443 if run.family.protocol == "https" else 80,
        protocol=run.family.protocol,
        bursts=run.bursts,
        queries=len(queries),
        domains_tried=len(set(names)),
        nxdomains=int((queries.rcode == 3).sum()),
        resolved_domains=tuple(resolved),
        c2_connections=len(run.calls),
        first_seen=iso_utc(int(moments.min())) if moments.size else None,
        last_seen=iso_utc(int(moments.max())) if moments.size else None,
    )
