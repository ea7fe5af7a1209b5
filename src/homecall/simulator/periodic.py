"""Benign periodic traffic shared by many hosts: NTP, update checks, telemetry, AV, OCSP."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from homecall.simulator.addresses import int_to_ip
from homecall.simulator.c2 import checkin_times
from homecall.simulator.catalogue import Catalogue
from homecall.simulator.dns import lookups, resolve_times
from homecall.simulator.flows import Flows, concat, constant, udp_conns
from homecall.simulator.hosts import Fleet, Presence, at_work, is_on
from homecall.simulator.pages import page_requests
from homecall.simulator.truth import BenignPeriodic
from homecall.simulator.web import Sizes, draw_states, sized_conns, tls_rows

__all__ = ["SERVICES", "Service", "ServiceRun", "periodic_day", "periodic_truth", "plan_periodic"]

_US = 1_000_000
_MOSTLY_CLEAN = (0.99, 0.0, 0.0, 0.01, 0.0)


@dataclass(frozen=True, slots=True)
class Service:
    """A background service: who runs it, how often it calls home, how big each call is."""

    kind: str
    domain: str
    period_s: float  # mean interval (irregular services: mean gap while the user is in)
    jitter_ratio: float  # symmetric jitter of the interval
    host_ratio: float  # share of hosts running it
    sizes: Sizes
    irregular: bool = False  # lognormal gaps, only while the user browses (OCSP)


SERVICES = (
    # ntpd at maxpoll (2^10 s), to the pool server it picked
    Service("ntp", "pool.ntp.org", 1024, 0.002, 1.0, Sizes(48, 48, 0.012)),
    Service(
        "os-update", "fe3cr.delivery.mp.microsoft.com", 3600, 0.08, 0.85,
        Sizes(2_400, 6_500, 0.45, 0.3),
    ),
    Service(
        "telemetry", "v10.events.data.microsoft.com", 900, 0.03, 0.9,
        Sizes(3_200, 850, 0.3, 0.4),
    ),
    Service(
        "antivirus", "definitionupdates.microsoft.com", 14_400, 0.01, 1.0,
        Sizes(1_400, 3_800, 0.4, 0.3),
    ),
    # CryptoAPI checks certificates as the browser meets them: irregular, working hours only
    Service(
        "ocsp", "ocsp.digicert.com", 1_500, 0.0, 0.95, Sizes(430, 1_900, 0.08, 0.2),
        irregular=True,
    ),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ServiceRun:
    """One service's calls over the whole simulation, sorted by time."""

    service: Service
    domain: int  # catalogue id
    host: npt.NDArray[np.int64]
    ts_us: npt.NDArray[np.int64]
    ip: npt.NDArray[np.uint32]  # each host sticks to one of the domain's addresses
    resolve: npt.NDArray[np.bool_]  # a DNS lookup precedes the call


def plan_periodic(
    rng: np.random.Generator,
    cat: Catalogue,
    fleet: Fleet,
    presence: Presence,
    start_us: int,
    days: int,
) -> list[ServiceRun]:
    """Every service's call times on every participating host, while the machine is on."""
    runs = []
    for service in SERVICES:
        domain = cat.ids[service.domain]
        members = np.flatnonzero(rng.random(fleet.size) < service.host_ratio)
        server = cat.pick_ips(rng, np.full(fleet.size, domain))
        hosts, times, resolve = [], [], []
        for host in members:
            ts_us = _call_times(rng, service, start_us, days)
            day = (ts_us - start_us) // (86_400 * _US)
            t_s = (ts_us - start_us - day * 86_400 * _US) / _US
            host_ids = np.full(ts_us.size, host)
            keep = is_on(fleet, presence, day, host_ids, t_s)
            if service.irregular:
                keep &= at_work(presence, day, host_ids, t_s)
            ts_us = ts_us[keep]
            hosts.append(host_ids[keep])
            times.append(ts_us)
            resolve.append(_resolve(service, cat.ttl_s[domain], ts_us, day[keep]))
        host_all = np.concatenate(hosts) if hosts else np.zeros(0, np.int64)
        ts_all = np.concatenate(times) if times else np.zeros(0, np.int64)
        order = np.argsort(ts_all, kind="stable")
        runs.append(
            ServiceRun(
                service,
                domain,
                host_all[order],
                ts_all[order],
                server[host_all[order]],
                (np.concatenate(resolve) if resolve else np.zeros(0, np.bool_))[order],
            )
        )
    return runs


def _call_times(
    rng: np.random.Generator, service: Service, start_us: int, days: int
) -> npt.NDArray[np.int64]:
    start_s, end_s = start_us / _US, start_us / _US + days * 86_400
    if service.irregular:
        gaps = rng.lognormal(np.log(service.period_s * 0.6), 1.0, size=int(days * 86_400 / 60))
        times = start_s + rng.random() * service.period_s + np.cumsum(gaps)
        times = times[times < end_s]
    else:
        times = checkin_times(
            rng,
            start_s,
            end_s,
            sleep_s=service.period_s,
            jitter_ratio=service.jitter_ratio,
            jitter_kind="symmetric",
        )
    return np.round(times * _US).astype(np.int64)


def _resolve(
    service: Service, ttl_s: int, ts_us: npt.NDArray[np.int64], day: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    """Lookups before calls: ntpd resolves the pool once a day, the others when the TTL ran out."""
    if service.kind == "ntp":
        first = np.ones(ts_us.size, dtype=np.bool_)
        first[1:] = day[1:] != day[:-1]
        return first
    return resolve_times(ts_us, int(ttl_s))


def periodic_day(
    rng: np.random.Generator,
    cat: Catalogue,
    fleet: Fleet,
    runs: list[ServiceRun],
    day_start_us: int,
) -> Flows:
    """The calls of every service that fall on one day, with their lookups."""
    day_end_us = day_start_us + 86_400 * _US
    parts = []
    for run in runs:
        rows = np.flatnonzero((run.ts_us >= day_start_us) & (run.ts_us < day_end_us))
        host_ip = fleet.ips[run.host[rows]]
        ts_us, ip = run.ts_us[rows], run.ip[rows]
        parts.append(_calls(rng, cat, run, host_ip, ts_us, ip))
        ask = run.resolve[rows]
        domain = np.full(int(ask.sum()), run.domain)
        parts.append(lookups(rng, cat, host_ip[ask], ts_us[ask], domain, answered_by=day_start_us))
    return concat(parts)


def _calls(
    rng: np.random.Generator,
    cat: Catalogue,
    run: ServiceRun,
    host_ip: npt.NDArray[np.uint32],
    ts_us: npt.NDArray[np.int64],
    ip: npt.NDArray[np.uint32],
) -> Flows:
    n = ts_us.size
    service = run.service
    if service.kind == "ntp":
        conn = udp_conns(
            rng,
            ts_us=ts_us,
            orig_h=host_ip,
            resp_h=ip,
            resp_p=123,
            service="ntp",
            orig_bytes=np.full(n, 48, dtype=np.int64),
            resp_bytes=np.full(n, 48, dtype=np.int64),
            duration_us=rng.lognormal(np.log(12_000), 0.4, n).astype(np.int64),
            orig_p=np.full(n, 123, dtype=np.int64),
        )
        return Flows(conn=conn)
    port = 80 if cat.is_http[run.domain] else 443
    state = draw_states(rng, n, _MOSTLY_CLEAN)
    conn = sized_conns(
        rng,
        ts_us=ts_us,
        orig_h=host_ip,
        resp_h=ip,
        resp_p=np.full(n, port),
        sizes=service.sizes,
        state=state,
    )
    up = np.flatnonzero(np.isin(state, (0, 3, 4)))
    if port == 80:
        http = page_requests(
            rng,
            conn=up,
            ts_us=ts_us[up],
            duration_us=conn["duration"][up],
            host=[service.domain] * up.size,
            user_agent=["-"] * up.size,  # the endpoint's own client (CryptoAPI)
            status=np.full(up.size, 200, dtype=np.int64),
            resp_bytes=conn["resp_bytes"][up],
            is_main=False,
        )
        return Flows(conn=conn, http=http)
    ssl = tls_rows(
        rng,
        conn=up,
        ts_us=ts_us[up],
        duration_us=conn["duration"][up],
        server_name=constant(service.domain, up.size),
        server=np.full(up.size, run.domain),
        tls13=np.full(up.size, cat.is_tls13[run.domain]),
        resumed=rng.random(up.size) < 0.5,
        cert_fps=cat.cert_fps.take(pa.array(np.full(up.size, run.domain))),
    )
    return Flows(conn=conn, ssl=ssl)


def periodic_truth(runs: list[ServiceRun]) -> tuple[BenignPeriodic, ...]:
    """One entry per (service, server address) with the number of hosts calling it."""
    entries = []
    for run in runs:
        for ip in np.unique(run.ip):
            hosts = int(np.unique(run.host[run.ip == ip]).size)
            entries.append(
                BenignPeriodic(
                    int_to_ip(int(ip)),
                    run.service.domain,
                    float(run.service.period_s),
                    hosts,
                    run.service.kind,
                )
            )
    return tuple(entries)
