"""Young domains: an internal host using a domain registered days before
(docs/detection.md#young-domain).

Registration dates come from a newly-registered-domain feed the user supplies (`nrd_file`)
and, when opted in (`rdap = true`), from RDAP lookups cached on disk (`homecall.intel.rdap`).
With neither, the detector reports nothing and says why. Ages are measured at the time the host
first used the domain, not today, so old captures are judged as they were. Age alone is at
most "medium"; more use and fewer fleet hosts weigh more.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
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
from homecall.detectors.suspicious_domain import LOCAL_NAME_PORTS
from homecall.findings import Finding, rank
from homecall.intel import lists, rdap
from homecall.store.tables import Tables

__all__ = ["DETECTOR", "Age", "YoungDomainConfig", "age_weight", "run", "run_with"]

log = logging.getLogger(__name__)

NXDOMAIN = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class YoungDomainConfig:
    """Settings under [detectors.young-domain] in homecall.toml."""

    nrd_file: str = ""  # newly-registered-domain feed: "domain" or "domain,YYYY-MM-DD" lines
    nrd_days: int = 30  # an undated feed entry was registered at most this long before the feed
    rdap: bool = False  # opt-in: RDAP lookups tell registries which domains the network uses
    rdap_cache: str = ""  # cache directory ("" = $XDG_CACHE_HOME/homecall/rdap)
    rdap_per_second: float = 1.0  # registries rate-limit anonymous clients; stay polite
    rdap_max_lookups: int = 50  # new lookups per run (cached ones are free), rarest domains first
    rdap_cache_days: int = 30  # look again after this: a dropped domain can be re-registered
    high_days: int = 7  # younger than a week: full age weight (typical of throwaway C2 domains)
    medium_days: int = 30  # younger than a month: 0.6
    max_age_days: int = 90  # older than this: not young; 0.3 weight up to here
    max_score: float = 0.7  # age alone is at most "medium": new sites and campaigns are common
    min_score: float = 0.2  # below: a domain of 1-3 months used once
    activity_full: float = 200.0  # lookups + connections for the full activity weight
    activity_floor: float = 0.5  # share of the score one lookup already carries
    shared_ratio: float = 0.1  # a domain 10 % of the fleet uses is a launch, not an implant...
    shared_damping: float = 0.9  # ...and its score is cut by up to 90 %
    min_fleet: int = 10  # prevalence means nothing in a fleet smaller than this


@dataclass(frozen=True, slots=True)
class Age:
    """A domain's registration as a finding states it."""

    registered: date | None  # None: an undated feed entry
    age_days: int  # exact, or the oldest it can be (undated feed entry)
    is_upper_bound: bool
    source: str  # "nrd-file" or "rdap"


def age_weight(age_days: int, cfg: YoungDomainConfig) -> float:
    """1 under high_days, 0.6 under medium_days, 0.3 up to max_age_days, else 0."""
    if age_days < cfg.high_days:
        return 1.0
    if age_days < cfg.medium_days:
        return 0.6
    return 0.3 if age_days <= cfg.max_age_days else 0.0


def records(tables: Tables) -> ir.Table:
    """Names internal hosts resolved (not NXDOMAIN) or connected to: (ts, uid, src, name, kind)."""
    dns = tables.oriented("dns")
    dns = dns.filter(
        (dns.direction != "inbound")
        & (dns.query.fill_null("") != "")
        & ~dns.dst_port.fill_null(53).isin(LOCAL_NAME_PORTS)
        & dns.rd.fill_null(True)
        & (dns.rcode.fill_null(0) != NXDOMAIN)
    )
    lookups = dns.select("ts", "uid", "src", name=dns.query.lower(), kind=ibis.literal("dns"))
    contacts = named_contacts(tables)
    used = contacts.select("ts", "uid", "src", "name", kind=ibis.literal("contact"))
    return ibis.union(lookups, used)


def run(tables: Tables, cfg: YoungDomainConfig) -> Iterator[Finding]:
    """Tables in, findings out (RDAP, when opted in, over the real network)."""
    return run_with(tables, cfg, transport=rdap.UrllibTransport())


def run_with(
    tables: Tables,
    cfg: YoungDomainConfig,
    *,
    transport: rdap.Transport,
    today: date | None = None,
) -> Iterator[Finding]:
    """`run` with the network injected (tests pass recorded RDAP answers)."""
    if not cfg.nrd_file and not cfg.rdap:
        log.info(
            "young-domain: skipped, no registration dates: set nrd_file (a newly-registered-"
            "domain feed) or rdap = true (lookups over the network)"
        )
        return
    used = records(tables)
    names = tables.to_pyarrow(used.select("name").distinct().order_by("name"))
    lookup = _domains(names.column("name").to_pylist())
    if lookup.num_rows == 0:
        return
    keyed = used.join(tables.memtable(lookup), "name")
    per_domain = keyed.group_by("domain").aggregate(
        dst_hosts=keyed.src.nunique(), uses=keyed.count()
    )
    domains = tables.to_pyarrow(per_domain.order_by(["dst_hosts", ibis.desc("uses"), "domain"]))
    ages = _registrations(domains.column("domain").to_pylist(), cfg, transport, today)
    if not ages:
        return
    known = pa.table({"domain": pa.array(sorted(ages), pa.string())})
    chosen = keyed.semi_join(tables.memtable(known), "domain")
    pairs = chosen.group_by(["src", "domain"]).aggregate(
        lookups=(chosen.kind == "dns").sum(),
        connections=chosen.uid.nunique(where=chosen.kind == "contact"),  # HTTP: a row per request
        first_name=chosen.name.min(),
        last_name=chosen.name.max(),
        first_seen=chosen.ts.min(),
        last_seen=chosen.ts.max(),
    )
    fleet = tables.fleet_size
    skipped = 0
    found = []
    for batch in tables.batches(pairs.join(per_domain, "domain")):
        for row in batch.to_pylist():
            age = _age(ages[row["domain"]], utc(row["first_seen"]).date(), cfg)
            if age is None:
                skipped += 1
            elif (f := _finding(row, age, fleet, cfg)) is not None:
                found.append(f)
    if skipped:
        log.info("young-domain: %d host-domain pairs used before the listed registration", skipped)
    found = rank(found)
    if not found:
        return
    wanted = pa.table({"src": [f.src for f in found], "domain": [f.dst for f in found]})
    uids = sample_uids(tables, keyed, ("src", "domain"), wanted)
    for f in found:
        yield with_uids(f, uids.get((f.src, f.dst or ""), []))


def _domains(names: list[str]) -> pa.Table:
    kept = [(n, d) for n in names if (d := rdap.registry_domain(n)) is not None]
    return pa.table(
        {
            "name": pa.array([n for n, _ in kept], pa.string()),
            "domain": pa.array([d for _, d in kept], pa.string()),
        }
    )


@dataclass(frozen=True, slots=True)
class _Source:
    registered: date | None
    feed_date: date | None  # for an undated feed entry
    source: str


def _registrations(
    domains: list[str], cfg: YoungDomainConfig, transport: rdap.Transport, today: date | None
) -> Mapping[str, _Source]:
    """Domain -> registration, exact dates first: a dated feed entry, then RDAP, then an
    undated feed entry. `domains` come rarest first (RDAP looks those up first)."""
    found: dict[str, _Source] = {}
    undated: dict[str, _Source] = {}
    if cfg.nrd_file:
        feed = lists.read_newly_registered(
            Path(cfg.nrd_file), frozenset(domains), key="detectors.young-domain.nrd_file"
        )
        log.info(
            "young-domain: %d of %d domains in the feed %s (%d entries, dated %s)",
            len(feed.dates),
            len(domains),
            cfg.nrd_file,
            feed.entries,
            feed.feed_date,
        )
        for domain, when in feed.dates.items():
            target = found if when is not None else undated
            target[domain] = _Source(when, feed.feed_date, "nrd-file")
    if cfg.rdap:
        client = rdap.RdapClient(
            transport,
            Path(cfg.rdap_cache) if cfg.rdap_cache else rdap.default_cache_dir(),
            per_second=cfg.rdap_per_second,
            max_age_days=cfg.rdap_cache_days,
            today=today,
        )
        wanted = [d for d in domains if d not in found]
        for domain, answer in client.lookup(wanted, cfg.rdap_max_lookups).items():
            if answer.registered is not None:
                found[domain] = _Source(answer.registered, None, "rdap")
    for domain, entry in undated.items():
        found.setdefault(domain, entry)
    return found


def _age(source: _Source, first_used: date, cfg: YoungDomainConfig) -> Age | None:
    """The age when first used; None when the registration is after the use (a later owner)."""
    if source.registered is not None:
        days = (first_used - source.registered).days
        return Age(source.registered, days, False, source.source) if days >= 0 else None
    assert source.feed_date is not None
    earliest = source.feed_date - timedelta(days=cfg.nrd_days)
    days = (first_used - earliest).days
    return Age(None, days, True, source.source) if days >= 0 else None


def _finding(row: dict[str, Any], age: Age, fleet: int, cfg: YoungDomainConfig) -> Finding | None:
    weight = age_weight(age.age_days, cfg)
    lookups, connections = int(row["lookups"]), int(row["connections"])
    hosts = int(row["dst_hosts"])
    shared = prevalence_factor(
        hosts, fleet, ratio=cfg.shared_ratio, damping=cfg.shared_damping, min_fleet=cfg.min_fleet
    )
    use = cfg.activity_floor + (1 - cfg.activity_floor) * scaled_log(
        lookups + connections, cfg.activity_full
    )
    score = cfg.max_score * weight * use * shared
    if score < cfg.min_score:
        return None
    src, domain = str(row["src"]), str(row["domain"])
    evidence: dict[str, Any] = {
        "registered": age.registered.isoformat() if age.registered else None,
        "age_days": age.age_days,
        "age_is_upper_bound": age.is_upper_bound,
        "source": age.source,
        "lookups": lookups,
        "connections": connections,
        "example_names": sorted({row["first_name"], row["last_name"]}),
        "dst_hosts": hosts,
        "fleet_hosts": fleet,
    }
    origin = (
        f"on {age.registered.isoformat()}, {_SOURCES[age.source]}"
        if age.registered
        else _SOURCES[age.source]
    )
    summary = (
        f"{src} used {domain} {_age_words(age)} after its registration ({origin}): "
        f"{lookups} lookups, {connections} connections"
    )
    summary = lowered(summary, evidence, fleet_share(evidence, shared, hosts, fleet))
    return Finding(
        detector="young-domain",
        src=src,
        dst=domain,
        dst_port=None,
        score=score,
        first_seen=utc(row["first_seen"]),
        last_seen=utc(row["last_seen"]),
        summary=summary + ".",
        evidence=evidence,
    )


_SOURCES = {"rdap": "RDAP", "nrd-file": "newly-registered-domain feed"}


def _age_words(age: Age) -> str:
    days = "day" if age.age_days == 1 else "days"
    return f"{'at most ' if age.is_upper_bound else ''}{age.age_days} {days}"


DETECTOR = Detector(
    name="young-domain",
    requires=("dns",),
    config=YoungDomainConfig,
    run=run,
    description="domains registered days before an internal host used them",
)
