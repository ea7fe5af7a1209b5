"""Benign DNS that a naive DNS detector would flag (truth.BenignDns): CDN names with short TTLs
and rotating answers, reverse-DNS PTR lookups, typos and search-suffix NXDOMAINs, a mail
gateway's DNSBL and malware-hash lookups."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from homecall.simulator.addresses import (
    MAIL_GATEWAY,
    MONITORING_SERVER,
    draw_public_ips,
    int_to_ip,
    is_public,
)
from homecall.simulator.calls import Calls, CallStyle, call_flows
from homecall.simulator.catalogue import Catalogue
from homecall.simulator.dns import QTYPES, Queries, query_flows
from homecall.simulator.flows import Flows, concat, strings
from homecall.simulator.hosts import Fleet, Presence, is_on
from homecall.simulator.internet import HOSTING, INTERNAL_DOMAIN, PROVIDERS
from homecall.simulator.truth import BenignDns
from homecall.simulator.web import Sizes

__all__ = ["DecoyRun", "decoy_day", "decoy_truth", "plan_decoys"]

DAY_S = 86_400
# (name, provider, TTL): downloads spread over a CDN's edge servers in one or two /16s
CDN_NAMES = (
    ("dl.delivery.mp.microsoft.com", "akamai", 20),  # Windows Update content
    ("d1.awsstatic.com", "cloudfront", 60),
)
CDN_POOL = 16  # edge addresses answering for a name
CDN_LOOKUPS_PER_DAY = 3.0  # per machine while it is on, Poisson
PTR_LOOKUPS_PER_DAY = 1.5  # a user's tools naming a remote address (tracert, netstat -f)
MONITORING_PERIOD_S = 3_600.0  # the monitoring server names every workstation each hour
TYPOS_PER_DAY = 0.3  # mistyped addresses per user at work
SUFFIX_HOST_RATIO = 0.08  # machines whose resolver appends the search suffix to every name
SUFFIX_LOOKUPS_PER_DAY = 40.0
MAILS_PER_HOST_DAY = 8.0  # inbound mails per employee on a working day (a fifth at weekends)
ATTACHMENT_RATIO = 0.15  # mails whose attachment the gateway checks by hash
LISTED_RATIO = 0.12  # senders listed in the DNSBL (the rest NXDOMAIN)
KNOWN_HASH_RATIO = 0.02  # attachments already known to the hash registry
DNSBL_ZONE = "zen.spamhaus.org"  # answers 127.0.0.x for a listed address
HASH_ZONE = "malware.hash.cymru.com"  # Team Cymru's registry: TXT "<last seen> <detection %>"
_DNSBL_CODES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.10", "127.0.0.11")
_REVERSE = {  # provider -> its addresses' PTR names; other providers have none (NXDOMAIN)
    "google": "{x}-in-f{d}.1e100.net",
    "aws": "ec2-{a}-{b}-{c}-{d}.compute-1.amazonaws.com",
    "cloudfront": "server-{a}-{b}-{c}-{d}.fra56.r.cloudfront.net",
    "akamai": "a{a}-{b}-{c}-{d}.deploy.static.akamaitechnologies.com",
}
_CDN_STYLE = CallStyle(443, Sizes(900, 400_000, 2.0, 1.2), issuer="DigiCert Global G2", tls13=True)


@dataclass(frozen=True, slots=True)
class DecoyGroup:
    """One kind of decoy lookups under one name or zone."""

    kind: str
    domain: str | None  # None when the names share no zone (typos)
    queries: Queries


@dataclass(frozen=True, slots=True)
class DecoyRun:
    """Every decoy lookup of the simulation, and the CDN downloads that follow CDN lookups."""

    groups: tuple[DecoyGroup, ...]
    calls: Calls


def plan_decoys(
    rng: np.random.Generator,
    cat: Catalogue,
    fleet: Fleet,
    presence: Presence,
    start_s: float,
    used_ips: set[int],
) -> DecoyRun:
    """Draw every decoy lookup of the simulation."""
    groups: list[DecoyGroup] = []
    calls = []
    for name, provider, ttl_s in CDN_NAMES:
        queries, call = _cdn(rng, name, provider, ttl_s, fleet, presence, start_s, used_ips)
        groups.append(DecoyGroup("cdn", name, queries))
        calls.append(call)
    groups.append(
        DecoyGroup("ptr-sweep", "in-addr.arpa", _monitoring(rng, fleet, presence, start_s))
    )
    groups.append(DecoyGroup("ptr", "in-addr.arpa", _user_ptr(rng, cat, fleet, presence, start_s)))
    groups.append(DecoyGroup("typo", None, _typos(rng, cat, fleet, presence, start_s)))
    groups.append(
        DecoyGroup("search-suffix", INTERNAL_DOMAIN, _suffixed(rng, cat, fleet, presence, start_s))
    )
    dnsbl, hashes = _mail(rng, fleet, presence, start_s)
    groups += [
        DecoyGroup("dnsbl", DNSBL_ZONE, dnsbl),
        DecoyGroup("hash-reputation", HASH_ZONE, hashes),
    ]
    return DecoyRun(tuple(groups), Calls.stack(calls))


def _at_work(
    rng: np.random.Generator, presence: Presence, per_day: float, hosts: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Poisson(per_day) moments per host and working day, uniform while the user is in;
    (host, seconds since the simulation's start)."""
    found_hosts, found_t = [], []
    for day in range(presence.arrive_s.shape[0]):
        arrive, leave = presence.arrive_s[day, hosts], presence.leave_s[day, hosts]
        present = ~np.isnan(arrive)
        counts = rng.poisson(per_day, size=int(present.sum()))
        index = np.repeat(np.flatnonzero(present), counts)
        found_hosts.append(hosts[index])
        found_t.append(
            day * DAY_S + arrive[index] + rng.random(index.size) * (leave - arrive)[index]
        )
    return np.concatenate(found_hosts), np.concatenate(found_t)


def _while_on(
    rng: np.random.Generator, fleet: Fleet, presence: Presence, per_day: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Poisson(per_day) moments per host and day, uniform over the day, kept while it is on."""
    days = presence.arrive_s.shape[0]
    host = np.repeat(np.arange(fleet.size), rng.poisson(per_day * days, size=fleet.size))
    t = rng.uniform(0, days * DAY_S, size=host.size)
    day = (t // DAY_S).astype(np.int64)
    keep = is_on(fleet, presence, day, host, t - day * DAY_S)
    return host[keep], t[keep]


def _queries(
    rng: np.random.Generator,
    host_ip: npt.NDArray[np.uint32],
    ts_s: npt.NDArray[np.float64],
    names: Sequence[str],
    qtype: int,
    answers: Sequence[str | None],
    ttl_s: int,
) -> Queries:
    n = len(names)
    nx = np.array([answer is None for answer in answers], dtype=np.bool_)
    return Queries(
        host_ip=host_ip.astype(np.uint32),
        ts_us=np.round(ts_s * 1e6).astype(np.int64),
        query=strings(list(names)),
        qtype=np.full(n, qtype, dtype=np.int64),
        rcode=np.where(nx, 3, 0).astype(np.int64),
        answers=pa.array(list(answers), pa.string()),
        ttl_s=np.where(nx, 0, ttl_s).astype(np.int64),
        rtt_us=rng.lognormal(np.log(25_000), 0.8, n).astype(np.int64),
    )


def _cdn(
    rng: np.random.Generator,
    name: str,
    provider: str,
    ttl_s: int,
    fleet: Fleet,
    presence: Presence,
    start_s: float,
    used_ips: set[int],
) -> tuple[Queries, Calls]:
    """Lookups answered by 2-4 of the edge servers, rotating, each followed by a download."""
    blocks = [b for b in PROVIDERS[provider].blocks if ipaddress.ip_network(b).prefixlen <= 16]
    nets = []
    for _ in range(int(rng.integers(1, 3))):  # one or two /16s
        block = ipaddress.ip_network(blocks[int(rng.integers(len(blocks)))])
        sub = int(rng.integers(2 ** (16 - block.prefixlen)))
        nets.append(str(ipaddress.ip_network((int(block.network_address) + (sub << 16), 16))))
    pool = np.array(draw_public_ips(rng, nets, CDN_POOL, used_ips), dtype=np.uint32)
    host, t = _while_on(rng, fleet, presence, CDN_LOOKUPS_PER_DAY)
    sizes = rng.integers(2, 5, size=host.size)
    order = rng.random((host.size, CDN_POOL)).argsort(axis=1)
    answered = [[int(pool[j]) for j in order[i, : sizes[i]]] for i in range(host.size)]
    texts = [",".join(int_to_ip(ip) for ip in row) for row in answered]
    queries = _queries(rng, fleet.ips[host], start_s + t, [name] * host.size, 1, texts, ttl_s)
    calls = Calls(
        fleet.ips[host],
        queries.ts_us + queries.rtt_us + rng.integers(2_000, 50_000, size=host.size),
        np.array([row[0] for row in answered], dtype=np.uint32),
        strings([name] * host.size),
    )
    return queries, calls


def _reverse_name(ip: int) -> str:
    a, b, c, d = int_to_ip(ip).split(".")
    return f"{d}.{c}.{b}.{a}.in-addr.arpa"


def _monitoring(
    rng: np.random.Generator, fleet: Fleet, presence: Presence, start_s: float
) -> Queries:
    """Every workstation's PTR, hourly, in one sweep a minute long (DHCP keeps the records)."""
    days = presence.arrive_s.shape[0]
    sweeps = np.arange(0, days * DAY_S, MONITORING_PERIOD_S) + rng.uniform(0, 300)
    t = (sweeps[:, None] + rng.uniform(0, 60, size=(sweeps.size, fleet.size))).ravel()
    host = np.tile(np.arange(fleet.size), sweeps.size)
    names = [_reverse_name(int(ip)) for ip in fleet.ips]
    answers = [f"pc{i + 1:04d}.{INTERNAL_DOMAIN}" for i in range(fleet.size)]
    ips = np.full(host.size, MONITORING_SERVER, dtype=np.uint32)
    picked = host.tolist()
    return _queries(
        rng, ips, start_s + t, [names[i] for i in picked], 12, [answers[i] for i in picked], 1200
    )


def _user_ptr(
    rng: np.random.Generator, cat: Catalogue, fleet: Fleet, presence: Presence, start_s: float
) -> Queries:
    """Users' tools naming public addresses: a provider's PTR name, or NXDOMAIN."""
    host, t = _at_work(rng, presence, PTR_LOOKUPS_PER_DAY, np.arange(fleet.size))
    targets = cat.ips[rng.integers(0, cat.ips.size, size=host.size)]
    networks = [
        (ipaddress.ip_network(block), name)
        for name, provider in [*PROVIDERS.items(), ("hosting", HOSTING)]
        for block in provider.blocks
    ]
    answers = []
    for ip in targets.tolist():
        owner = next((name for net, name in networks if ipaddress.ip_address(ip) in net), "")
        a, b, c, d = int_to_ip(ip).split(".")
        pattern = _REVERSE.get(owner)
        x = f"lga{int(c) % 40:02d}s{int(b) % 90:02d}"
        answers.append(pattern.format(a=a, b=b, c=c, d=d, x=x) if pattern else None)
    names = [_reverse_name(ip) for ip in targets.tolist()]
    return _queries(rng, fleet.ips[host], start_s + t, names, 12, answers, 3600)


def _typo(rng: np.random.Generator, name: str) -> str:
    """One slip of the finger in the name's first label: a letter dropped, doubled or swapped."""
    label, _, rest = name.partition(".")
    if label == "www" and "." in rest:
        head, _, tail = rest.partition(".")
        return f"www.{_typo(rng, head + '.' + tail)}"
    i = int(rng.integers(0, len(label) - 1)) if len(label) > 1 else 0
    slip = int(rng.integers(3))
    if slip == 0 and len(label) > 3:
        label = label[:i] + label[i + 1 :]
    elif slip == 1 or len(label) < 2:
        label = label[: i + 1] + label[i:]
    else:
        label = label[:i] + label[i + 1] + label[i] + label[i + 2 :]
    return f"{label}.{rest}"


def _typos(
    rng: np.random.Generator, cat: Catalogue, fleet: Fleet, presence: Presence, start_s: float
) -> Queries:
    host, t = _at_work(rng, presence, TYPOS_PER_DAY, np.arange(fleet.size))
    sites = cat.sites[rng.integers(0, min(cat.sites.size, 60), size=host.size)]
    names = [_typo(rng, cat.names[int(site)]) for site in sites]
    keep = np.array([name not in cat.ids for name in names], dtype=np.bool_)
    kept = [name for name, k in zip(names, keep, strict=True) if k]
    return _queries(rng, fleet.ips[host[keep]], start_s + t[keep], kept, 1, [None] * len(kept), 0)


def _suffixed(
    rng: np.random.Generator, cat: Catalogue, fleet: Fleet, presence: Presence, start_s: float
) -> Queries:
    """A few machines try <name>.acme.internal before the name itself (search-list devolution)."""
    count = max(1, round(SUFFIX_HOST_RATIO * fleet.size))
    hosts = np.sort(rng.choice(fleet.size, size=count, replace=False)).astype(np.int64)
    host, t = _at_work(rng, presence, SUFFIX_LOOKUPS_PER_DAY, hosts)
    pool = np.concatenate([cat.sites[:80], cat.third_party[:60], cat.background])
    names = [f"{cat.names[int(d)]}.{INTERNAL_DOMAIN}" for d in rng.choice(pool, size=host.size)]
    return _queries(rng, fleet.ips[host], start_s + t, names, 1, [None] * host.size, 0)


def _mail(
    rng: np.random.Generator, fleet: Fleet, presence: Presence, start_s: float
) -> tuple[Queries, Queries]:
    """The mail gateway: a DNSBL lookup per inbound mail, a hash lookup per attachment."""
    staffed = (~np.isnan(presence.arrive_s)).mean(axis=1)  # quiet days bring less mail
    mails = rng.poisson(MAILS_PER_HOST_DAY * fleet.size * np.maximum(staffed, 0.2))
    day = np.repeat(np.arange(mails.size), mails)
    office = rng.random(day.size) < 0.7
    t = day * DAY_S + np.where(
        office, rng.uniform(7 * 3600, 19 * 3600, day.size), rng.uniform(0, DAY_S, day.size)
    )
    senders: list[int] = []
    while len(senders) < day.size:  # anywhere on the Internet
        drawn = rng.integers(1 << 24, 224 << 24, size=day.size - len(senders)).tolist()
        senders += [ip for ip in drawn if is_public(ip)]
    listed = rng.random(day.size) < LISTED_RATIO
    codes = rng.choice(_DNSBL_CODES, size=day.size)
    gateway = np.full(day.size, MAIL_GATEWAY, dtype=np.uint32)
    dnsbl = _queries(
        rng,
        gateway,
        start_s + t,
        [_reverse_name(ip).removesuffix("in-addr.arpa") + DNSBL_ZONE for ip in senders],
        1,
        [str(code) if hit else None for code, hit in zip(codes, listed, strict=True)],
        60,
    )
    attached = np.flatnonzero(rng.random(day.size) < ATTACHMENT_RATIO)
    known = rng.random(attached.size) < KNOWN_HASH_RATIO
    digests = [hashlib.md5(rng.bytes(16), usedforsecurity=False).hexdigest() for _ in attached]
    seen = rng.integers(1_700_000_000, 1_790_000_000, size=attached.size)
    percent = rng.integers(5, 90, size=attached.size)
    texts = [f"{s} {p}" for s, p in zip(seen.tolist(), percent.tolist(), strict=True)]
    hashes = _queries(
        rng,
        gateway[attached],
        start_s + t[attached] + rng.uniform(0.2, 3.0, size=attached.size),
        [f"{digest}.{HASH_ZONE}" for digest in digests],
        16,
        [f"TXT {len(x)} {x}" if k else None for x, k in zip(texts, known, strict=True)],
        86_400,
    )
    return dnsbl, hashes


def decoy_day(rng: np.random.Generator, run: DecoyRun, day_start_us: int) -> Flows:
    """One day of every decoy: lookups, and the CDN downloads."""
    end_us = day_start_us + DAY_S * 1_000_000
    day = [group.queries.between(day_start_us, end_us) for group in run.groups]
    return concat(
        [
            query_flows(rng, Queries.stack(day)),
            call_flows(rng, run.calls.between(day_start_us, end_us), _CDN_STYLE),
        ]
    )


def decoy_truth(run: DecoyRun) -> tuple[BenignDns, ...]:
    """One entry per decoy group, with what it looks like in dns.log."""
    entries = []
    for group in run.groups:
        q = group.queries
        answers = [a for a in q.answers.to_pylist() if a is not None]
        ips = {
            part for answer in answers for part in answer.split(",") if _is_address(part)
        } if (q.qtype == 1).any() else set()  # fmt: skip
        hosts = np.unique(q.host_ip)
        entries.append(
            BenignDns(
                kind=group.kind,
                domain=group.domain,
                src=int_to_ip(int(hosts[0])) if hosts.size == 1 else None,
                hosts=int(hosts.size),
                queries=len(q),
                nxdomains=int((q.rcode == 3).sum()),
                qtypes=tuple(QTYPES[code] for code in sorted(set(q.qtype.tolist()))),
                ips=len(ips),
                slash16s=len({tuple(ip.split(".")[:2]) for ip in ips}),
                max_ttl_s=int(q.ttl_s.max()) if len(q) else 0,
            )
        )
    return tuple(entries)


def _is_address(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(part.isdigit() for part in parts)
