"""Fast flux: a name whose short-lived A/AAAA answers keep changing among addresses scattered
over many unrelated networks, the way botnets hide C2 behind compromised home machines
(docs/detection.md#fast-flux).

Ibis finds the names with at least `min_addresses` distinct answered addresses and aggregates
their responses; the address maths (networks, blocks, rotation) is pure Python per candidate.
CDNs and cloud load balancers also answer with short TTLs and many addresses, but from a few
providers' blocks and usually behind a CNAME; NTP pools look exactly like flux and are a known
service. Without ASN data (no network access at run time) the spread of the addresses over
IPv4 /8 blocks (IPv6 /16) stands in for the number of providers.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from homecall.detectors.base import Detector
from homecall.detectors.common import (
    lowered,
    prevalence_factor,
    ramp,
    sample_uids,
    utc,
    with_uids,
)
from homecall.detectors.dns_queries import client_queries, name_domains, resolvers
from homecall.findings import Finding, rank
from homecall.intel.domains import registered_domain
from homecall.intel.services import known_service
from homecall.store.tables import Tables

__all__ = [
    "DETECTOR",
    "AddressSpread",
    "FastFluxConfig",
    "address_spread",
    "answered",
    "candidates",
    "flux_score",
    "run",
]

log = logging.getLogger(__name__)

IPV4 = r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$"
IPV6 = r"^[0-9a-fA-F]{0,4}(:[0-9a-fA-F]{0,4}){2,7}$"
NAME = r"^[a-zA-Z0-9_-]+(\.[a-zA-Z0-9_-]+)+\.?$"  # a CNAME target in Zeek's answers


@dataclass(frozen=True, slots=True, kw_only=True)
class FastFluxConfig:
    """Settings under [detectors.fast-flux] in homecall.toml."""

    min_addresses: int = 10  # fewer public addresses cannot show a spread (Holz et al. 2008)
    ttl_short_s: float = 300.0  # flux TTLs are at most a few minutes (Holz et al.: 0-300 s)
    ttl_long_s: float = 1800.0  # a median TTL this long is ordinary caching, not flux
    networks_low: int = 5  # distinct /24 (/48) networks: from here ...
    networks_high: int = 40  # ... to here the answers' networks count as many
    blocks_low: int = 3  # distinct /8 (IPv6 /16) blocks a CDN or one cloud region stays within
    blocks_high: int = 12  # addresses over this many blocks come from unrelated providers
    rotation_low: float = 1.5  # distinct addresses / most in one answer: a fixed round robin ~1
    rotation_high: float = 4.0  # answers replaced several times over: flux
    ttl_unknown_weight: float = 0.5  # logs without TTLs (dnsmasq): neither for nor against
    max_score: float = 0.85  # addresses alone (no ASN, no content) are at most "high"
    names_many: int = 20  # distinct names asked under the registered domain: a CDN's many customers
    many_names_damping: float = 0.5  # ... lower the score by up to x0.5
    cname_damping: float = 0.5  # answers via a CNAME into another domain (a CDN, a cloud LB): x0.5
    known_damping: float = 0.8  # a known service (NTP pool; homecall/intel/services.py): x0.2
    min_fleet: int = 10  # prevalence means nothing in a fleet smaller than this
    shared_ratio: float = 0.1  # a name 10 % of the fleet asks is a service
    shared_damping: float = 0.9  # ... and its score is lowered by up to x0.1
    min_score: float = 0.25  # below (before context): not worth an analyst's time


@dataclass(frozen=True, slots=True)
class AddressSpread:
    """How widely a name's public answers are spread."""

    addresses: int
    networks: int  # distinct IPv4 /24 and IPv6 /48
    networks_16: int  # distinct IPv4 /16 and IPv6 /32
    blocks: int  # distinct IPv4 /8 and IPv6 /16


def address_spread(answers: Sequence[str]) -> AddressSpread:
    """Pure: distinct public (globally routable) addresses among `answers` and their networks."""
    addresses = set()
    for text in answers:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            continue
        if address.is_global:
            addresses.add(address)
    nets: list[set[tuple[int, int]]] = [set(), set(), set()]
    for address in addresses:
        bits = 32 if address.version == 4 else 128
        prefixes = (24, 16, 8) if address.version == 4 else (48, 32, 16)
        for known, prefix in zip(nets, prefixes, strict=True):
            known.add((address.version, int(address) >> (bits - prefix)))
    return AddressSpread(len(addresses), len(nets[0]), len(nets[1]), len(nets[2]))


def flux_score(
    spread: AddressSpread, ttl_median_s: float | None, rotation: float, cfg: FastFluxConfig
) -> float:
    """0..max_score before context: short TTLs x spread over many unrelated blocks x the
    geometric mean of many networks and answers that keep changing (docs/detection.md).
    The spread over blocks weighs most: it is what tells flux from a CDN or a cloud."""
    if spread.addresses < cfg.min_addresses:
        return 0.0
    if ttl_median_s is None:
        ttl = cfg.ttl_unknown_weight
    else:
        ttl = 1.0 - ramp(ttl_median_s, cfg.ttl_short_s, cfg.ttl_long_s)
    many = ramp(spread.networks, cfg.networks_low, cfg.networks_high)
    scattered = ramp(spread.blocks, cfg.blocks_low, cfg.blocks_high)
    changing = ramp(rotation, cfg.rotation_low, cfg.rotation_high)
    return float(cfg.max_score * ttl * scattered * math.sqrt(many * changing))


def answered(tables: Tables) -> ir.Table:
    """A/AAAA lookups by internal hosts that got answers, with ttl_s (the shortest TTL of the
    response: when a cache drops it) and by_resolver (src answers DNS for other hosts)."""
    queries = client_queries(tables)
    rows = queries.filter(
        (queries.qtype.isin((1, 28)) | queries.qtype_name.isin(("A", "AAAA"))).fill_null(False)
        & (queries.answers.length().fill_null(0) > 0)
    )
    return rows.mutate(ttl_s=rows.ttls_s.mins(), by_resolver=rows.src.isin(resolvers(tables).ip))


def candidates(rows: ir.Table, cfg: FastFluxConfig) -> ir.Table:
    """One row per name with at least min_addresses distinct addresses in its answers: response
    counts, TTLs, the addresses, CNAME targets and the most answers in one response."""
    unnested = rows.select("name", "src", "ts", "uid", answer=rows.answers.unnest())
    is_address = unnested.answer.re_search(IPV4) | unnested.answer.re_search(IPV6)
    addresses = unnested.filter(is_address)
    per_name = addresses.group_by("name").aggregate(
        address_list=addresses.answer.collect(distinct=True)
    )
    per_name = per_name.filter(per_name.address_list.length() >= cfg.min_addresses)
    per_response = addresses.group_by(["name", "src", "ts", "uid"]).aggregate(
        n=addresses.answer.nunique()
    )
    widest = per_response.group_by("name").aggregate(most_in_answer=ibis._.n.max())
    cnames = unnested.filter(~is_address & unnested.answer.re_search(NAME))
    cnames = cnames.group_by("name").aggregate(cname_list=cnames.answer.collect(distinct=True))
    chosen = rows.semi_join(per_name, "name")
    summary = chosen.group_by("name").aggregate(
        responses=ibis._.count(),
        hosts=ibis._.src.nunique(where=~ibis._.by_resolver),
        first_seen=ibis._.ts.min(),
        last_seen=ibis._.ts.max(),
        ttl_list=ibis._.ttl_s.collect(),
    )
    found = per_name.join(summary, "name").join(widest, "name")
    return found.left_join(cnames, "name").drop("name_right")


def run(tables: Tables, cfg: FastFluxConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    rows = answered(tables)
    table = tables.to_pyarrow(candidates(rows, cfg).order_by("name"))
    if table.num_rows == 0:
        return
    names = table.column("name")
    top = _top_hosts(tables, rows, names)
    per_domain = _names_per_domain(tables, rows, names)
    fleet = tables.fleet_size
    found = rank(
        f
        for row in table.to_pylist()
        if (f := _finding(row, top[row["name"]], per_domain, fleet, cfg)) is not None
    )
    if not found:
        return
    wanted = pa.table({"src": [f.src for f in found], "name": [f.dst or "" for f in found]})
    uids = sample_uids(tables, rows, ("src", "name"), wanted)
    for f in found:
        yield with_uids(f, uids.get((f.src, f.dst or ""), []))


def _top_hosts(
    tables: Tables, rows: ir.Table, names: pa.ChunkedArray
) -> dict[str, tuple[str, int]]:
    """name -> (the internal host that looked it up most, its lookups): a client before a
    resolver (which forwards its clients' lookups); ties: the lower address."""
    chosen = rows.semi_join(tables.memtable(pa.table({"name": names})), "name")
    counts = chosen.group_by(["name", "src", "by_resolver"]).aggregate(n=ibis._.count())
    order = ["name", "by_resolver", ibis.desc("n"), "src"]
    top: dict[str, tuple[str, int]] = {}
    for r in tables.to_pyarrow(counts.order_by(order)).to_pylist():
        top.setdefault(r["name"], (r["src"], int(r["n"])))
    return top


def _names_per_domain(tables: Tables, rows: ir.Table, names: pa.ChunkedArray) -> dict[str, int]:
    """Registered domain -> distinct answered names the fleet asked under it, for the
    candidates' domains."""
    domains = {registered_domain(n) for n in names.to_pylist()} - {None}
    if not domains:
        return {}
    known = name_domains(tables, rows)
    known = known.filter(known.domain.isin(sorted(d for d in domains if d)))
    counted = known.group_by("domain").aggregate(n=ibis._.name.nunique())
    return {r["domain"]: int(r["n"]) for r in tables.to_pyarrow(counted).to_pylist()}


def _context(
    row: dict[str, Any], domain: str | None, names: int, fleet: int, cfg: FastFluxConfig
) -> tuple[float, list[str], dict[str, Any]]:
    """(factor, reasons, evidence): known services, CNAME delegation, many names, prevalence."""
    factor = 1.0
    reasons: list[str] = []
    evidence: dict[str, Any] = {}
    name = str(row["name"])
    service = known_service(name, None)
    if service:
        factor *= 1.0 - cfg.known_damping
        evidence["known_service"] = service
        reasons.append(f"{name} is a known {service} name")
    targets = sorted(
        {registered_domain(t) for t in row["cname_list"] or []} - {domain, None}, key=str
    )
    if targets:
        factor *= 1.0 - cfg.cname_damping
        evidence["cname_domains"] = [str(t) for t in targets[:5]]
        reasons.append(f"answered through a CNAME into {targets[0]}")
    if names > 1:
        many = ramp(math.log(names), math.log(2), math.log(cfg.names_many))
        if many > 0:
            factor *= 1.0 - cfg.many_names_damping * many
            reasons.append(f"{names} names are looked up under {domain}")
    hosts = max(int(row["hosts"]), 1)
    if fleet >= cfg.min_fleet and hosts > 1:
        shared = prevalence_factor(
            hosts,
            fleet,
            ratio=cfg.shared_ratio,
            damping=cfg.shared_damping,
            min_fleet=cfg.min_fleet,
        )
        factor *= shared
        evidence["shared_name_factor"] = round(shared, 3)
        reasons.append(f"{hosts} of {fleet} internal hosts look it up")
    return factor, reasons, evidence


def _finding(
    row: dict[str, Any],
    top: tuple[str, int],
    per_domain: dict[str, int],
    fleet: int,
    cfg: FastFluxConfig,
) -> Finding | None:
    spread = address_spread(row["address_list"])
    ttls = np.array([t for t in row["ttl_list"] or [] if t is not None], dtype=np.float64)
    ttl_median = float(np.median(ttls)) if len(ttls) else None
    rotation = spread.addresses / max(int(row["most_in_answer"]), 1)
    before = flux_score(spread, ttl_median, rotation, cfg)
    if before < cfg.min_score:
        return None
    name = str(row["name"])
    domain = registered_domain(name)
    names = per_domain.get(domain, 1) if domain else 1
    factor, reasons, context = _context(row, domain, names, fleet, cfg)
    src, lookups = top
    evidence: dict[str, Any] = {
        "domain": domain,
        "addresses": spread.addresses,
        "networks": spread.networks,
        "networks_16": spread.networks_16,
        "blocks_8": spread.blocks,
        "most_in_one_answer": int(row["most_in_answer"]),
        "rotation_ratio": round(rotation, 2),
        "ttl_median_s": ttl_median,
        "ttl_max_s": float(ttls.max()) if len(ttls) else None,
        "responses": int(row["responses"]),
        "domain_names": names,
        "query_hosts": max(int(row["hosts"]), 1),
        "src_lookups": lookups,
        "fleet_hosts": fleet,
        "score_before_context": round(before, 3),
        **context,
    }
    ttl_text = "TTL unknown" if ttl_median is None else f"median TTL {ttl_median:.0f} s"
    summary = (
        f"{src} looked up {name}, which answered with {spread.addresses} addresses in "
        f"{spread.networks} networks over {spread.blocks} /8 blocks ({ttl_text}, "
        f"{rotation:.1f}x the addresses of one answer): fast-flux hosting"
    )
    summary = lowered(summary, evidence, reasons)
    return Finding(
        detector="fast-flux",
        src=src,
        dst=name,
        dst_port=None,
        score=before * factor,
        first_seen=utc(row["first_seen"]),
        last_seen=utc(row["last_seen"]),
        summary=summary + ".",
        evidence=evidence,
    )


DETECTOR = Detector(
    name="fast-flux",
    requires=("dns",),
    config=FastFluxConfig,
    run=run,
    description="names answering with short-lived addresses scattered over many networks",
)
