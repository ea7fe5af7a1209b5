"""C2 implants: check-in schedules of real frameworks (pure functions) and the injected instances.

Jitter semantics follow the frameworks (docs: ../shared/notes/beaconing.md, section 2):
Cobalt Strike sleeps `sleep * (1 - U*j)` (one-sided), Sliver `sleep + U*jitter` (additive, here
`sleep * (1 + U*j)`), Empire and PoshC2 `sleep * (1 + U(-j, j))` (symmetric); U ~ U[0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from homecall.simulator.addresses import draw_public_ips
from homecall.simulator.internet import C2_WORDS, HOSTING, RARE_TLDS

__all__ = [
    "IMPLANTS",
    "JITTER_KINDS",
    "C2Plan",
    "Implant",
    "Schedule",
    "c2_count",
    "c2_domain",
    "checkin_times",
    "plan_c2",
    "schedule",
    "sleep_intervals",
]

JITTER_KINDS = ("one-sided", "additive", "symmetric")
MAX_CONN_SPREAD_S = 0.9  # the connections of one check-in open within this window
C2_TTLS_S = (300, 600, 1800, 3600)  # registrar and cloud-DNS defaults for the C2 domain


@dataclass(frozen=True, slots=True)
class Schedule:
    """When an implant connects: emitted check-ins and every connection they open."""

    checkins_s: npt.NDArray[np.float64]  # check-ins that reached the wire, sorted
    conns_s: npt.NDArray[np.float64]  # connection start times, sorted
    checkin_of_conn: npt.NDArray[np.int64]  # index into checkins_s for each connection


def sleep_intervals(
    rng: np.random.Generator, n: int, sleep_s: float, jitter_ratio: float, jitter_kind: str
) -> npt.NDArray[np.float64]:
    """n successive sleeps of an implant with the given jitter semantics."""
    u = rng.random(n)
    if jitter_kind == "one-sided":
        return sleep_s * (1.0 - u * jitter_ratio)
    if jitter_kind == "additive":
        return sleep_s * (1.0 + u * jitter_ratio)
    if jitter_kind == "symmetric":
        return sleep_s * (1.0 + (2.0 * u - 1.0) * jitter_ratio)
    raise ValueError(f"jitter_kind must be one of {JITTER_KINDS}, got {jitter_kind!r}")


def checkin_times(
    rng: np.random.Generator,
    start_s: float,
    end_s: float,
    *,
    sleep_s: float,
    jitter_ratio: float = 0.0,
    jitter_kind: str = "one-sided",
    missed_fraction: float = 0.0,
) -> npt.NDArray[np.float64]:
    """Check-in times in [start_s, end_s): a random phase, then jittered sleeps; misses dropped."""
    _validate(sleep_s, jitter_ratio, missed_fraction, start_s, end_s)
    shortest = sleep_s * (1.0 - jitter_ratio) if jitter_kind != "additive" else sleep_s
    n = math.ceil((end_s - start_s) / max(shortest, 1e-3)) + 2
    first = start_s + rng.random() * sleep_s  # the implant was already running at start_s
    times = first + np.concatenate(
        [[0.0], np.cumsum(sleep_intervals(rng, n, sleep_s, jitter_ratio, jitter_kind))]
    )
    times = times[times < end_s]
    kept = rng.random(times.size) >= missed_fraction
    return times[kept]


def schedule(
    rng: np.random.Generator,
    start_s: float,
    end_s: float,
    *,
    sleep_s: float,
    jitter_ratio: float = 0.0,
    jitter_kind: str = "one-sided",
    missed_fraction: float = 0.0,
    conns_per_checkin: int = 1,
) -> Schedule:
    """Check-ins as checkin_times, each opening conns_per_checkin connections within a second."""
    if conns_per_checkin < 1:
        raise ValueError(f"conns_per_checkin must be >= 1, got {conns_per_checkin}")
    checkins = checkin_times(
        rng,
        start_s,
        end_s - MAX_CONN_SPREAD_S,
        sleep_s=sleep_s,
        jitter_ratio=jitter_ratio,
        jitter_kind=jitter_kind,
        missed_fraction=missed_fraction,
    )
    k = conns_per_checkin
    offsets = np.zeros((checkins.size, k))
    if k > 1:
        offsets[:, 1:] = np.sort(
            rng.uniform(0.02, MAX_CONN_SPREAD_S, size=(checkins.size, k - 1)), axis=1
        )
    conns = (checkins[:, None] + offsets).ravel()
    return Schedule(checkins, conns, np.repeat(np.arange(checkins.size), k))


def _validate(
    sleep_s: float, jitter_ratio: float, missed: float, start_s: float, end_s: float
) -> None:
    if sleep_s <= 0:
        raise ValueError(f"sleep_s must be positive, got {sleep_s}")
    if not 0.0 <= jitter_ratio < 1.0:
        raise ValueError(f"jitter_ratio must be in [0, 1), got {jitter_ratio}")
    if not 0.0 <= missed < 1.0:
        raise ValueError(f"missed_fraction must be in [0, 1), got {missed}")
    if end_s < start_s:
        raise ValueError("end_s is before start_s")


@dataclass(frozen=True, slots=True)
class Implant:
    """A framework channel configuration: timing defaults plus its wire profile."""

    kind: str  # cobalt-strike, sliver, empire
    protocol: str  # https or http
    profile: str  # wire profile, see implant.PROFILES
    sleep_s: float
    jitter_ratio: float
    jitter_kind: str
    missed_fraction: float = 0.0
    conns_per_checkin: int = 1
    uses_domain: bool = True  # False: the implant calls its server's IP directly


# The default run uses the first seven; larger fleets cycle through all of them.
IMPLANTS = (
    Implant("cobalt-strike", "https", "cs-https-default-cert", 60, 0.0, "one-sided"),
    Implant("cobalt-strike", "https", "cs-https", 60, 0.2, "one-sided", conns_per_checkin=2),
    Implant("cobalt-strike", "http", "cs-http-jquery", 60, 0.5, "one-sided", missed_fraction=0.2),
    Implant("sliver", "https", "sliver-https", 60, 0.5, "additive"),  # 60 s + U[0, 30 s)
    Implant("empire", "http", "empire-http", 5, 0.2, "symmetric", uses_domain=False),
    Implant("cobalt-strike", "http", "cs-http-default", 60, 0.2, "one-sided", conns_per_checkin=3),
    Implant("sliver", "https", "sliver-https", 60, 0.5, "additive", missed_fraction=0.2),
    Implant("cobalt-strike", "https", "cs-https", 60, 0.5, "one-sided"),
    Implant("empire", "http", "empire-http", 5, 0.2, "symmetric", missed_fraction=0.1),
    Implant("cobalt-strike", "https", "cs-https", 60, 0.2, "one-sided", missed_fraction=0.3),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class C2Plan:
    """One injected C2 instance: which host, which server, which implant."""

    implant: Implant
    host: int  # index into the fleet
    dst: int  # the C2 server's address
    domain: str | None
    dst_port: int
    ttl_s: int  # TTL of the C2 domain's A record


def c2_count(hosts: int) -> int:
    """How many C2 instances: about 7 for 200 hosts, growing with log(hosts), <= 5 % of hosts."""
    wanted = round(3 + 2 * math.log2(max(hosts, 1) / 50))
    return max(1, min(hosts // 20, wanted))


def plan_c2(
    rng: np.random.Generator,
    is_laptop: npt.NDArray[np.bool_],
    used_ips: set[int],
    taken_names: set[str],
) -> list[C2Plan]:
    """Pick the infected hosts (desktops first: they stay on), C2 servers and domains."""
    hosts = len(is_laptop)
    count = c2_count(hosts)
    desktops = np.flatnonzero(~is_laptop)
    pool = desktops if desktops.size >= count else np.arange(hosts)
    infected = np.sort(rng.choice(pool, size=count, replace=False))
    servers = draw_public_ips(rng, HOSTING.blocks, count, used_ips)
    plans = []
    for i, (host, dst) in enumerate(zip(infected, servers, strict=True)):
        implant = IMPLANTS[i % len(IMPLANTS)]
        domain = c2_domain(rng, taken_names) if implant.uses_domain else None
        port = 443 if implant.protocol == "https" else 80
        ttl = int(rng.choice(C2_TTLS_S))
        plans.append(C2Plan(implant, int(host), dst, domain, port, ttl))
    return plans


def c2_domain(rng: np.random.Generator, taken: set[str]) -> str:
    """A name that passes for infrastructure: static-cdn-sync.com, api.edge-metrics.net, ..."""
    tlds = [tld for tld, _ in RARE_TLDS[:8]] + ["xyz", "top", "cloud", "live"]
    while True:
        a, b, c = (C2_WORDS[i] for i in rng.choice(len(C2_WORDS), size=3, replace=False))
        tld = tlds[int(rng.integers(len(tlds)))]
        shape = int(rng.integers(3))
        name = (f"{a}-{b}.{tld}", f"{a}.{b}-{c}.{tld}", f"{a}{b}{c}.{tld}")[shape]
        if name not in taken:
            taken.add(name)
            return name
