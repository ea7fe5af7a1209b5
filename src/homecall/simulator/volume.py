"""A burst of DNS lookups in one hour (truth.VolumeTruth): an intruder on a workstation
brute-forcing the subdomains of a few organisations, or pushing a file out in query names.

Either way the host asks the internal resolver thousands of distinct names within minutes, far
more than in its other hours and than any other host in its busiest hour.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from homecall.simulator.addresses import draw_public_ips, int_to_ip
from homecall.simulator.dns import Queries, query_flows
from homecall.simulator.flows import Flows, strings
from homecall.simulator.hosts import Fleet, Presence
from homecall.simulator.internet import C2_WORDS, HOSTING, RARE_WORDS
from homecall.simulator.truth import VolumeTruth, iso_utc

__all__ = [
    "SPIKE_KINDS",
    "SUBDOMAIN_WORDS",
    "VolumeRun",
    "busiest_hour",
    "plan_spike",
    "spike_count",
    "spike_day",
    "spike_truth",
]

DAY_S = 86_400
HOUR_S = 3_600
SPIKE_QUERIES = (3_000, 6_000)  # lookups of the burst, [low, high]
SPIKE_MARGIN = 1.5  # and at least this many times any other host's busiest hour
BURST_S = (600.0, 2_400.0)  # how long the burst lasts, inside one clock hour
SPIKE_KINDS = ("subdomain-scan", "exfiltration")
_EXISTING = ("www", "mail", "vpn", "remote", "autodiscover", "owa", "portal", "api", "ftp", "smtp")
# A brute-forcer's wordlist: common labels, then the labels with digits and joined in pairs
_WORDLIST = (
    "www mail vpn remote autodiscover owa portal api ftp smtp admin dev test staging beta app "
    "apps web webmail mx ns1 ns2 dns intranet extranet secure login sso auth git gitlab jenkins "
    "jira confluence wiki docs help support shop store blog news static cdn media img images "
    "files backup db sql mysql ldap proxy gateway fw firewall citrix rdp exchange lync sip "
    "voip crm erp hr payroll finance billing monitor grafana kibana nagios zabbix vcenter esx "
    "nas cloud m mobile demo old new internal corp office partners"
)
SUBDOMAIN_WORDS = tuple(_WORDLIST.split())
_BASE32 = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz234567", dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class VolumeRun:
    """The burst's lookups and what they were for."""

    host_ip: int
    kind: str
    hour_start_s: float
    domains: tuple[str, ...]
    queries: Queries


def spike_count(hosts: int) -> int:
    """Bursts: none under 20 hosts, then one."""
    return 0 if hosts < 20 else 1


def busiest_hour(parts: Sequence[Queries]) -> int:
    """The most lookups one host made in one clock hour, over all the parts' queries."""
    stacked = Queries.stack(parts)
    if not len(stacked):
        return 0
    key = stacked.host_ip.astype(np.int64) << 32 | stacked.ts_us // (HOUR_S * 1_000_000)
    return int(np.unique(key, return_counts=True)[1].max())


def _hour(rng: np.random.Generator, host: int, fleet: Fleet, presence: Presence) -> float | None:
    """The start of a clock hour the user spends at work, in seconds since the simulation's first
    midnight (a desktop whose user never comes in: any hour of the first day); None if none."""
    starts = []
    for day in range(presence.arrive_s.shape[0]):
        arrive, leave = presence.arrive_s[day, host], presence.leave_s[day, host]
        if np.isnan(arrive):
            continue
        first, last = int(np.ceil(arrive / HOUR_S)), int(leave // HOUR_S) - 1
        starts += [day * DAY_S + h * HOUR_S for h in range(first, last + 1)]
    if not starts and not fleet.is_laptop[host]:
        starts = [h * HOUR_S for h in range(24)]
    return float(starts[int(rng.integers(len(starts)))]) if starts else None


def plan_spike(
    rng: np.random.Generator,
    host: int,
    fleet: Fleet,
    presence: Presence,
    start_s: float,
    others_peak: int,
    used_ips: set[int],
    taken_names: set[str],
) -> VolumeRun | None:
    """The burst, in an hour the host's user is at work; None if the host is never on."""
    hour = _hour(rng, host, fleet, presence)
    if hour is None:
        return None
    count = max(int(rng.integers(SPIKE_QUERIES[0], SPIKE_QUERIES[1] + 1)),
                int(np.ceil(SPIKE_MARGIN * others_peak)))  # fmt: skip
    kind = SPIKE_KINDS[int(rng.integers(len(SPIKE_KINDS)))]
    length = rng.uniform(*BURST_S)
    begin = start_s + hour + rng.uniform(0, HOUR_S - length)
    ts_s = np.sort(rng.uniform(begin, begin + length, size=count))
    if kind == "subdomain-scan":
        domains = [_domain(rng, RARE_WORDS, taken_names) for _ in range(int(rng.integers(2, 5)))]
        names, answers = _scan(rng, domains, count, used_ips)
        ttl = 3_600
    else:
        domains = [_domain(rng, C2_WORDS, taken_names)]
        names = _exfiltration(rng, domains[0], count)
        server = int_to_ip(draw_public_ips(rng, HOSTING.blocks, 1, used_ips)[0])
        answers, ttl = [server] * count, 0  # the attacker's name server: never cached
    nx = np.array([a is None for a in answers], dtype=np.bool_)
    queries = Queries(
        host_ip=np.full(count, fleet.ips[host], dtype=np.uint32),
        ts_us=np.round(ts_s * 1e6).astype(np.int64),
        query=strings(names),
        qtype=np.ones(count, dtype=np.int64),
        rcode=np.where(nx, 3, 0).astype(np.int64),
        answers=pa.array(answers, pa.string()),
        ttl_s=np.where(nx, 0, ttl).astype(np.int64),
        rtt_us=rng.lognormal(np.log(40_000), 0.6, count).astype(np.int64),  # never in cache
    )
    run_domains = tuple(sorted(domains))
    return VolumeRun(int(fleet.ips[host]), kind, start_s + hour, run_domains, queries)


def _domain(rng: np.random.Generator, words: Sequence[str], taken: set[str]) -> str:
    """A new "<word>-<word>.<tld>" name, added to taken."""
    while True:
        a, b = (words[i] for i in rng.choice(len(words), size=2, replace=False))
        name = f"{a}-{b}.{('com', 'net', 'org', 'io')[int(rng.integers(4))]}"
        if name not in taken:
            taken.add(name)
            return name


def _labels(count: int) -> list[str]:
    """The first `count` labels of the wordlist: each word, then word + digit, then word-word,
    then word + three digits."""
    words = SUBDOMAIN_WORDS
    labels = itertools.chain(
        words,
        (f"{w}{d}" for d in range(1, 10) for w in words),
        (f"{a}-{b}" for a in words for b in words if a != b),
        (f"{w}{d:03d}" for d in range(1_000) for w in words),
    )
    found = list(itertools.islice(labels, count))
    if len(found) < count:
        raise ValueError(f"at most {len(found)} labels per domain, asked for {count}")
    return found


def _scan(
    rng: np.random.Generator, domains: list[str], count: int, used_ips: set[int]
) -> tuple[list[str], list[str | None]]:
    """Domain after domain, the wordlist in order; the few names that exist answer."""
    shares = np.diff(np.linspace(0, count, len(domains) + 1).round().astype(np.int64))
    names: list[str] = []
    answers: list[str | None] = []
    for domain, share in zip(domains, shares.tolist(), strict=True):
        existing = set(_EXISTING[: int(rng.integers(3, len(_EXISTING) + 1))])
        server = int_to_ip(draw_public_ips(rng, HOSTING.blocks, 1, used_ips)[0])
        for label in _labels(share):
            names.append(f"{label}.{domain}")
            answers.append(server if label in existing else None)
    return names, answers


def _exfiltration(rng: np.random.Generator, domain: str, count: int) -> list[str]:
    """Base32 chunks of a file, numbered, in two labels under the domain (DNSExfiltrator style)."""
    session = "".join(rng.choice(list("0123456789abcdef"), size=6))
    text = _BASE32[rng.integers(0, _BASE32.size, size=(count, 100))]
    lengths = rng.integers(80, 101, size=count).tolist()  # the last chunk may be shorter
    names = []
    for i, (row, k) in enumerate(zip(text, lengths, strict=True)):
        chunk = row[:k].tobytes().decode()
        names.append(f"{session}-{i:05d}.{chunk[:50]}.{chunk[50:]}.{domain}")
    return names


def spike_day(rng: np.random.Generator, run: VolumeRun, day_start_us: int) -> Flows:
    """The burst's lookups if it falls on this day."""
    return query_flows(rng, run.queries.between(day_start_us, day_start_us + DAY_S * 1_000_000))


def spike_truth(run: VolumeRun) -> VolumeTruth:
    """What a dns-volume detector should find about the burst."""
    return VolumeTruth(
        src=int_to_ip(run.host_ip),
        hour_start=iso_utc(int(run.hour_start_s * 1_000_000)),
        queries=len(run.queries),
        domains=run.domains,
        kind=run.kind,
        names=len(set(run.queries.query.to_pylist())),
    )
