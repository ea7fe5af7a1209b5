"""Suspicious domains: an internal host using dynamic-DNS names, URL shorteners, tunnel or
free-hosting services, or risky TLDs (docs/detection.md#suspicious-domain).

Names come from the host's DNS queries and, when present, the TLS SNI and HTTP Host of its
connections. They are grouped per (internal host, registrable domain), where the registrable
domain of a dynamic-DNS name is the label the customer chose ("ibbwnhgh.mooo.com"). A list
category is a prior, not a proof: the score grows with repeated use (log-scaled), shrinks when
many internal hosts use the domain (business use), and stays at most "medium".
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from homecall.detectors.base import Detector
from homecall.detectors.common import (
    fleet_share,
    lowered,
    named_contacts,
    prevalence_factor,
    sample_uids,
    scaled_log,
    utc,
    with_uids,
)
from homecall.findings import Finding, rank
from homecall.intel import lists
from homecall.store.tables import Tables

__all__ = [
    "DETECTOR",
    "LOCAL_NAME_PORTS",
    "SuspiciousDomainConfig",
    "UserLists",
    "run",
    "suspicion_score",
]

log = logging.getLogger(__name__)

LOCAL_NAME_PORTS = (5353, 5355, 137)  # mDNS, LLMNR, NetBIOS: local names, never a remote domain


@dataclass(frozen=True, slots=True, kw_only=True)
class SuspiciousDomainConfig:
    """Settings under [detectors.suspicious-domain] in homecall.toml."""

    max_score: float = 0.6  # a list category is a prior, not a proof: at most "medium"
    min_score: float = 0.2  # below: a shortener or risky-TLD site seen once or twice, noise
    activity_full: float = 200.0  # lookups + connections for the full activity weight
    activity_floor: float = 0.4  # share of the score a single lookup already carries
    shared_ratio: float = 0.1  # a domain 10 % of the fleet uses is business use...
    shared_damping: float = 0.9  # ...and its score is cut by up to 90 % (lowered, not hidden)
    min_fleet: int = 10  # prevalence means nothing in a fleet smaller than this
    extra_ddns_file: str = ""  # the user's dynamic-DNS apexes, one per line (added to the list)
    extra_shorteners_file: str = ""  # the user's URL shorteners, one per line
    extra_risky_tlds_file: str = ""  # the user's TLDs, "tld" or "tld<TAB>weight" per line
    extra_tld_weight: float = 0.35  # weight of a user TLD given without one (Interisle .xyz: 0.30)


@dataclass(frozen=True, slots=True)
class UserLists:
    """The user's own lists, read once per run from the paths in the settings."""

    ddns: frozenset[str] = frozenset()
    shorteners: frozenset[str] = frozenset()
    tlds: Mapping[str, float] | None = None

    @classmethod
    def load(cls, cfg: SuspiciousDomainConfig) -> UserLists:
        """Read the files named in `cfg` (ConfigError when one cannot be read)."""
        key = "detectors.suspicious-domain."
        ddns = shorteners = frozenset[str]()
        tlds = None
        if cfg.extra_ddns_file:
            ddns = lists.read_domain_file(Path(cfg.extra_ddns_file), key + "extra_ddns_file")
        if cfg.extra_shorteners_file:
            path = Path(cfg.extra_shorteners_file)
            shorteners = lists.read_domain_file(path, key + "extra_shorteners_file")
        if cfg.extra_risky_tlds_file:
            path = Path(cfg.extra_risky_tlds_file)
            tlds = lists.read_tld_file(path, key + "extra_risky_tlds_file", cfg.extra_tld_weight)
        return cls(ddns, shorteners, tlds)


def suspicion_score(
    weight: float, activity: int, shared: float, cfg: SuspiciousDomainConfig
) -> float:
    """max_score x category weight x (floor + (1 - floor) x w(activity)) x prevalence factor."""
    use = cfg.activity_floor + (1.0 - cfg.activity_floor) * scaled_log(activity, cfg.activity_full)
    return cfg.max_score * min(1.0, weight) * use * shared


def records(tables: Tables) -> ir.Table:
    """Every name an internal host used: (ts, uid, src, name, kind), kind "dns" or "contact".

    DNS: outbound or internal queries, not mDNS/LLMNR/NetBIOS, and not the non-recursive
    queries an internal resolver sends while resolving for its clients (rd false).
    """
    dns = tables.oriented("dns")
    dns = dns.filter(
        (dns.direction != "inbound")
        & (dns.query.fill_null("") != "")
        & ~dns.dst_port.fill_null(53).isin(LOCAL_NAME_PORTS)
        & dns.rd.fill_null(True)
    )
    lookups = dns.select("ts", "uid", "src", name=dns.query.lower(), kind=ibis.literal("dns"))
    contacts = named_contacts(tables)
    used = contacts.select("ts", "uid", "src", "name", kind=ibis.literal("contact"))
    return ibis.union(lookups, used)


def _classify(
    names: list[str], user: UserLists
) -> tuple[pa.Table, dict[str, list[lists.Category]]]:
    """(name -> domain table for names on a list, domain -> its categories, strongest first)."""
    kept_names, kept_domains = [], []
    by_domain: dict[str, dict[tuple[str, str], lists.Category]] = {}
    for name in names:
        found = lists.categories(
            name, extra_ddns=user.ddns, extra_shorteners=user.shorteners, extra_tlds=user.tlds
        )
        domain = lists.registrable(name, user.ddns) if found else None
        if domain is None:
            continue
        kept_names.append(name)
        kept_domains.append(domain)
        seen = by_domain.setdefault(domain, {})
        for category in found:
            seen.setdefault((category.name, category.matched), category)
    table = pa.table(
        {"name": pa.array(kept_names, pa.string()), "domain": pa.array(kept_domains, pa.string())}
    )
    ranked = {
        d: sorted(c.values(), key=lambda c: (-c.weight, c.name, c.matched))
        for d, c in by_domain.items()
    }
    return table, ranked


def combined_weight(found: list[lists.Category]) -> float:
    """Categories combine as independent evidence (noisy-or) over distinct categories."""
    best: dict[str, float] = {}
    for category in found:
        best[category.name] = max(best.get(category.name, 0.0), category.weight)
    return 1.0 - float(np.prod([1.0 - w for w in best.values()]))


def run(tables: Tables, cfg: SuspiciousDomainConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    user = UserLists.load(cfg)
    used = records(tables)
    names = tables.to_pyarrow(used.select("name").distinct().order_by("name"))
    lookup, categories = _classify(names.column("name").to_pylist(), user)
    if not categories:
        return
    keyed = used.join(tables.memtable(lookup), "name")
    pairs = keyed.group_by(["src", "domain"]).aggregate(
        lookups=(keyed.kind == "dns").sum(),
        connections=keyed.uid.nunique(where=keyed.kind == "contact"),  # HTTP: a row per request
        distinct_names=keyed.name.nunique(),
        first_name=keyed.name.min(),
        last_name=keyed.name.max(),
        first_seen=keyed.ts.min(),
        last_seen=keyed.ts.max(),
    )
    hosts = keyed.group_by("domain").aggregate(dst_hosts=keyed.src.nunique())
    fleet = tables.fleet_size
    found = rank(
        f
        for batch in tables.batches(pairs.join(hosts, "domain"))
        for row in batch.to_pylist()
        if (f := _finding(row, categories[row["domain"]], fleet, cfg)) is not None
    )
    if not found:
        return
    wanted = pa.table({"src": [f.src for f in found], "domain": [f.dst for f in found]})
    uids = sample_uids(tables, keyed, ("src", "domain"), wanted)
    for f in found:
        yield with_uids(f, uids.get((f.src, f.dst or ""), []))


def _finding(
    row: dict[str, Any], found: list[lists.Category], fleet: int, cfg: SuspiciousDomainConfig
) -> Finding | None:
    lookups, connections = int(row["lookups"]), int(row["connections"])
    hosts = int(row["dst_hosts"])
    shared = prevalence_factor(
        hosts, fleet, ratio=cfg.shared_ratio, damping=cfg.shared_damping, min_fleet=cfg.min_fleet
    )
    weight = combined_weight(found)
    score = suspicion_score(weight, lookups + connections, shared, cfg)
    if score < cfg.min_score:
        return None
    src, domain, top = str(row["src"]), str(row["domain"]), found[0]
    examples = sorted({row["first_name"], row["last_name"]})
    evidence: dict[str, Any] = {
        "category": top.name,
        "categories": sorted({c.name for c in found}),
        "matched": top.matched,
        "list_source": top.source,
        "category_weight": round(weight, 3),
        "lookups": lookups,
        "connections": connections,
        "distinct_names": int(row["distinct_names"]),
        "example_names": examples,
        "dst_hosts": hosts,
        "fleet_hosts": fleet,
    }
    summary = f"{src} {_used(domain, lookups, connections)}: a {_label(top)}"
    summary = lowered(summary, evidence, fleet_share(evidence, shared, hosts, fleet))
    return Finding(
        detector="suspicious-domain",
        src=src,
        dst=domain,
        dst_port=None,
        score=score,
        first_seen=utc(row["first_seen"]),
        last_seen=utc(row["last_seen"]),
        summary=summary + ".",
        evidence=evidence,
    )


def _used(domain: str, lookups: int, connections: int) -> str:
    looked = f"looked up {domain} {_times(lookups)}"
    connected = f"connected to {domain} {_times(connections)}"
    if lookups and connections:
        return f"{looked} and connected to it {_times(connections)}"
    return looked if lookups else connected


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _label(category: lists.Category) -> str:
    if category.name == "dynamic-dns":
        return f"dynamic-DNS name under {category.matched} ({category.source})"
    if category.name == "tunnel":
        return f"tunnel service name ({category.source}, {category.matched})"
    if category.name == "free-hosting":
        return f"free-hosting name ({category.source}, {category.matched})"
    if category.name == "url-shortener":
        return f"URL shortener ({category.source})"
    weight = f"weight {category.weight:.2f}"
    return f"name in the risky TLD .{category.matched} ({weight}, {category.source})"


DETECTOR = Detector(
    name="suspicious-domain",
    requires=("dns",),
    config=SuspiciousDomainConfig,
    run=run,
    description="dynamic-DNS, URL-shortener, tunnel, free-hosting and risky-TLD names",
)
