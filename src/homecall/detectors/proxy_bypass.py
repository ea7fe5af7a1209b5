"""Proxy bypass: internal hosts that must use a web proxy trying to reach the outside directly,
denied by the gateway firewall or let through (docs/detection.md#proxy-bypass).

In a network whose web traffic goes through a proxy, the browsers use it; malware with a
hard-coded C2 address often does not, and the firewall drops its attempts, which it retries on
its timer. The proxies are the `proxies` setting or else inferred: the proxy-log rows of the
http table, the CONNECT and absolute-URI requests a sensor saw on their way to a proxy, and
internal hosts many internal clients reach on a proxy port that themselves reach many web
servers outside. Per (internal host, outside address): blocked attempts (firewall denials, and
with a proxy known unanswered direct connections of its clients; a SYN's retransmissions from
one source port are one attempt), their ports, span and the regularity of the retries
(`beacon_scoring.score_intervals`), and allowed direct web connections. Without any proxy,
only firewall denials are reported, lower, and the summary says no proxy is known.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from homecall.detectors import web
from homecall.detectors.base import Detector
from homecall.detectors.beacon_scoring import BeaconConfig, score_intervals
from homecall.detectors.common import (
    epoch_s,
    fleet_share,
    is_failed,
    lowered,
    prevalence_factor,
    sample_uids,
    scaled_log,
    utc,
    with_uids,
)
from homecall.detectors.long_connection import NOT_UNICAST
from homecall.findings import Finding, rank
from homecall.networks import InternalNetworks
from homecall.store.tables import Tables

__all__ = [
    "DETECTOR",
    "Proxies",
    "ProxyBypassConfig",
    "attempts",
    "bypass_score",
    "find_proxies",
    "is_new_attempt",
    "run",
]

log = logging.getLogger(__name__)

KEYS = ["src", "dst"]
_TIMING = BeaconConfig()  # retries are timed as beacons are (the calibrated defaults)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyBypassConfig:
    """Settings under [detectors.proxy-bypass] in homecall.toml."""

    proxies: tuple[str, ...] = ()  # "10.0.1.30:3128" or "10.0.1.30"; empty: inferred
    # CIDRs whose hosts must use the proxy. Empty: every internal host for firewall denials,
    # and the proxy's own clients (hosts seen using it) for connections seen in conn.
    proxied_networks: tuple[str, ...] = ()
    proxy_ports: tuple[int, ...] = (3128, 3129, 8080, 8000, 8888)  # Squid, tproxy, http-alt
    min_proxy_clients: int = 3  # a proxy serves several internal clients...
    min_proxy_upstreams: int = 5  # ...and reaches several web servers outside itself
    web_ports: tuple[int, ...] = (80, 443, 8080, 8443)  # direct connections that must be proxied
    # A SYN and its retransmissions (same source port) within this are one attempt: Linux's
    # tcp_syn_retries=6 gives up after 127 s, Windows after 21 s.
    retry_window_s: float = 130.0
    max_score: float = 0.85  # denied, periodic and persistent: "high", never "critical" alone
    no_proxy_max_score: float = 0.55  # no proxy known: a blocked connection, at most "medium"
    allowed_weight: float = 0.7  # direct connections the firewall let through, against denied
    attempts_full: float = 100.0  # this many attempts give the full repetition weight
    span_full_s: float = 3600.0  # attempts over an hour or more: fully persistent
    # Traffic applications send directly by design before falling back to the proxy (QUIC,
    # Teams/Zoom STUN media), and DNS/NTP the network serves itself: lowered, never hidden.
    fallback_ports: tuple[str, ...] = (
        *("udp/443", "udp/3478", "udp/3479", "udp/3480", "udp/3481"),
        *("udp/123", "udp/53", "tcp/53", "tcp/853"),
    )
    fallback_damping: float = 0.6  # such traffic keeps 40 % of its score
    diffuse_destinations: int = 20  # a host blocked towards this many addresses...
    diffuse_damping: float = 0.4  # ...is an application probing (each pair keeps 60 %)
    shared_ratio: float = 0.1  # an address 10 % of the fleet is blocked towards is policy...
    shared_damping: float = 0.9  # ...and its score is cut by up to 90 %
    min_fleet: int = 10  # prevalence means nothing in a fleet smaller than this
    min_score: float = 0.3  # below: one or two attempts


@dataclass(frozen=True, slots=True)
class Proxies:
    """The network's web proxies: addresses (with a port when known), where they were learnt
    (`config`, `proxy log`, `client requests`, `proxy traffic`), and whether a proxy exists at
    all (a proxy log may not say its address)."""

    addresses: tuple[str, ...]
    ports: tuple[str, ...]  # "10.0.1.30:3128" as known, for the evidence
    sources: tuple[str, ...]

    @property
    def exists(self) -> bool:
        """True when the network has a proxy, configured or seen."""
        return bool(self.sources)

    def describe(self) -> str:
        """The proxies in words, for a summary."""
        named = ", ".join(self.ports) if self.ports else "a web proxy"
        if self.sources == ("config",):
            return f"{named} (configured)"
        return f"{named} (inferred from {', '.join(self.sources)})"


def bypass_score(
    attempts_: int, regularity: float, span_s: float, ceiling: float, cfg: ProxyBypassConfig
) -> float:
    """ceiling x (0.3 + 0.25 w(attempts) + 0.25 regularity of the retries + 0.2 persistence),
    persistence = min(1, span / span_full_s)."""
    persistence = min(1.0, max(span_s, 0.0) / cfg.span_full_s)
    return ceiling * (
        0.3
        + 0.25 * scaled_log(attempts_, cfg.attempts_full)
        + 0.25 * min(max(regularity, 0.0), 1.0)
        + 0.2 * persistence
    )


def is_new_attempt(proto: ir.StringValue, flags: ir.StringValue) -> ir.BooleanValue:
    """False for a TCP packet of a connection the firewall no longer tracks (ACK, RST, FIN of a
    timed-out session: ASA "Deny TCP (no connection)"), true for a SYN, other protocols and
    packets whose flags were not logged. Flags are words (SYN ACK) or letters (pfSense SA)."""
    text = flags.fill_null("").upper()
    letters = text.re_search(r"^[SAFRPUEWC]+$")
    syn = text.contains("SYN") | (letters & text.contains("S"))
    ack = text.contains("ACK") | (letters & text.contains("A"))
    return (proto.fill_null("") != "tcp") | (text == "") | (syn & ~ack)


def _split(entry: str) -> tuple[str, int | None]:
    """ "10.0.1.30:3128" -> ("10.0.1.30", 3128); "[fd00::3]:3128" and bare addresses too."""
    host, sep, port = entry.rpartition(":")
    if sep and port.isdigit() and (host.count(":") == 0 or host.endswith("]")):
        return host.strip("[]"), int(port)
    return entry.strip("[]"), None


def _at(t: ir.Table, address: str, port: int | None) -> ir.BooleanValue:
    at = t.dst == address
    return at & (t.dst_port == port) if port is not None else at


def find_proxies(tables: Tables, cfg: ProxyBypassConfig) -> tuple[Proxies, ir.Table]:
    """(the proxies, column `src`: internal hosts seen using one)."""
    conn = tables.oriented("conn")
    inside = conn.filter((conn.direction == "internal") & ~is_failed(conn))
    if cfg.proxies:
        split = [_split(p) for p in cfg.proxies]
        addresses = tuple(sorted({a for a, _ in split}))
        proxies = Proxies(addresses, tuple(sorted(cfg.proxies)), ("config",))
        used = inside.filter(ibis.or_(*(_at(inside, a, p) for a, p in split))).select("src")
        return proxies, used.distinct()
    http = tables.oriented("http")
    logged = http.filter(http.proxy.notnull())
    requests = web.requests(tables)
    seen = requests.filter(
        requests.via_proxy & ~requests.proxy_log & (requests.direction == "internal")
    )
    served = inside.filter(inside.dst_port.isin(cfg.proxy_ports))
    served = served.group_by(["dst", "dst_port"]).aggregate(clients=served.src.nunique())
    served = served.filter(served.clients >= cfg.min_proxy_clients)
    upstream = conn.filter(
        (conn.direction == "outbound") & conn.dst_port.isin([80, 443]) & ~is_failed(conn)
    )
    upstream = upstream.group_by("src").aggregate(servers=upstream.dst.nunique())
    upstream = upstream.filter(upstream.servers >= cfg.min_proxy_upstreams)
    traffic = served.join(upstream, served.dst == upstream.src).select("dst", "dst_port")
    parts = {
        "proxy log": logged.select(address=logged.proxy, port=ibis.null("int32")),
        "client requests": seen.select(address=seen.dst, port=ibis.null("int32")).distinct(),
        "proxy traffic": traffic.select(address=traffic.dst, port=traffic.dst_port.cast("int32")),
    }
    found = ibis.union(*(t.mutate(source=ibis.literal(k)) for k, t in parts.items()), distinct=True)
    rows = tables.to_pyarrow(found.order_by(["source", "address", "port"])).to_pylist()
    named = {r["address"] for r in rows if r["address"] not in ("squid", "w3c")}
    ports = {f"{r['address']}:{r['port']}" for r in rows if r["port"] is not None}
    ports |= {a for a in named if not any(p.startswith(f"{a}:") for p in ports)}
    proxies = Proxies(
        tuple(sorted(named)), tuple(sorted(ports)), tuple(sorted({r["source"] for r in rows}))
    )
    known = tables.memtable(pa.table({"address": pa.array(proxies.addresses, pa.string())}))
    used = ibis.union(
        logged.select("src"),
        seen.select("src"),
        inside.semi_join(known, inside.dst == known.address).select("src"),
        distinct=True,
    )
    return proxies, used


def attempts(
    tables: Tables, proxies: Proxies, clients: ir.Table, cfg: ProxyBypassConfig
) -> ir.Table:
    """Outbound attempts and connections of hosts that must use the proxy: (ts, uid, src, dst,
    dst_port, proto, orig_port, blocked, source), one row per attempt (a SYN and its
    retransmissions from one source port within retry_window_s are one, whichever log saw
    them) and per allowed connection (one per uid: an ASA logs it built, torn down and in conn).
    """
    fw = tables.oriented("firewall")
    fw = fw.filter((fw.direction == "outbound") & fw.action.isin(["deny", "allow"]))
    fw = fw.filter(is_new_attempt(fw.proto, fw.tcp_flags)).mutate(
        blocked=fw.action == "deny", source=ibis.literal("firewall")
    )
    parts = [fw.filter(fw.blocked)]
    if proxies.exists:  # conn, and allowed firewall rows, count only against a known proxy
        conn = tables.oriented("conn").filter(ibis._.direction == "outbound")
        conn = conn.mutate(blocked=is_failed(conn), source=ibis.literal("conn"))
        conn = conn.filter(conn.blocked | conn.dst_port.isin(cfg.web_ports))
        allowed = fw.filter(~fw.blocked & fw.dst_port.isin(cfg.web_ports))
        if not cfg.proxied_networks:
            conn = conn.semi_join(clients, "src")
            allowed = allowed.semi_join(clients, "src")
        parts += [conn, allowed]
    columns = ("ts", "uid", "src", "dst", "dst_port", "proto", "orig_port", "blocked", "source")
    rows = ibis.union(*(p.select(*columns) for p in parts))
    proxy_ips = tables.memtable(pa.table({"ip": pa.array(proxies.addresses, pa.string())}))
    rows = rows.filter(
        rows.dst.notnull()
        & ~rows.dst.re_search(NOT_UNICAST)
        & ~rows.dst.isin(proxy_ips.ip)
        & ~rows.src.isin(proxy_ips.ip)
    )
    once = rows.filter(~rows.blocked & rows.uid.notnull())
    once = once.group_by("uid").aggregate(
        ts=once.ts.min(),  # when it was opened (built), not when it was torn down
        src=once.src.max(),
        dst=once.dst.max(),
        dst_port=once.dst_port.max(),
        proto=once.proto.max(),
        orig_port=once.orig_port.max(),
        blocked=ibis.literal(False),
        source=once.source.min(),  # "conn" before "firewall"
    )
    rows = ibis.union(rows.filter(rows.blocked | rows.uid.isnull()), once.select(*columns))
    group = ["src", "dst", "dst_port", "proto", "orig_port", "blocked"]
    previous = rows.ts.lag().over(ibis.window(group_by=group, order_by=["ts", "uid"]))
    gap_s = epoch_s(rows.ts) - epoch_s(previous)
    # every allowed connection counts; a blocked one unless it repeats its source port's
    rows = rows.mutate(_start=previous.isnull() | ~rows.blocked | (gap_s > cfg.retry_window_s))
    return rows.filter(rows._start).drop("_start")


def _in_networks(tables: Tables, found: ir.Table, cfg: ProxyBypassConfig) -> ir.Table:
    """`found` restricted to sources inside proxied_networks (all of it when unset)."""
    if not cfg.proxied_networks:
        return found
    networks = InternalNetworks.from_cidrs(cfg.proxied_networks, defaults=False)
    sources = tables.to_pyarrow(found.select("src").distinct().order_by("src")).column("src")
    inside = sources.filter(networks.classify(sources)) if len(sources) else sources
    return found.semi_join(tables.memtable(pa.table({"src": inside})), "src")


def _pairs(found: ir.Table) -> ir.Table:
    blocked = found.blocked
    ts_us = epoch_s(found.ts) * 1_000_000
    pairs = found.group_by(KEYS).aggregate(
        blocked_attempts=blocked.cast("int64").sum(),
        denied_attempts=(blocked & (found.source == "firewall")).cast("int64").sum(),
        allowed_connections=(~blocked).cast("int64").sum(),
        ports=found.dst_port.nunique(),
        first_seen=found.ts.min(),
        last_seen=found.ts.max(),
        attempt_us=ts_us.collect(where=blocked),
        connection_us=ts_us.collect(where=~blocked),
    )
    only = found.filter(blocked)
    spread = only.group_by("src").aggregate(destinations=only.dst.nunique())
    hosts = only.group_by("dst").aggregate(dst_hosts=only.src.nunique())
    counts = found.group_by([*KEYS, "dst_port", "proto"]).aggregate(n=found.count())
    rank_key = counts.n * 65536 + counts.dst_port.fill_null(0).cast("int64")
    main = counts.group_by(KEYS).aggregate(
        dst_port=counts.dst_port.argmax(rank_key), proto=counts.proto.argmax(rank_key)
    )
    return (
        pairs.join(main, KEYS)
        .left_join(spread, "src")
        .drop("src_right")
        .left_join(hosts, "dst")
        .drop("dst_right")
    )


def run(tables: Tables, cfg: ProxyBypassConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    proxies, clients = find_proxies(tables, cfg)
    if not proxies.exists:
        log.info("proxy-bypass: no web proxy configured or seen: only firewall denials judged")
    found = _in_networks(tables, attempts(tables, proxies, clients, cfg), cfg)
    fallback = {tuple(p.split("/", 1)) for p in cfg.fallback_ports}
    client_set = (
        set(tables.to_pyarrow(clients).column("src").to_pylist()) if proxies.exists else set()
    )
    context = _Context(proxies, client_set, fallback, tables.fleet_size)
    ranked = rank(
        f
        for batch in tables.batches(_pairs(found))
        for row in batch.to_pylist()
        if (f := _finding(row, context, cfg)) is not None
    )
    if not ranked:
        return
    wanted = pa.table({"src": [f.src for f in ranked], "dst": [f.dst for f in ranked]})
    # the uids of the attempts, and of the sensor's records of them: an attempt in both logs is
    # kept above as the firewall's row, which has no uid
    conn = tables.oriented("conn")
    conn = conn.filter(conn.direction == "outbound")
    behind = ibis.union(found.select("ts", "uid", *KEYS), conn.select("ts", "uid", *KEYS))
    uids = sample_uids(tables, behind.filter(behind.uid.notnull()), KEYS, wanted)
    for f in ranked:
        yield with_uids(f, uids.get((f.src, f.dst or ""), []))


@dataclass(frozen=True, slots=True)
class _Context:
    proxies: Proxies
    clients: set[str]
    fallback: set[tuple[str, ...]]
    fleet: int


def _finding(row: dict[str, Any], context: _Context, cfg: ProxyBypassConfig) -> Finding | None:
    blocked, allowed = int(row["blocked_attempts"]), int(row["allowed_connections"])
    series = np.sort(np.asarray(row["attempt_us"] if blocked else row["connection_us"], np.int64))
    timing = score_intervals(series, _TIMING)  # None under min_checkins attempts
    regularity = timing.regularity if timing is not None else 0.0
    first, last = utc(row["first_seen"]), utc(row["last_seen"])
    span_s = (last - first).total_seconds()
    known = context.proxies.exists
    ceiling = cfg.max_score if known else cfg.no_proxy_max_score
    count = blocked or allowed
    score = bypass_score(count, regularity, span_s, ceiling, cfg)
    if not blocked:
        score *= cfg.allowed_weight
    src, dst, port, proto = str(row["src"]), str(row["dst"]), row["dst_port"], row["proto"]
    evidence: dict[str, Any] = {
        "kind": "denied" if blocked else "direct",
        "blocked_attempts": blocked,
        "denied_attempts": int(row["denied_attempts"]),
        "allowed_connections": allowed,
        "dst_ports": int(row["ports"]),
        "proto": proto,
        "span_s": round(span_s, 3),
        "period_s": round(timing.period_s, 3) if timing else None,
        "jitter_ratio": round(timing.jitter_ratio, 3) if timing else None,
        "retry_regularity": round(regularity, 3),
        "proxy_known": known,
        "proxies": list(context.proxies.ports),
        "proxy_sources": list(context.proxies.sources),
        "proxy_client": src in context.clients,
        "src_blocked_destinations": int(row["destinations"] or 0),
        "dst_hosts": int(row["dst_hosts"] or 0),
        "fleet_hosts": context.fleet,
    }
    reasons = _damping(row, context, evidence, cfg)
    score *= float(evidence.pop("_factor"))
    if score < cfg.min_score:
        return None
    summary = lowered(_summary(src, dst, port, evidence, context.proxies), evidence, reasons)
    return Finding(
        detector="proxy-bypass",
        src=src,
        dst=dst,
        dst_port=int(port) if port is not None else None,
        score=min(1.0, score),
        first_seen=first,
        last_seen=last,
        summary=summary + ".",
        evidence=evidence,
    )


def _damping(
    row: dict[str, Any], context: _Context, evidence: dict[str, Any], cfg: ProxyBypassConfig
) -> list[str]:
    """The reasons the score is lowered; their product goes to evidence["_factor"]."""
    factor, reasons = 1.0, []
    port, proto = row["dst_port"], str(row["proto"] or "")
    if (proto, str(port)) in context.fallback:
        factor *= 1.0 - cfg.fallback_damping
        evidence["fallback_port"] = f"{proto}/{port}"
        reasons.append(f"{proto}/{port} is tried directly by design before a proxy")
    destinations = int(row["destinations"] or 0)
    if destinations >= cfg.diffuse_destinations:
        factor *= 1.0 - cfg.diffuse_damping
        reasons.append(f"{row['src']} was blocked towards {destinations} addresses")
    hosts = int(row["dst_hosts"] or 0)
    shared = prevalence_factor(
        hosts,
        context.fleet,
        ratio=cfg.shared_ratio,
        damping=cfg.shared_damping,
        min_fleet=cfg.min_fleet,
    )
    reasons += fleet_share(evidence, shared, hosts, context.fleet, "are blocked towards it")
    evidence["_factor"] = factor * shared
    return reasons


def _summary(src: str, dst: str, port: Any, evidence: dict[str, Any], proxies: Proxies) -> str:
    blocked, allowed = evidence["blocked_attempts"], evidence["allowed_connections"]
    period = evidence["period_s"]
    timing = f", every ~{period:,.0f} s" if period and evidence["retry_regularity"] >= 0.5 else ""
    if not proxies.exists:
        return (
            f"{src} had {blocked} outbound attempt{'s' if blocked != 1 else ''} to {dst}:{port} "
            f"denied by the firewall{timing}; no web proxy is known, so this is a blocked "
            f"connection, not a proven bypass"
        )
    if blocked:
        how = "denied by the firewall" if evidence["denied_attempts"] else "unanswered"
        text = (
            f"{src} tried {blocked} time{'s' if blocked != 1 else ''} to reach {dst}:{port} "
            f"directly ({how}{timing}) although the network's web traffic goes through "
            f"{proxies.describe()}"
        )
        if allowed:
            text += f"; {allowed} direct web connection{'s' if allowed != 1 else ''} got through"
        return text
    times = f"{allowed} time{'s' if allowed != 1 else ''}"
    if timing:
        times += f" ({timing[2:]})"
    return f"{src} connected directly to {dst}:{port} {times}, past {proxies.describe()}"


DETECTOR = Detector(
    name="proxy-bypass",
    requires=("firewall", "conn", "http"),
    config=ProxyBypassConfig,
    run=run,
    description="hosts that must use a web proxy reaching out directly, denied or let through",
)
