"""What the web techniques share: a run (exchanges plus truth), the world they are drawn in, and
timing helpers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from homecall.simulator.addresses import draw_public_ips, int_to_ip
from homecall.simulator.c2 import schedule
from homecall.simulator.catalogue import Catalogue
from homecall.simulator.certs import Certificate
from homecall.simulator.exchanges import Exchanges
from homecall.simulator.hosts import Fleet, Presence, is_on_at
from homecall.simulator.internet import HOSTING
from homecall.simulator.truth import BenignWeb, WebTruth, iso_utc

__all__ = [
    "DAY_US",
    "WebContext",
    "WebRun",
    "beacon_times",
    "benign",
    "durations",
    "span",
    "working_times",
]

DAY_US = 86_400 * 1_000_000


@dataclass(frozen=True, slots=True)
class WebRun:
    """One injected channel or benign look-alike: its exchanges over the whole simulation."""

    exchanges: Exchanges  # as the client makes them; the proxy rewrites those of its clients
    truth: WebTruth | BenignWeb  # uids are filled in once the logs are written


@dataclass(frozen=True, slots=True)
class WebContext:
    """The world the web techniques are drawn in; `used_ips` and `taken` grow as they draw."""

    cat: Catalogue
    fleet: Fleet
    presence: Presence
    start_us: int
    days: int
    proxied: frozenset[int]  # addresses of the hosts behind the proxy
    used_ips: set[int]
    taken: set[str]
    certs: dict[str, Certificate]  # certificates x509.log must describe, by fingerprint

    def register(self, cert: Certificate) -> Certificate:
        """Remember a certificate for x509.log."""
        self.certs[cert.fingerprint] = cert
        return cert

    def host_ip(self, host: int) -> int:
        """The address of fleet host `host`."""
        return int(self.fleet.ips[host])

    def servers(self, rng: np.random.Generator, n: int) -> list[int]:
        """n new addresses at hosting providers (where C2 servers live)."""
        return draw_public_ips(rng, HOSTING.blocks, n, self.used_ips)


def beacon_times(
    rng: np.random.Generator,
    ctx: WebContext,
    host: int,
    *,
    sleep_s: float,
    jitter_ratio: float,
    jitter_kind: str = "symmetric",
) -> npt.NDArray[np.int64]:
    """Check-in times (us) over the whole simulation while the host is switched on."""
    start_s = ctx.start_us / 1e6
    times = schedule(
        rng,
        start_s,
        start_s + ctx.days * 86_400,
        sleep_s=sleep_s,
        jitter_ratio=jitter_ratio,
        jitter_kind=jitter_kind,
    ).conns_s
    times = times[is_on_at(ctx.fleet, ctx.presence, host, times, start_s)]
    return np.round(times * 1e6).astype(np.int64)


def working_times(
    rng: np.random.Generator, ctx: WebContext, hosts: npt.NDArray[np.int64], per_day: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Poisson(per_day) moments per host and day while its user is in: (hosts, times in us),
    sorted by time."""
    found_hosts, found_ts = [], []
    for day in range(ctx.days):
        arrive = ctx.presence.arrive_s[day, hosts]
        leave = ctx.presence.leave_s[day, hosts]
        present = ~np.isnan(arrive)
        counts = rng.poisson(per_day, size=int(present.sum()))
        index = np.repeat(np.flatnonzero(present), counts)
        t_s = arrive[index] + rng.random(index.size) * (leave[index] - arrive[index])
        found_hosts.append(hosts[index])
        found_ts.append(ctx.start_us + day * DAY_US + (t_s * 1e6).astype(np.int64))
    host = np.concatenate([np.zeros(0, np.int64), *found_hosts]).astype(np.int64)
    ts = np.concatenate([np.zeros(0, np.int64), *found_ts]).astype(np.int64)
    order = np.argsort(ts, kind="stable")
    return host[order], ts[order]


def durations(rng: np.random.Generator, n: int, median_s: float) -> npt.NDArray[np.int64]:
    """Connection durations (us), lognormal around median_s."""
    return (rng.lognormal(np.log(median_s), 0.4, n) * 1e6).astype(np.int64)


def span(ex: Exchanges) -> tuple[int, str, str]:
    """(requests, first_seen, last_seen) of a run's exchanges ("-" when there are none)."""
    if not len(ex):
        return 0, "-", "-"
    return len(ex), iso_utc(int(ex.ts_us.min())), iso_utc(int(ex.ts_us.max()))


def benign(ctx: WebContext, ex: Exchanges, kind: str, name: str | None, detail: str) -> BenignWeb:
    """The truth entry of a decoy run: who made its requests, through the proxy or not."""
    clients = sorted({int(ip) for ip in ex.src})
    behind = {ip in ctx.proxied for ip in clients}
    return BenignWeb(
        kind=kind,
        src=int_to_ip(clients[0]) if len(clients) == 1 else None,
        hosts=len(clients),
        name=name,
        port=int(ex.port[0]) if len(ex) else 443,
        via_proxy=behind.pop() if len(behind) == 1 else None,
        requests=len(ex),
        detail=detail,
    )
