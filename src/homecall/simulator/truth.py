"""Ground truth of a simulation: what was injected, which benign traffic is a decoy, truth.json.

truth.json keys: seed, hosts, days, start, internal_networks, c2 (C2Truth), benign_periodic
(BenignPeriodic), then the DNS techniques: dga (DgaTruth), dns_tunnel (TunnelTruth), fast_flux
(FluxTruth) and benign_dns (BenignDns, decoys for the DNS detectors), then dns_bypass (BypassTruth),
dns_volume (VolumeTruth) and young_domains (YoungTruth, the C2 domains listed in nrd.txt).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "BenignDns",
    "BenignPeriodic",
    "BypassTruth",
    "C2Truth",
    "DgaTruth",
    "FluxTruth",
    "SimulationResult",
    "TunnelTruth",
    "VolumeTruth",
    "YoungTruth",
    "iso_utc",
    "write_truth",
]


@dataclass(frozen=True, slots=True)
class C2Truth:
    """One injected C2 channel, as a detector should report it."""

    src: str  # the infected internal host
    dst: str  # the C2 server
    domain: str | None  # the name in DNS, SNI and Host; None when the implant calls the IP
    dst_port: int
    kind: str  # cobalt-strike, sliver, empire
    protocol: str  # https or http
    sleep_s: float
    jitter_ratio: float  # 0..1, meaning per jitter_kind
    jitter_kind: (
        str  # one-sided (sleep*(1-U*j)), additive (sleep*(1+U*j)), symmetric (sleep*(1+U(-j,j)))
    )
    missed_fraction: float  # share of check-ins dropped before reaching the wire
    conns_per_checkin: int
    first_seen: str  # ISO-8601 UTC of the first check-in connection
    last_seen: str
    checkins: int  # check-ins emitted over the whole simulation


@dataclass(frozen=True, slots=True)
class BenignPeriodic:
    """A benign service that many hosts call at a regular interval (a beacon detector's decoy)."""

    dst: str
    domain: str
    period_s: float
    hosts: int  # distinct hosts that called dst
    kind: str  # ntp, os-update, telemetry, antivirus, ocsp


@dataclass(frozen=True, slots=True)
class DgaTruth:
    """A DGA-infected host: bursts of generated names, nearly all NXDOMAIN, then its C2."""

    src: str
    family: str  # random-letters (Cryptolocker-style), hex-hash (Dyre-style), wordlist (Suppobox)
    c2: str  # the address the registered names resolve to
    c2_port: int
    protocol: str  # how the C2 is called: http or https
    bursts: int  # runs of the DGA (each tries names until one resolves)
    queries: int  # its DGA lookups in dns.log (all A queries), over all days
    domains_tried: int  # distinct names among them
    nxdomains: int  # lookups answered NXDOMAIN
    resolved_domains: tuple[str, ...]  # the names that answered with the C2's address
    c2_connections: int
    first_seen: str | None  # ISO-8601 UTC of the first lookup; None if the host never ran it
    last_seen: str | None


@dataclass(frozen=True, slots=True)
class TunnelTruth:
    """A DNS tunnel: a host exchanging data in query names and answers under one zone."""

    src: str
    kind: str  # dnscat2 (hex labels; TXT, CNAME, MX) or iodine (base32 labels; NULL)
    domain: str  # the attacker's registered domain
    zone: str  # every query is <encoded labels>.<zone>
    qtypes: tuple[str, ...]  # query types used; answers are of the same type
    queries: int  # over all days
    data_queries: int  # queries carrying data (the rest are idle polls)
    poll_s: float  # interval of the idle polls
    answer_ttl_s: int
    first_seen: str | None
    last_seen: str | None


@dataclass(frozen=True, slots=True)
class FluxTruth:
    """A fast-flux name: short TTL, each answer a few of many addresses over many /16s."""

    src: str  # the infected host that resolves it
    name: str
    ttl_s: int
    ips: tuple[str, ...]  # every address the name was answered with, sorted
    slash16s: int  # distinct /16 networks among ips
    lookups: int
    connections: int  # HTTP connections to answered addresses
    contacted: tuple[str, ...]  # the addresses connected to, sorted
    dst_port: int


@dataclass(frozen=True, slots=True)
class BenignDns:
    """Benign DNS that looks like a DNS technique at first sight (a DNS detector's decoy)."""

    kind: str  # cdn, ptr-sweep (a monitoring server), ptr, typo, search-suffix, dnsbl,
    # hash-reputation (dnsbl and hash-reputation: a mail gateway)
    domain: str | None  # the name, or the zone the queried names end with; None for typos
    src: str | None  # the one internal host that asked; None when several did
    hosts: int  # distinct internal hosts that asked
    queries: int
    nxdomains: int
    qtypes: tuple[str, ...]
    ips: int  # distinct addresses answered (A records), 0 for other answers
    slash16s: int  # distinct /16 networks among them
    max_ttl_s: int  # the longest TTL answered, 0 if none


@dataclass(frozen=True, slots=True)
class BypassTruth:
    """A host resolving names past the internal resolver, as a dns-bypass finding names it."""

    src: str
    kind: str  # plain-dns (UDP/53 to a public resolver) or doh (DNS over HTTPS); dot is unused
    resolver: str  # the address (plain-dns) or the DoH server's name, as in TLS SNI (doh)
    queries_or_connections: int  # plain-dns: lookups in dns.log; doh: TLS connections
    first_seen: str
    last_seen: str
    dst_port: int  # 53 or 443
    cause: str  # c2-implant (the implant asks a public resolver) or browser (secure DNS turned on)


@dataclass(frozen=True, slots=True)
class VolumeTruth:
    """A burst of lookups in one hour, far above the host's other hours and every other host's."""

    src: str
    hour_start: str  # ISO-8601 UTC of the hour the burst falls in
    queries: int  # the burst's lookups (the host's ordinary lookups in that hour not counted)
    domains: tuple[str, ...]  # registered domains the burst's names are under, sorted
    kind: str  # subdomain-scan (wordlist names, mostly NXDOMAIN) or exfiltration (encoded data)
    names: int  # distinct names among the queries


@dataclass(frozen=True, slots=True)
class YoungTruth:
    """A domain in nrd.txt, registered days before internal hosts looked it up."""

    domain: str  # a registered domain (eTLD+1)
    registered: str  # YYYY-MM-DD, as in nrd.txt
    hosts: tuple[str, ...]  # internal hosts whose lookups of names under it were answered, sorted
    role: str  # c2, dns-tunnel, fast-flux, dga or exfiltration


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """What simulate() wrote."""

    out: Path
    files: tuple[Path, ...]  # the day logs, then truth.json
    rows: dict[str, int]  # rows written per log type, over all days
    c2: tuple[C2Truth, ...]
    dga: tuple[DgaTruth, ...] = ()
    dns_tunnel: tuple[TunnelTruth, ...] = ()
    fast_flux: tuple[FluxTruth, ...] = ()
    benign_dns: tuple[BenignDns, ...] = ()
    dns_bypass: tuple[BypassTruth, ...] = ()
    dns_volume: tuple[VolumeTruth, ...] = ()
    young_domains: tuple[YoungTruth, ...] = ()
    nrd_file: Path | None = None  # the newly-registered-domain feed (not in files: not a log)


def iso_utc(ts_us: int) -> str:
    """Microseconds since the epoch -> ISO-8601 UTC, e.g. 2026-11-23T00:00:41.123456Z."""
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(ts_us))
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_truth(
    path: Path,
    *,
    seed: int,
    hosts: int,
    days: int,
    start: dt.date,
    internal_networks: tuple[str, ...],
    c2: tuple[C2Truth, ...],
    benign_periodic: tuple[BenignPeriodic, ...],
    dga: tuple[DgaTruth, ...] = (),
    dns_tunnel: tuple[TunnelTruth, ...] = (),
    fast_flux: tuple[FluxTruth, ...] = (),
    benign_dns: tuple[BenignDns, ...] = (),
    dns_bypass: tuple[BypassTruth, ...] = (),
    dns_volume: tuple[VolumeTruth, ...] = (),
    young_domains: tuple[YoungTruth, ...] = (),
) -> None:
    """Write truth.json (stable key order, so equal runs give equal bytes)."""
    document = {
        "seed": seed,
        "hosts": hosts,
        "days": days,
        "start": start.isoformat(),
        "internal_networks": list(internal_networks),
        "c2": [asdict(item) for item in c2],
        "benign_periodic": [asdict(item) for item in benign_periodic],
        "dga": [asdict(item) for item in dga],
        "dns_tunnel": [asdict(item) for item in dns_tunnel],
        "fast_flux": [asdict(item) for item in fast_flux],
        "benign_dns": [asdict(item) for item in benign_dns],
        "dns_bypass": [asdict(item) for item in dns_bypass],
        "dns_volume": [asdict(item) for item in dns_volume],
        "young_domains": [asdict(item) for item in young_domains],
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
