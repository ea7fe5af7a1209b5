"""Long connections: an internal host keeping connections to one destination open for hours,
summed per (src, dst, dst_port) as RITA does, and "strobes", a connection a second all day
(docs/detection.md#long-connection).

Durations come from conn and from the interim records of connections still open (`conn_open`:
Zeek open_conn.log, conn_long.log); each connection counts once, with the longest duration any
of its records gives. Tunnels through a proxy count for the requested host: a CONNECT a sensor
saw (`web.proxy_tunnels`) or one a proxy logged with its duration. The score grows with the
summed duration (log-scaled from one hour to a day) and is lowered when the longest single
connection is short (a sum of short ones is a beacon's business), for services that hold
connections open by design (mail IDLE, push, VPN, remote desktop, chat, streaming:
`intel.lists`) and for destinations many internal hosts keep open.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from homecall.detectors import web
from homecall.detectors.base import Detector
from homecall.detectors.common import (
    connection_bytes,
    fleet_share,
    lowered,
    named_contacts,
    prevalence_factor,
    sample_uids,
    utc,
    with_uids,
)
from homecall.findings import Finding, rank
from homecall.intel import lists
from homecall.intel.services import known_service
from homecall.store.tables import Tables

__all__ = ["DETECTOR", "LongConnectionConfig", "connections", "duration_score", "run"]

log = logging.getLogger(__name__)

KEYS = ["src", "dst", "dst_port"]
# multicast and broadcast destinations (mDNS, LLMNR, SSDP): no remote peer holds them open
NOT_UNICAST = r"^(22[4-9]|23[0-9])\.|^255\.255\.255\.255$|^[fF][fF][0-9a-fA-F]{2}:"


@dataclass(frozen=True, slots=True, kw_only=True)
class LongConnectionConfig:
    """Settings under [detectors.long-connection] in homecall.toml."""

    min_duration_s: float = 3600.0  # RITA's threshold: an hour open in total for the pair
    full_duration_s: float = 86400.0  # a day open in total: full weight (RITA's top bucket 12 h)
    max_score: float = 0.8  # one technique: at most "high", never "critical"
    duration_floor: float = 0.3  # share of the score reaching min_duration_s already carries
    # A sum of short connections (a busy pair, a beacon's business) keeps this share, rising to
    # all of it as the longest single connection reaches min_duration_s.
    short_factor: float = 0.4
    strobe_per_day: float = 86400.0  # RITA's strobe: this many connections a day (one a second)
    strobe_weight: float = 0.7  # a strobe scores max_score x this ("medium"; RITA: "high")
    protocols: tuple[str, ...] = ("tcp", "udp")  # ICMP "connections" carry no session
    # Web proxies: their upstream connections repeat their clients' tunnels, which count for
    # the clients. Proxies a sensor saw CONNECTs to are found without this setting.
    proxies: tuple[str, ...] = ()
    # Services that hold connections open by design (lists.site / lists.service_port).
    damped_categories: tuple[str, ...] = (
        *("mail", "push", "vpn", "remote-access", "chat", "video-conferencing"),
        *("streaming", "voip", "messaging", "dns"),
    )
    service_damping: float = 0.4  # a known long-lived service keeps 40 % of its score
    shared_ratio: float = 0.1  # a destination 10 % of the fleet keeps open is infrastructure...
    shared_damping: float = 0.9  # ...and its score is cut by up to 90 %
    min_fleet: int = 10  # prevalence means nothing in a fleet smaller than this
    min_score: float = 0.2  # below: a pair just over an hour of summed short connections


def duration_score(total_s: float, longest_s: float, cfg: LongConnectionConfig) -> float:
    """max_score x (floor + (1 - floor) x log(total / min) / log(full / min)) x persistence,
    where persistence = short_factor + (1 - short_factor) x min(1, longest / min); 0 under
    min_duration_s."""
    if total_s < cfg.min_duration_s:
        return 0.0
    ratio = math.log(total_s / cfg.min_duration_s) / math.log(
        cfg.full_duration_s / cfg.min_duration_s
    )
    weight = cfg.duration_floor + (1.0 - cfg.duration_floor) * min(1.0, ratio)
    reach = min(1.0, max(longest_s, 0.0) / cfg.min_duration_s)
    persistence = cfg.short_factor + (1.0 - cfg.short_factor) * reach
    return cfg.max_score * weight * persistence


def connections(tables: Tables, cfg: LongConnectionConfig) -> ir.Table:
    """One row per connection of an internal host with outside: (ts, uid, src, dst, dst_port,
    proto, duration_s, bytes, is_open, end); dst is the requested host for proxy tunnels."""
    parts = []
    for table in ("conn", "conn_open"):
        t = tables.oriented(table)
        t = t.filter(
            t.proto.isin(cfg.protocols)
            & (t.direction != "inbound")
            & ~t.dst.fill_null("").re_search(NOT_UNICAST)
        )
        parts.append(
            t.select(
                "ts",
                "uid",
                "src",
                "dst",
                "dst_port",
                "proto",
                "direction",
                duration_s=t.duration_s.fill_null(0.0),
                bytes=connection_bytes(t),
                is_open=ibis.literal(table == "conn_open"),
            )
        )
    closed, still_open = parts
    # A uid in both tables (or in several interim records) is one connection: only the few
    # uids with interim records are grouped; conn.log has each of the others once.
    interim = still_open.select("uid").distinct()
    alone = closed.anti_join(interim, "uid")  # rows without a uid stay, each one connection
    rows = ibis.union(closed.semi_join(interim, "uid"), still_open)
    merged = (
        rows.filter(rows.uid.notnull())
        .group_by("uid")
        .aggregate(
            ts=rows.ts.min(),
            src=rows.src.max(),
            dst=rows.dst.max(),
            dst_port=rows.dst_port.max(),
            proto=rows.proto.max(),
            direction=rows.direction.max(),
            duration_s=rows.duration_s.max(),
            bytes=rows.bytes.max(),
            is_open=rows.is_open.min(),  # open only when no final record closed it
        )
    )
    merged = ibis.union(merged.select(*alone.columns), alone)
    tunnels = web.proxy_tunnels(tables)
    inside = merged.filter(merged.direction == "internal").join(tunnels, "uid")
    proxies = _proxies(inside, tables, cfg)
    outbound = merged.filter(merged.direction == "outbound").drop("direction")
    outbound = outbound.anti_join(proxies, outbound.src == proxies.proxy)
    tunnelled = inside.select(
        "ts",
        "uid",
        "src",
        dst=inside.host,
        dst_port=inside.port,
        proto=inside.proto,
        duration_s=inside.duration_s,
        bytes=inside.bytes,
        is_open=inside.is_open,
    )
    found = ibis.union(outbound, tunnelled.filter(tunnelled.dst.notnull()), _logged_tunnels(tables))
    end = found.ts + (found.duration_s * 1e6).cast("int64").as_interval("us")
    return found.mutate(end=end)


def _proxies(tunnels: ir.Table, tables: Tables, cfg: LongConnectionConfig) -> ir.Table:
    """Column `proxy`: the configured proxies, and the internal hosts that `tunnels` (client
    connections that carried a CONNECT a sensor saw) went to."""
    seen = tunnels.select(proxy=tunnels.dst)
    configured = tables.memtable(pa.table({"proxy": pa.array(cfg.proxies, pa.string())}))
    return ibis.union(seen, configured, distinct=True)


def _logged_tunnels(tables: Tables) -> ir.Table:
    """CONNECT tunnels a proxy logged with their duration (Squid's elapsed time). In a proxy's
    log `resp_ip`/`resp_port` are the requested host and port (docs/schema.md), so they are the
    oriented dst and dst_port as they stand."""
    http = tables.oriented("http")
    logged = http.filter(
        http.proxy.notnull()
        & (http.method.fill_null("").upper() == "CONNECT")
        & http.duration_s.notnull()
        & (http.direction == "outbound")
    )
    return logged.select(
        "ts",
        "uid",
        "src",
        dst=logged.dst.lower(),
        dst_port=logged.dst_port,
        proto=ibis.literal("tcp"),
        duration_s=logged.duration_s,
        bytes=logged.request_bytes.fill_null(0) + logged.response_bytes.fill_null(0),
        is_open=ibis.literal(False),
    )


def _pairs(
    found: ir.Table, names: ir.Table, strobe_min: float, cfg: LongConnectionConfig
) -> ir.Table:
    pairs = found.group_by(KEYS).aggregate(
        connections=found.count(),
        total_duration_s=found.duration_s.sum(),
        longest_s=found.duration_s.max(),
        open_connections=found.is_open.cast("int64").sum(),
        total_bytes=found.bytes.sum(),
        proto=found.proto.max(),
        first_seen=found.ts.min(),
        last_seen=found.end.max(),
    )
    pairs = pairs.filter(
        (pairs.total_duration_s >= cfg.min_duration_s) | (pairs.connections >= strobe_min)
    )
    kept = found.semi_join(pairs, KEYS)
    named = kept.join(names.semi_join(kept, "uid"), "uid")
    named = named.group_by(KEYS).aggregate(name=named.name.max())
    long_pairs = pairs.filter(pairs.total_duration_s >= cfg.min_duration_s)
    hosts = long_pairs.group_by("dst").aggregate(dst_hosts=long_pairs.src.nunique())
    return (
        pairs.left_join(named, KEYS)
        .drop(*(f"{k}_right" for k in KEYS))
        .left_join(hosts, "dst")
        .drop("dst_right")
    )


def _span(tables: Tables) -> tuple[Any, Any]:
    """First start and last end of the window's connection records (plain scans)."""
    parts = []
    for name in ("conn", "conn_open"):
        t = tables[name]
        end = t.ts + (t.duration_s.fill_null(0.0) * 1e6).cast("int64").as_interval("us")
        parts.append(t.select("ts", end=end))
    http = tables["http"]
    parts.append(http.select("ts", end=http.ts))
    both = ibis.union(*parts)
    span = tables.to_pyarrow(both.aggregate(lo=both.ts.min(), hi=both.end.max()))
    return span.column("lo")[0].as_py(), span.column("hi")[0].as_py()


def run(tables: Tables, cfg: LongConnectionConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    lo, hi = _span(tables)
    if lo is None:
        return
    days = max(1.0, (utc(hi) - utc(lo)).total_seconds() / 86400)
    found = connections(tables, cfg)
    contacts = named_contacts(tables)
    names = contacts.filter(contacts.uid.notnull()).select("uid", "name")
    fleet = tables.fleet_size
    strobe_min = cfg.strobe_per_day * days
    ranked = rank(
        f
        for batch in tables.batches(_pairs(found, names, strobe_min, cfg))
        for row in batch.to_pylist()
        if (f := _finding(row, strobe_min, fleet, cfg)) is not None
    )
    if not ranked:
        return
    wanted = pa.table(
        {
            "src": [f.src for f in ranked],
            "dst": [f.dst for f in ranked],
            "dst_port": pa.array([f.dst_port for f in ranked], pa.int32()),
        }
    )
    uids = sample_uids(tables, found, KEYS, wanted)
    for f in ranked:
        yield with_uids(f, uids.get((f.src, f.dst or "", str(f.dst_port)), []))


def _service(row: dict[str, Any], cfg: LongConnectionConfig) -> str | None:
    """What known long-lived service the pair is, by name or port, or None."""
    site = lists.site(row["name"] or row["dst"])
    if site is not None and site.category in cfg.damped_categories:
        return f"{site.provider} ({site.category})"
    port = lists.service_port(row["dst_port"], row["proto"])
    if port is not None and port.category in cfg.damped_categories:
        return f"{port.service} ({port.category})"
    return known_service(row["name"] or row["dst"], row["dst_port"])


def _finding(
    row: dict[str, Any], strobe_min: float, fleet: int, cfg: LongConnectionConfig
) -> Finding | None:
    total, longest = float(row["total_duration_s"]), float(row["longest_s"])
    conns = int(row["connections"])
    is_strobe = conns >= strobe_min
    base = max(
        duration_score(total, longest, cfg),
        cfg.max_score * cfg.strobe_weight if is_strobe else 0.0,
    )
    hosts = int(row["dst_hosts"] or 1)
    shared = prevalence_factor(
        hosts, fleet, ratio=cfg.shared_ratio, damping=cfg.shared_damping, min_fleet=cfg.min_fleet
    )
    service = _service(row, cfg)
    score = base * shared * (cfg.service_damping if service else 1.0)
    if score < cfg.min_score:
        return None
    src, dst, port = str(row["src"]), str(row["dst"]), row["dst_port"]
    first = utc(row["first_seen"])
    last = max(first, utc(row["last_seen"]))
    evidence: dict[str, Any] = {
        "kind": "strobe" if is_strobe and base > duration_score(total, longest, cfg) else "long",
        "connections": conns,
        "total_duration_s": round(total, 3),
        "longest_s": round(longest, 3),
        "open_connections": int(row["open_connections"]),
        "total_bytes": int(row["total_bytes"]),
        "proto": row["proto"],
        "name": row["name"],
        "dst_hosts": hosts,
        "fleet_hosts": fleet,
    }
    if evidence["kind"] == "strobe":
        summary = f"{src} opened {conns:,} connections to {dst}:{port}, a strobe"
    else:
        summary = (
            f"{src} kept connections to {dst}:{port} open for {_hours(total)} in total "
            f"(longest {_hours(longest)}, {conns} connection{'s' if conns != 1 else ''})"
        )
    if row["name"] and row["name"] != dst:
        summary += f" for {row['name']}"
    reasons = []
    if service is not None:
        evidence["known_service"] = service
        reasons.append(f"a known long-lived service: {service}")
    reasons += fleet_share(evidence, shared, hosts, fleet, "keep it open")
    summary = lowered(summary, evidence, reasons)
    return Finding(
        detector="long-connection",
        src=src,
        dst=dst,
        dst_port=int(port) if port is not None else None,
        score=score,
        first_seen=first,
        last_seen=last,
        summary=summary + ".",
        evidence=evidence,
    )


def _hours(seconds: float) -> str:
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


DETECTOR = Detector(
    name="long-connection",
    requires=("conn",),
    config=LongConnectionConfig,
    run=run,
    description="connections held open for hours, summed per pair, and strobes",
)
