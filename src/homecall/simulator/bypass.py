"""DNS past the internal resolver (truth.BypassTruth): a C2 implant that resolves its server's name
through a public resolver over plain UDP/53, and a browser sending its DNS over HTTPS.

Malware often carries its own resolver address (8.8.8.8, 1.1.1.1) so that the company's DNS logs
and filters never see its lookups; browsers send DNS over HTTPS once a user turns "secure DNS" on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from homecall.simulator.addresses import int_to_ip, ip_to_int
from homecall.simulator.c2 import C2Plan
from homecall.simulator.calls import Calls, CallStyle, call_flows
from homecall.simulator.dns import Queries, query_flows, resolve_times
from homecall.simulator.flows import Flows, concat, strings
from homecall.simulator.hosts import Fleet, Presence
from homecall.simulator.truth import BypassTruth, iso_utc
from homecall.simulator.web import Sizes

__all__ = [
    "DOH_SERVICES",
    "PUBLIC_RESOLVERS",
    "DohRun",
    "DohService",
    "PlainRun",
    "bypass_count",
    "doh_day",
    "doh_truth",
    "plain_day",
    "plain_truth",
    "plan_doh",
    "plan_plain",
]

DAY_S = 86_400
PUBLIC_RESOLVERS = ("8.8.8.8", "1.1.1.1")  # the addresses malware hard-codes most
DOH_GAP_S = 300.0  # mean gap between the browser's new connections to its DoH server (Poisson)
_PUBLIC_RTT_US = 18_000  # median round trip to an anycast resolver, a cache hit there
_DOH_SIZES = Sizes(1_800, 6_500, 20.0, 0.8, keepalive_ratio=0.5)  # handshake + a few queries


@dataclass(frozen=True, slots=True)
class DohService:
    """A public DNS-over-HTTPS service: its name (TLS SNI), addresses and certificate."""

    name: str
    ips: tuple[str, ...]  # the name's A records, first one preferred by clients
    ttl_s: int  # TTL of those records
    issuer: str


DOH_SERVICES = (
    DohService("dns.google", ("8.8.8.8", "8.8.4.4"), 900, "WR2"),
    DohService(
        "cloudflare-dns.com",
        ("104.16.248.249", "104.16.249.249"),
        300,
        "DigiCert Global G2 TLS RSA SHA256 2020 CA1",
    ),
)


@dataclass(frozen=True, slots=True)
class PlainRun:
    """An implant's lookups of its C2 name, sent to a public resolver, not the internal one."""

    host_ip: int
    resolver: int
    queries: Queries


@dataclass(frozen=True, slots=True)
class DohRun:
    """A browser's DNS-over-HTTPS connections and the lookups of the service's own name."""

    host_ip: int
    service: DohService
    calls: Calls
    bootstrap: Queries  # through the internal resolver: the browser must find its DoH server


def bypass_count(hosts: int) -> int:
    """Hosts of each bypass kind: none under 20 hosts, then one."""
    return 0 if hosts < 20 else 1


def plan_plain(
    rng: np.random.Generator,
    plan: C2Plan,
    host_ip: int,
    lookup_us: npt.NDArray[np.int64],
    start_us: int,
) -> PlainRun:
    """The implant's lookups of plan.domain, each answered just before the connection at
    lookup_us, sent to one of PUBLIC_RESOLVERS (a cache hit there: part of the TTL is left)."""
    if plan.domain is None:
        raise ValueError("an implant calling its server's IP looks nothing up")
    n = lookup_us.size
    resolver = ip_to_int(PUBLIC_RESOLVERS[int(rng.integers(len(PUBLIC_RESOLVERS)))])
    rtt = rng.lognormal(np.log(_PUBLIC_RTT_US), 0.4, n).astype(np.int64)
    sent = np.maximum(lookup_us - rtt - rng.integers(200, 3_000, size=n), start_us)
    queries = Queries(
        host_ip=np.full(n, host_ip, dtype=np.uint32),
        ts_us=sent.astype(np.int64),
        query=strings([plan.domain] * n),
        qtype=np.ones(n, dtype=np.int64),
        rcode=np.zeros(n, dtype=np.int64),
        answers=strings([int_to_ip(plan.dst)] * n),
        ttl_s=rng.integers(1, plan.ttl_s + 1, size=n).astype(np.int64),
        rtt_us=rtt,
    )
    return PlainRun(host_ip, resolver, queries)


def plan_doh(
    rng: np.random.Generator, host: int, fleet: Fleet, presence: Presence, start_s: float
) -> DohRun:
    """Connections at random (Poisson, DOH_GAP_S apart on average) while the user is in."""
    service = DOH_SERVICES[int(rng.integers(len(DOH_SERVICES)))]
    times = []
    for day in range(presence.arrive_s.shape[0]):
        arrive, leave = presence.arrive_s[day, host], presence.leave_s[day, host]
        if np.isnan(arrive):
            continue
        count = rng.poisson((leave - arrive) / DOH_GAP_S)
        times.append(start_s + day * DAY_S + np.sort(rng.uniform(arrive, leave, size=count)))
    conn_us = np.round(np.concatenate([np.zeros(0), *times]) * 1e6).astype(np.int64)
    n = conn_us.size
    addresses = np.array([ip_to_int(ip) for ip in service.ips], dtype=np.uint32)
    dst = addresses[(rng.random(n) < 0.2).astype(np.int64)]  # mostly the first record
    host_ip = int(fleet.ips[host])
    calls = Calls(np.full(n, host_ip, np.uint32), conn_us, dst, strings([service.name] * n))
    before = conn_us[resolve_times(conn_us, service.ttl_s)]
    k = before.size
    rtt = rng.lognormal(np.log(600), 0.5, k).astype(np.int64)  # in the internal resolver's cache
    bootstrap = Queries(
        host_ip=np.full(k, host_ip, dtype=np.uint32),
        ts_us=before - rtt - rng.integers(200, 3_000, size=k),
        query=strings([service.name] * k),
        qtype=np.ones(k, dtype=np.int64),
        rcode=np.zeros(k, dtype=np.int64),
        answers=strings([",".join(service.ips)] * k),
        ttl_s=rng.integers(1, service.ttl_s + 1, size=k).astype(np.int64),
        rtt_us=rtt,
    )
    return DohRun(host_ip, service, calls, bootstrap)


def plain_day(rng: np.random.Generator, run: PlainRun, day_start_us: int) -> Flows:
    """One day of the implant's lookups at the public resolver."""
    day = run.queries.between(day_start_us, day_start_us + DAY_S * 1_000_000)
    return query_flows(rng, day, resolver=run.resolver)


def doh_day(rng: np.random.Generator, run: DohRun, day_start_us: int) -> Flows:
    """One day of the browser's DoH connections and its lookups of the DoH server's name."""
    end_us = day_start_us + DAY_S * 1_000_000
    style = CallStyle(443, _DOH_SIZES, issuer=run.service.issuer, tls13=True)
    return concat(
        [
            query_flows(rng, run.bootstrap.between(day_start_us, end_us)),
            call_flows(rng, run.calls.between(day_start_us, end_us), style),
        ]
    )


def plain_truth(run: PlainRun) -> BypassTruth:
    """What a dns-bypass detector should find about the implant's lookups."""
    ts = run.queries.ts_us
    return BypassTruth(
        src=int_to_ip(run.host_ip),
        kind="plain-dns",
        resolver=int_to_ip(run.resolver),
        queries_or_connections=len(run.queries),
        first_seen=iso_utc(int(ts.min())),
        last_seen=iso_utc(int(ts.max())),
        dst_port=53,
        cause="c2-implant",
    )


def doh_truth(run: DohRun) -> BypassTruth | None:
    """What a dns-bypass detector should find about the browser; None if it never ran."""
    ts = run.calls.ts_us
    if not ts.size:
        return None
    return BypassTruth(
        src=int_to_ip(run.host_ip),
        kind="doh",
        resolver=run.service.name,
        queries_or_connections=len(run.calls),
        first_seen=iso_utc(int(ts.min())),
        last_seen=iso_utc(int(ts.max())),
        dst_port=443,
        cause="browser",
    )
