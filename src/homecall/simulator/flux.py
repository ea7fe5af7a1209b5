"""Fast-flux names: an infected host resolving names whose short-TTL answers rotate through many
bots' addresses spread over many /16s, and now and then calling one of them (truth.FluxTruth)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from homecall.simulator.addresses import draw_public_ips, int_to_ip
from homecall.simulator.calls import Calls, CallStyle, call_flows
from homecall.simulator.dns import Queries, query_flows
from homecall.simulator.flows import Flows, concat, strings
from homecall.simulator.hosts import Fleet, Presence, is_on_at
from homecall.simulator.truth import FluxTruth
from homecall.simulator.web import Sizes

__all__ = ["RESIDENTIAL_BLOCKS", "FluxRun", "flux_count", "flux_day", "flux_truth", "plan_flux"]

DAY_S = 86_400
FLUX_TTLS_S = (60, 120, 180, 300)  # flux networks keep TTLs short so answers rotate quickly
POOL_SIZE = (40, 80)  # compromised machines answering for one name at a time
RECORDS_PER_ANSWER = (4, 7)  # A records per answer, [low, high)
LOOKUP_GAP_S = 600.0  # mean gap between the bot's lookups (Poisson) while the machine is on
CALL_RATIO = 0.08  # lookups followed by a connection to the first address
# Large consumer-broadband ranges on five continents: where the bots of a flux network live.
RESIDENTIAL_BLOCKS = (
    "73.0.0.0/8", "24.0.0.0/12", "98.192.0.0/10", "71.192.0.0/12",
    "79.192.0.0/10", "84.128.0.0/10", "93.192.0.0/10", "90.0.0.0/9", "86.192.0.0/10",
    "78.160.0.0/11", "95.24.0.0/13",
    "113.160.0.0/11", "14.160.0.0/11", "117.192.0.0/10", "122.160.0.0/12", "59.88.0.0/13",
    "177.0.0.0/8", "187.0.0.0/8", "189.0.0.0/8", "201.0.0.0/8",
    "41.96.0.0/12", "105.0.0.0/8",
)  # fmt: skip
_WORDS = ("best", "cheap", "deal", "meds", "online", "pharm", "safe", "secure", "shop", "verify")
_TLDS = ("ru", "su", "top", "biz", "info")
_STYLE = CallStyle(
    80,
    Sizes(480, 9_000, 0.5, 0.8),
    user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64; Trident/7.0; rv:11.0) like Gecko",
)


@dataclass(frozen=True, slots=True)
class FluxRun:
    """One fast-flux name resolved by one host over the whole simulation."""

    host_ip: int
    name: str
    ttl_s: int
    queries: Queries
    calls: Calls


def flux_count(hosts: int) -> int:
    """Fast-flux names: none under 20 hosts, one under 100, then two (one infected host)."""
    return 0 if hosts < 20 else 1 if hosts < 100 else 2


def plan_flux(
    rng: np.random.Generator,
    host: int,
    names: int,
    fleet: Fleet,
    presence: Presence,
    start_s: float,
    days: int,
    used_ips: set[int],
    taken_names: set[str],
) -> list[FluxRun]:
    """`names` flux names that one host resolves, each with its own pool of bots."""
    runs = []
    host_ip = int(fleet.ips[host])
    for _ in range(names):
        name = _name(rng, taken_names)
        ttl_s = int(rng.choice(FLUX_TTLS_S))
        pool_size = int(rng.integers(*POOL_SIZE))
        pool = np.array(draw_public_ips(rng, RESIDENTIAL_BLOCKS, pool_size, used_ips), np.uint32)
        count = int(days * DAY_S / LOOKUP_GAP_S * 1.3) + 4
        ts_s = start_s + np.cumsum(rng.exponential(LOOKUP_GAP_S, size=count))
        ts_s = ts_s[ts_s < start_s + days * DAY_S - 60]
        ts_s = ts_s[is_on_at(fleet, presence, host, ts_s, start_s)]
        answered = _answers(rng, pool, ts_s.size)
        queries = Queries(
            host_ip=np.full(ts_s.size, host_ip, dtype=np.uint32),
            ts_us=np.round(ts_s * 1e6).astype(np.int64),
            query=strings([name] * ts_s.size),
            qtype=np.ones(ts_s.size, dtype=np.int64),
            rcode=np.zeros(ts_s.size, dtype=np.int64),
            answers=strings([",".join(int_to_ip(ip) for ip in row) for row in answered]),
            ttl_s=np.full(ts_s.size, ttl_s, dtype=np.int64),
            rtt_us=rng.lognormal(np.log(60_000), 0.5, ts_s.size).astype(np.int64),
        )
        call = np.flatnonzero(rng.random(ts_s.size) < CALL_RATIO)
        calls = Calls(
            np.full(call.size, host_ip, dtype=np.uint32),
            queries.ts_us[call] + queries.rtt_us[call] + rng.integers(50_000, 400_000, call.size),
            np.array([answered[i][0] for i in call], dtype=np.uint32),
            strings([name] * call.size),
        )
        runs.append(FluxRun(host_ip, name, ttl_s, queries, calls))
    return runs


def _name(rng: np.random.Generator, taken: set[str]) -> str:
    while True:
        a, b = (_WORDS[i] for i in rng.choice(len(_WORDS), size=2, replace=False))
        name = f"{a}-{b}.{_TLDS[int(rng.integers(len(_TLDS)))]}"
        if name not in taken:
            taken.add(name)
            return name


def _answers(rng: np.random.Generator, pool: npt.NDArray[np.uint32], n: int) -> list[list[int]]:
    """Each answer a fresh random handful of the pool (round-robin over the live bots)."""
    sizes = rng.integers(*RECORDS_PER_ANSWER, size=n)
    order = rng.random((n, pool.size)).argsort(axis=1)
    return [[int(pool[j]) for j in order[i, : sizes[i]]] for i in range(n)]


def flux_day(rng: np.random.Generator, run: FluxRun, day_start_us: int) -> Flows:
    """One day of lookups of a flux name and the connections that followed some of them."""
    end_us = day_start_us + DAY_S * 1_000_000
    return concat(
        [
            query_flows(rng, run.queries.between(day_start_us, end_us)),
            call_flows(rng, run.calls.between(day_start_us, end_us), _STYLE),
        ]
    )


def flux_truth(run: FluxRun) -> FluxTruth:
    """What a fast-flux detector should find about this name."""
    answers = run.queries.answers.to_pylist()
    ips = sorted({ip for answer in answers for ip in answer.split(",")}, key=_ip_key)
    contacted = sorted({int_to_ip(int(ip)) for ip in run.calls.dst}, key=_ip_key)
    return FluxTruth(
        src=int_to_ip(run.host_ip),
        name=run.name,
        ttl_s=run.ttl_s,
        ips=tuple(ips),
        slash16s=len({tuple(ip.split(".")[:2]) for ip in ips}),
        lookups=len(run.queries),
        connections=len(run.calls),
        contacted=tuple(contacted),
        dst_port=_STYLE.port,
    )


def _ip_key(ip: str) -> tuple[int, ...]:
    return tuple(int(part) for part in ip.split("."))
