"""Rare destinations: remote domains or IPs only one internal host talks to (docs/detection.md).

Domains are grouped by registered domain (eTLD+1, from the TLS SNI and the HTTP Host), so a CDN's
per-customer names do not look rare. IPs count only when no name was seen for them: a direct-to-IP
contact. Rarity alone is weak evidence; the score grows with connections and bytes and stays at
most "medium" so that rarity ranks, but never outranks, a concrete technique.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from homecall.detectors.base import Detector
from homecall.detectors.common import (
    most_common_port,
    named_contacts,
    sample_uids,
    scaled_log,
    utc,
    with_uids,
)
from homecall.findings import Finding, rank
from homecall.intel.domains import registered_domains
from homecall.store.tables import Tables

__all__ = ["DETECTOR", "RareDestinationConfig", "contacts", "rarity_score", "run"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class RareDestinationConfig:
    """Settings under [detectors.rare-destination] in homecall.toml."""

    max_hosts: int = 1  # "rare" = contacted by at most this many internal hosts in the window
    min_fleet: int = 5  # with fewer internal hosts, everything is rare and rarity says nothing
    max_score: float = 0.6  # rarity alone is at most "medium" (findings.severity_for)
    conns_full: float = 1000.0  # this many connections give the full connection weight
    bytes_full: float = 1e8  # this many bytes (100 MB) give the full volume weight
    min_score: float = 0.3  # below: one-off visits of the long tail, not worth an analyst's time


def rarity_score(conns: int, total_bytes: int, cfg: RareDestinationConfig) -> float:
    """0..max_score: a base for being rare, plus weights for connections and volume."""
    weight = (
        0.2
        + 0.5 * scaled_log(conns, cfg.conns_full)
        + 0.3 * scaled_log(total_bytes, cfg.bytes_full)
    )
    return cfg.max_score * weight


def contacts(tables: Tables) -> tuple[ir.Table, ir.Table]:
    """(named, direct): outbound contacts with a domain, and conn rows to IPs never named."""
    conn = tables.oriented("conn")
    outbound = conn.filter(conn.direction == "outbound")
    sizes = outbound.select(
        "uid", bytes=outbound.orig_bytes.fill_null(0) + outbound.resp_bytes.fill_null(0)
    )
    named = named_contacts(tables)
    names = tables.to_pyarrow(named.select("name").distinct())
    lookup = pa.table(
        {"name": names.column("name"), "domain": registered_domains(names.column("name"))}
    )
    domains = tables.memtable(lookup.filter(pa.compute.is_valid(lookup.column("domain"))))
    named = named.join(domains, "name").left_join(sizes, "uid").drop("uid_right")
    named_ips = named.select(ip=named.dst).distinct()
    direct = outbound.anti_join(named_ips, outbound.dst == named_ips.ip)
    direct = direct.mutate(
        domain=ibis.null(str), bytes=direct.orig_bytes.fill_null(0) + direct.resp_bytes.fill_null(0)
    )
    return named, direct


def _rare(records: ir.Table, key: str, cfg: RareDestinationConfig) -> ir.Table:
    hosts = records.group_by(key).aggregate(hosts=records.src.nunique())
    rare = hosts.filter(hosts.hosts <= cfg.max_hosts)
    kept = records.semi_join(rare, key)
    summary = kept.group_by(["src", key]).aggregate(
        conns=kept.uid.nunique(),
        total_bytes=kept.bytes.sum(),
        first_seen=kept.ts.min(),
        last_seen=kept.ts.max(),
        example=kept.dst.max(),
    )
    return summary.join(most_common_port(kept, ["src", key]), ["src", key])


def run(tables: Tables, cfg: RareDestinationConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    fleet = tables.fleet_size
    if fleet < cfg.min_fleet:
        log.info(
            "rare-destination: %d internal hosts, fewer than %d; skipped", fleet, cfg.min_fleet
        )
        return
    named, direct = contacts(tables)
    for kind, records, key in (("domain", named, "domain"), ("ip", direct, "dst")):
        found = rank(
            f
            for batch in tables.batches(_rare(records, key, cfg))
            for row in batch.to_pylist()
            if (f := _finding(kind, key, row, fleet, cfg)) is not None
        )
        if not found:
            continue
        wanted = pa.table({"src": [f.src for f in found], key: [f.dst for f in found]})
        uids = sample_uids(tables, records, ("src", key), wanted)
        for f in found:
            yield with_uids(f, uids.get((f.src, f.dst or ""), []))


def _finding(
    kind: str, key: str, row: dict[str, Any], fleet: int, cfg: RareDestinationConfig
) -> Finding | None:
    conns = int(row["conns"])
    known = row["total_bytes"] is not None  # None: TLS or HTTP records without their conn.log
    total = int(row["total_bytes"]) if known else 0
    score = rarity_score(conns, total, cfg)
    if score < cfg.min_score:
        return None
    dst = str(row[key])
    what = "domain" if kind == "domain" else "address, never named in TLS or HTTP,"
    summary = (
        f"{row['src']} is the only internal host of {fleet} that contacted the {what} {dst} "
        f"({conns} connections, {f'{total:,} bytes' if known else 'bytes unknown'})."
    )
    evidence: dict[str, Any] = {
        "kind": kind,
        "connections": conns,
        "total_bytes": total if known else None,
        "dst_hosts": 1,
        "fleet_hosts": fleet,
    }
    if kind == "domain":
        evidence["example_ip"] = row["example"]
    port = row["dst_port"]
    return Finding(
        detector="rare-destination",
        src=str(row["src"]),
        dst=dst,
        dst_port=int(port) if port is not None else None,
        score=score,
        first_seen=utc(row["first_seen"]),
        last_seen=utc(row["last_seen"]),
        summary=summary,
        evidence=evidence,
    )


DETECTOR = Detector(
    name="rare-destination",
    requires=("conn",),
    config=RareDestinationConfig,
    run=run,
    description="remote domains or IPs that only one internal host contacts",
)
