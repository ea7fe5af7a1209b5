"""Direct-to-IP contacts: outbound connections to public addresses that no DNS answer in the
window gave, the C2 that skips DNS (docs/detection.md#direct-ip).

Only meaningful where DNS is visible: the window must have DNS records, the host must have made
DNS queries, and hosts that resolve over encrypted DNS (DoT, DoH) are left out, since their
lookups cannot be seen; connections outside the span of the DNS records are not judged. DNS,
DoT, NTP and DHCP ports are left to their own detectors. The score grows with connections,
bytes and persistence, shrinks when many internal hosts reach the address without DNS
(infrastructure) and when the connection carried a name (TLS SNI, HTTP Host: the lookup may
predate the window).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from homecall.detectors.base import Detector
from homecall.detectors.common import (
    connection_bytes,
    fleet_share,
    lowered,
    most_common_port,
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
    "DirectIpConfig",
    "candidates",
    "direct_score",
    "encrypted_dns_hosts",
    "is_public",
    "run",
]

log = logging.getLogger(__name__)

_IP_LITERAL = r"^[0-9.]+$|:"  # a Host/SNI written as an address (IPv6 always has a colon)


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectIpConfig:
    """Settings under [detectors.direct-ip] in homecall.toml."""

    ignore_ports: tuple[int, ...] = (53, 853, 123, 67, 68)  # DNS/DoT (dns-bypass), NTP, DHCP
    protocols: tuple[str, ...] = ("tcp", "udp")  # ICMP to an address (ping 8.8.8.8) is no C2 sign
    max_score: float = 0.7  # no DNS is one reason: at most "medium"
    min_score: float = 0.2  # below: a single short connection
    conns_full: float = 1000.0  # connections for the full connection weight
    bytes_full: float = 1e8  # bytes (100 MB) for the full volume weight
    span_full_s: float = 3600.0  # an hour between first and last connection: fully persistent
    named_factor: float = (
        0.5  # a TLS SNI/HTTP Host name was sent: the lookup may predate the window
    )
    shared_ratio: float = 0.1  # an address 10 % of the fleet reaches without DNS is infrastructure
    shared_damping: float = 0.9  # ...and its score is cut by up to 90 %
    min_fleet: int = 10  # prevalence means nothing in a fleet smaller than this


def is_public(ip: str) -> bool:
    """A globally routable unicast address (not private, reserved, link-local or multicast)."""
    try:
        address = ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        return False
    return address.is_global and not address.is_multicast


def direct_score(
    conns: int, total_bytes: int, span_s: float, *, named: bool, shared: float, cfg: DirectIpConfig
) -> float:
    """max_score x (0.25 + 0.35 w(conns) + 0.2 w(bytes) + 0.2 persistence) x context."""
    persistence = min(1.0, max(span_s, 0.0) / cfg.span_full_s)
    weight = (
        0.25
        + 0.35 * scaled_log(conns, cfg.conns_full)
        + 0.2 * scaled_log(total_bytes, cfg.bytes_full)
        + 0.2 * persistence
    )
    return cfg.max_score * weight * shared * (cfg.named_factor if named else 1.0)


def encrypted_dns_hosts(tables: Tables) -> ir.Table:
    """Column `src`: internal hosts that resolve over DoT (port 853) or a known DoH service."""
    conn = tables.oriented("conn")
    out = conn.filter(conn.direction == "outbound")
    addresses = [k for k in lists.public_resolvers() if lists.normalize(k) is None]
    names = [k for k in lists.public_resolvers() if lists.normalize(k) is not None]
    dot = out.filter((out.dst_port == 853) | (out.dst.isin(addresses) & (out.dst_port == 443)))
    contacts = named_contacts(tables)
    doh = contacts.filter(contacts.name.isin(names))
    return ibis.union(dot.select("src"), doh.select("src"), distinct=True)


def candidates(tables: Tables, cfg: DirectIpConfig, span: tuple[Any, Any]) -> ir.Table:
    """Outbound contacts to addresses no DNS answer gave, by hosts whose DNS is visible, inside
    `span` (first and last DNS record): (ts, uid, src, dst, dst_port, bytes, name, ip_literal).
    """
    dns = tables.oriented("dns")
    answered = dns.select(ip=dns.answers.unnest()).distinct()
    clients = dns.filter(dns.direction != "inbound").select("src").distinct()
    conn = tables.oriented("conn")
    out = conn.filter(
        (conn.direction == "outbound")
        & conn.proto.isin(cfg.protocols)
        & ~conn.dst_port.isin(cfg.ignore_ports)
    )
    contacts = named_contacts(tables)
    names = contacts.group_by("uid").aggregate(name=contacts.name.max())
    flows = out.left_join(names, "uid").select(
        "ts",
        "uid",
        "src",
        "dst",
        "dst_port",
        bytes=connection_bytes(out),
        name=names.name,
    )
    alone = contacts.anti_join(conn.select("uid"), "uid")  # TLS/HTTP logs without conn.log
    alone = alone.filter(~alone.dst_port.isin(cfg.ignore_ports)).select(
        "ts", "uid", "src", "dst", "dst_port", bytes=ibis.null("int64"), name=alone.name
    )
    found = ibis.union(flows, alone)
    found = found.anti_join(answered, found.dst == answered.ip)
    found = found.semi_join(clients, "src").anti_join(encrypted_dns_hosts(tables), "src")
    found = found.filter(found.ts.between(*span))
    literal = found.name.fill_null("").re_search(_IP_LITERAL)
    return found.select(
        "ts",
        "uid",
        "src",
        "dst",
        "dst_port",
        "bytes",
        name=literal.ifelse(ibis.null(str), found.name),
        ip_literal=literal,
    )


def _coverage(tables: Tables) -> tuple[Any, Any] | None:
    """The span of the DNS records, or None (logged) when DNS cannot tell direct contacts from
    named ones; logs the hosts left out for making no DNS query or resolving over DoT/DoH."""
    dns = tables.oriented("dns")
    span = tables.to_pyarrow(dns.aggregate(n=dns.count(), lo=dns.ts.min(), hi=dns.ts.max()))
    rows, lo, hi = (span.column(c)[0].as_py() for c in ("n", "lo", "hi"))
    if not rows:
        log.info("direct-ip: skipped, the window has no DNS records to tell named contacts from")
        return None
    clients = dns.filter(dns.direction != "inbound").select("src").distinct()
    conn = tables.oriented("conn")
    talkers = conn.filter(conn.direction == "outbound").select("src").distinct()
    blind = tables.to_pyarrow(talkers.anti_join(clients, "src")).num_rows
    if blind:
        log.info(
            "direct-ip: %d of %d internal hosts with outbound connections made no DNS query in "
            "the window; their contacts are not judged",
            blind,
            tables.to_pyarrow(talkers).num_rows,
        )
    encrypted = tables.to_pyarrow(encrypted_dns_hosts(tables)).num_rows
    if encrypted:
        log.info("direct-ip: %d internal hosts resolve over DoT/DoH; not judged", encrypted)
    return lo, hi


def run(tables: Tables, cfg: DirectIpConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    span = _coverage(tables)
    if span is None:
        return
    found = candidates(tables, cfg, span)
    addresses = tables.to_pyarrow(found.select("dst").distinct().order_by("dst"))
    public = [ip for ip in addresses.column("dst").to_pylist() if ip and is_public(ip)]
    if not public:
        return
    records = found.semi_join(tables.memtable(pa.table({"dst": pa.array(public)})), "dst")
    pairs = records.group_by(["src", "dst"]).aggregate(
        # connections: distinct uids (an HTTP-only connection has a row per request), plus rows
        # of sources without uids
        conns=records.uid.nunique() + records.uid.isnull().cast("int64").sum(),
        total_bytes=records.bytes.sum(),
        ports=records.dst_port.nunique(),
        named=records.name.count(),
        example_name=records.name.max(),
        ip_literal=records.ip_literal.cast("int64").sum(),
        first_seen=records.ts.min(),
        last_seen=records.ts.max(),
    )
    hosts = records.group_by("dst").aggregate(dst_hosts=records.src.nunique())
    pairs = pairs.join(hosts, "dst").join(most_common_port(records, ["src", "dst"]), ["src", "dst"])
    fleet = tables.fleet_size
    ranked = rank(
        f
        for batch in tables.batches(pairs)
        for row in batch.to_pylist()
        if (f := _finding(row, fleet, cfg)) is not None
    )
    if not ranked:
        return
    wanted = pa.table({"src": [f.src for f in ranked], "dst": [f.dst for f in ranked]})
    uids = sample_uids(tables, records, ("src", "dst"), wanted)
    for f in ranked:
        yield with_uids(f, uids.get((f.src, f.dst or ""), []))


def _finding(row: dict[str, Any], fleet: int, cfg: DirectIpConfig) -> Finding | None:
    conns, hosts = int(row["conns"]), int(row["dst_hosts"])
    known = row["total_bytes"] is not None  # None: TLS/HTTP records without their conn.log
    total = int(row["total_bytes"]) if known else 0
    first, last = utc(row["first_seen"]), utc(row["last_seen"])
    span_s = (last - first).total_seconds()
    named = bool(row["named"])
    shared = prevalence_factor(
        hosts, fleet, ratio=cfg.shared_ratio, damping=cfg.shared_damping, min_fleet=cfg.min_fleet
    )
    score = direct_score(conns, total, span_s, named=named, shared=shared, cfg=cfg)
    if score < cfg.min_score:
        return None
    src, dst, port = str(row["src"]), str(row["dst"]), row["dst_port"]
    evidence: dict[str, Any] = {
        "connections": conns,
        "total_bytes": total if known else None,
        "dst_ports": int(row["ports"]),
        "span_s": round(span_s, 3),
        "ip_literal_requests": int(row["ip_literal"] or 0),
        "dst_hosts": hosts,
        "fleet_hosts": fleet,
    }
    summary = (
        f"{src} connected {conns} times to {dst}:{port} over {_duration(span_s)} "
        f"({f'{total:,} bytes' if known else 'bytes unknown'}) and no DNS answer in the window "
        f"gave that address"
    )
    reasons = []
    if named:
        evidence["name_sent"] = row["example_name"]
        reasons.append(
            f"they carried the name {row['example_name']} (looked up before the window?)"
        )
    reasons += fleet_share(evidence, shared, hosts, fleet, "reach it without DNS")
    summary = lowered(summary, evidence, reasons)
    return Finding(
        detector="direct-ip",
        src=src,
        dst=dst,
        dst_port=int(port) if port is not None else None,
        score=score,
        first_seen=first,
        last_seen=last,
        summary=summary + ".",
        evidence=evidence,
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


DETECTOR = Detector(
    name="direct-ip",
    requires=("conn", "dns"),
    config=DirectIpConfig,
    run=run,
    description="outbound connections to public addresses no DNS answer gave",
)
