"""Fan-out: internal hosts talking to unusually many peers or opening unusually many flows,
told apart as P2P botnet traffic, horizontal and vertical scans, or generic fan-out
(docs/detection.md#p2p-fanout).

A P2P botnet (Hide'N Seek, Mozi, ZeroAccess) keeps its C2 in a swarm: each bot talks to many
peers on random high ports, mostly over UDP, and most of its attempts to the addresses it tries
go unanswered. Its worm half scans one port on many hosts; an intruder maps one host's ports.
Per originating internal host (Ibis): flows, distinct peers, how many of them are outside, on
high ports, in distinct /16 networks, over UDP, unanswered; its busiest port (distinct hosts)
and its most probed host (distinct ports). The fleet gives the baseline: a robust z-score
(median and MAD of log counts across internal hosts); in a fleet smaller than `min_fleet`
absolute counts stand in, and the evidence says so. Resolvers, NTP, browsers reaching CDNs
(answered web peers), hosts serving internal clients and `known_servers` are damped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from homecall.detectors.base import Detector
from homecall.detectors.common import (
    FAILED_STATES,
    centre,
    epoch_s,
    is_failed,
    log_ramp,
    lowered,
    ramp,
    sample_uids,
    utc,
    with_uids,
)
from homecall.detectors.long_connection import NOT_UNICAST
from homecall.findings import Finding, rank
from homecall.store.tables import Tables

__all__ = [
    "DETECTOR",
    "FAILED_STATES",
    "METRICS",
    "Baseline",
    "P2pFanoutConfig",
    "baseline",
    "centre",
    "damping",
    "epoch_s",
    "fanout_strength",
    "flows",
    "is_failed",
    "log_ramp",
    "p2p_score",
    "ramp",
    "run",
    "scan_score",
]

log = logging.getLogger(__name__)

_SERVICE_PORTS = (53, 853, 123)  # DNS, DoT, NTP: resolvers and time servers fan out by design
_WEB_PORTS = (80, 443)
_SERVICE_SOURCE_PORTS = (1900, 3702, 5353, 5355)  # SSDP, WS-Discovery, mDNS, LLMNR answers
# A share of web peers or DNS/NTP flows damps from its low end to fully at its high end: a bot
# that also browses or resolves is not a browser or a resolver.
_MOSTLY = (0.25, 0.75)
Damping = tuple[float, list[str]]  # (factor, reasons in words)
_NET16 = r"^([0-9]+\.[0-9]+)\."
_NET32_V6 = r"^([0-9a-fA-F]*:[0-9a-fA-F]*):"


@dataclass(frozen=True, slots=True, kw_only=True)
class P2pFanoutConfig:
    """Settings under [detectors.p2p-fanout] in homecall.toml."""

    protocols: tuple[str, ...] = ("tcp", "udp", "icmp")  # ICMP: ping sweeps are scans too
    bucket_s: float = 60.0  # peak rates are counted per minute: bursts stand out in long windows
    min_fleet: int = 10  # fewer hosts with flows: no usable median, absolute counts instead
    z_low: float = 3.5  # robust z of log counts: from here a host stands out (Iglewicz-Hoaglin)
    z_high: float = 8.0  # ...fully here (with the spread floor: 55 times the fleet's median)
    spread_floor: float = 0.5  # log-count spread never below this (a fleet of near-twins)
    abs_peers_low: float = 50.0  # small fleet: distinct peers from which a host stands out...
    abs_peers_high: float = 500.0  # ...fully here (a browsing day reaches a few hundred)
    abs_peak_peers_low: float = 20.0  # small fleet: distinct peers in one minute...
    abs_peak_peers_high: float = 200.0  # ...fully here (a page load reaches 10-40 servers)
    abs_peak_flows_low: float = 300.0  # small fleet: flows in one minute (5 a second)...
    abs_peak_flows_high: float = 3000.0  # ...fully here (50 a second)
    flows_weight: float = 0.7  # many flows to few peers says less than many peers
    min_peers: int = 20  # P2P needs this many outside peers
    high_port: int = 1024  # ports from here are ephemeral/unregistered: where P2P swarms talk
    p2p_high_port_ratio: float = 0.5  # P2P: at least half the outside peers on high ports...
    p2p_udp_ratio: float = 0.3  # ...and this share of flows over UDP...
    p2p_failed_ratio: float = 0.3  # ...or this share of attempts unanswered
    scan_min_hosts: int = 20  # horizontal scan: one port on this many hosts...
    scan_hosts_full: float = 256.0  # ...a /24's worth for the full weight
    scan_min_ports: int = 20  # vertical scan: this many ports of one host...
    scan_ports_full: float = 1000.0  # ...nmap's default top 1000 for the full weight
    scan_failed_ratio: float = 0.5  # a scan's probes mostly go unanswered or are refused
    p2p_max_score: float = 0.9  # P2P C2 with many traits: may reach "critical"
    scan_max_score: float = 0.7  # a scan is reconnaissance, not C2: at most "medium"
    fanout_max_score: float = 0.6  # fan-out alone is one reason: at most "medium"
    web_damping: float = 0.8  # every peer an answered web server (a browser on CDNs): x0.2
    service_damping: float = 0.8  # every flow DNS/NTP (a resolver, a time server): x0.2
    server_min_clients: int = 5  # serving this many internal clients makes a host a server...
    server_damping: float = 0.5  # ...whose fan-out is its job: x0.5
    known_servers: tuple[str, ...] = ()  # scanners, monitoring, resolvers, proxies...
    known_damping: float = 0.7  # ...keep 30 % of their score
    answered_damping: float = 0.5  # generic fan-out whose peers all answer (a poller): x0.5
    min_score: float = 0.25  # below: not worth an analyst's time


# The counts a host is judged by: (column, absolute low and high settings, weight setting)
METRICS = (
    ("peers", "abs_peers_low", "abs_peers_high", None),
    ("peak_peers", "abs_peak_peers_low", "abs_peak_peers_high", None),
    ("peak_flows", "abs_peak_flows_low", "abs_peak_flows_high", "flows_weight"),
)


@dataclass(frozen=True, slots=True)
class Baseline:
    """What a host is compared with: the fleet's median and spread of each metric's log count,
    or None for absolute thresholds (a fleet smaller than min_fleet)."""

    hosts: int
    centres: dict[str, tuple[float, float]] | None

    @property
    def kind(self) -> str:
        """`fleet` or `absolute`."""
        return "absolute" if self.centres is None else "fleet"


def baseline(counts: dict[str, npt.NDArray[np.int64]], cfg: P2pFanoutConfig) -> Baseline:
    """The fleet's centre of each metric's log1p counts, or absolute thresholds (None) in a
    fleet smaller than min_fleet."""
    hosts = min((len(v) for v in counts.values()), default=0)
    if hosts < cfg.min_fleet:
        return Baseline(hosts, None)
    return Baseline(
        hosts,
        {k: centre(np.log1p(v.astype(np.float64)), cfg.spread_floor) for k, v in counts.items()},
    )


def fanout_strength(
    counts: dict[str, int], base: Baseline, cfg: P2pFanoutConfig
) -> tuple[float, dict[str, float]]:
    """(0..1 how far the host stands out, the z-score of each metric): the largest of the
    metrics' ramps (z from z_low to z_high; in a small fleet the absolute counts, on a log
    scale), flows weighing flows_weight."""
    strength, scores = 0.0, {}
    for name, low, high, weight in METRICS:
        value = counts[name]
        if base.centres is None:
            part = log_ramp(value, getattr(cfg, low), getattr(cfg, high))
        else:
            median, spread = base.centres[name]
            scores[name] = (math.log1p(value) - median) / spread
            part = ramp(scores[name], cfg.z_low, cfg.z_high)
        strength = max(strength, part * (getattr(cfg, weight) if weight else 1.0))
    return strength, scores


def p2p_score(strength: float, traits: float, cfg: P2pFanoutConfig) -> float:
    """p2p_max_score x (0.2 + 0.35 strength + 0.45 traits): a swarm needs both many peers and
    the swarm's traits (high ports, UDP, unanswered attempts, scattered networks)."""
    return cfg.p2p_max_score * (0.2 + 0.35 * strength + 0.45 * traits)


def scan_score(
    targets: int, low: int, full: float, failed_ratio: float, cfg: P2pFanoutConfig
) -> float:
    """scan_max_score x (0.3 + 0.4 w(targets from low to full, log) + 0.3 failed share)."""
    return cfg.scan_max_score * (0.3 + 0.4 * log_ramp(targets, low, full) + 0.3 * failed_ratio)


def damping(
    web_ratio: float, service_ratio: float, *, serves: bool, known: bool, cfg: P2pFanoutConfig
) -> Damping:
    """(factor, reasons): what lowers a host's fan-out: mostly answered web peers (CDNs),
    mostly DNS/NTP flows (ramped from 25 % to 75 %), serving internal clients, being listed."""
    factor, reasons = 1.0, []
    web = ramp(web_ratio, *_MOSTLY)
    if web > 0:
        factor *= 1.0 - cfg.web_damping * web
        reasons.append(f"{web_ratio:.0%} of its peers are answered web servers")
    service = ramp(service_ratio, *_MOSTLY)
    if service > 0:
        factor *= 1.0 - cfg.service_damping * service
        reasons.append(f"{service_ratio:.0%} of its flows are DNS or NTP")
    if serves:
        factor *= cfg.server_damping
        reasons.append("it serves internal clients")
    if known:
        factor *= 1.0 - cfg.known_damping
        reasons.append("it is a listed server (known_servers)")
    return factor, reasons


def flows(tables: Tables, cfg: P2pFanoutConfig) -> ir.Table:
    """Flows internal hosts opened, to outside or inside: (ts, uid, src, dst, port, proto,
    outbound, failed); `port` is null for ICMP. Multicast and broadcast destinations are left
    out, and so are replies logged as flows of their own (from a port under 1024 or a discovery
    service's to an ephemeral port)."""
    conn = tables.oriented("conn")
    # From a service's port to an ephemeral one: a reply the sensor logged as its own flow
    # (SSDP answering M-SEARCH from 1900, DNS from 53), not a probe of the peer's ports.
    reply = ((conn.orig_port < 1024) | conn.orig_port.isin(_SERVICE_SOURCE_PORTS)).fill_null(
        False
    ) & (conn.dst_port >= 1024).fill_null(False)
    conn = conn.filter(
        (conn.direction != "inbound")
        & conn.proto.isin(cfg.protocols)
        & conn.dst.notnull()
        & ~conn.dst.re_search(NOT_UNICAST)
        & ~(reply & (conn.proto != "icmp"))
    )
    return conn.select(
        "ts",
        "uid",
        "src",
        "dst",
        "proto",
        port=(conn.proto == "icmp").ifelse(ibis.null("int32"), conn.dst_port),
        outbound=conn.direction == "outbound",
        failed=is_failed(conn),
    )


def _hosts(found: ir.Table, cfg: P2pFanoutConfig) -> ir.Table:
    """One row per originating internal host: counts, the parts of its ratios, its peak minute,
    its busiest port (most hosts), its most probed peer (most ports) and busiest peer (flows)."""
    net = (
        found.dst.re_extract(_NET16, 1)
        .nullif("")
        .fill_null(found.dst.re_extract(_NET32_V6, 1).nullif(""))
    )
    outside = found.outbound
    per_host = found.group_by("src").aggregate(
        flows=found.count(),
        peers=found.dst.nunique(),
        outside_peers=found.dst.nunique(where=outside),
        high_port_peers=found.dst.nunique(where=outside & (found.port >= cfg.high_port)),
        networks=net.nunique(where=outside),
        udp_flows=(found.proto == "udp").cast("int64").sum(),
        failed_flows=found.failed.cast("int64").sum(),
        web_peers=found.dst.nunique(where=found.port.isin(_WEB_PORTS) & ~found.failed),
        service_flows=found.port.isin(_SERVICE_PORTS).fill_null(False).cast("int64").sum(),
        first_seen=found.ts.min(),
        last_seen=found.ts.max(),
    )
    minutes = found.mutate(bucket=epoch_s(found.ts) // cfg.bucket_s)
    minutes = minutes.group_by(["src", "bucket"]).aggregate(
        n=minutes.count(), d=minutes.dst.nunique()
    )
    peaks = minutes.group_by("src").aggregate(
        peak_flows=minutes.n.max(), peak_peers=minutes.d.max()
    )
    return (
        per_host.join(peaks, "src")
        .join(_busiest_port(found, cfg), "src")
        .join(_busiest_peer(found, cfg), "src")
    )


def _busiest_port(found: ir.Table, cfg: P2pFanoutConfig) -> ir.Table:
    """Per host, the (proto, port) it sent to most hosts, preferring ports whose flows mostly
    failed as a scan's do (ties: the higher port, then tcp, udp, icmp), with its hosts, flows
    and failed flows, and how many such ports reached scan_min_hosts."""
    by_port = found.group_by(["src", "proto", "port"]).aggregate(
        hosts=found.dst.nunique(),
        n=found.count(),
        failed=found.failed.cast("int64").sum(),
    )
    probing = by_port.failed >= by_port.n * cfg.scan_failed_ratio
    proto_rank = ibis.cases((by_port.proto == "tcp", 3), (by_port.proto == "udp", 2), else_=1)
    key = (
        probing.cast("int64") * 10**12
        + by_port.hosts * 1_000_000
        + by_port.port.fill_null(0).cast("int64") * 4
        + proto_rank
    )
    return by_port.group_by("src").aggregate(
        scan_port=by_port.port.argmax(key),
        scan_proto=by_port.proto.argmax(key),
        scan_hosts=by_port.hosts.argmax(key),
        scan_port_flows=by_port.n.argmax(key),
        scan_port_failed=by_port.failed.argmax(key),
        wide_ports=(probing & (by_port.hosts >= cfg.scan_min_hosts)).cast("int64").sum(),
    )


def _busiest_peer(found: ir.Table, cfg: P2pFanoutConfig) -> ir.Table:
    """Per host, the peer it probed on most ports (preferring peers whose flows mostly failed)
    and the peer it sent most flows to (ties: the alphabetically last address), with their
    flows and failed flows."""
    by_peer = found.group_by(["src", "dst"]).aggregate(
        ports=found.port.nunique(), n=found.count(), failed=found.failed.cast("int64").sum()
    )
    probing = (by_peer.failed >= by_peer.n * cfg.scan_failed_ratio).ifelse("1", "0")
    by_ports = probing.concat(by_peer.ports.cast("string").lpad(8, "0"), by_peer.dst)
    by_flows = by_peer.n.cast("string").lpad(12, "0").concat(by_peer.dst)
    return by_peer.group_by("src").aggregate(
        probed=by_peer.dst.argmax(by_ports),
        probed_ports=by_peer.ports.argmax(by_ports),
        probed_flows=by_peer.n.argmax(by_ports),
        probed_failed=by_peer.failed.argmax(by_ports),
        deep_peers=((by_peer.ports >= cfg.scan_min_ports) & (probing == "1")).cast("int64").sum(),
        busiest=by_peer.dst.argmax(by_flows),
        busiest_flows=by_peer.n.max(),
    )


def _servers(tables: Tables, cfg: P2pFanoutConfig) -> ir.Table:
    """Column `src`: internal hosts that internal clients connect to (servers, resolvers,
    proxies), at least server_min_clients of them."""
    conn = tables.oriented("conn")
    inside = conn.filter((conn.direction == "internal") & conn.dst.notnull())
    served = inside.group_by("dst").aggregate(clients=inside.src.nunique())
    return served.filter(served.clients >= cfg.server_min_clients).select(src=served.dst)


def run(tables: Tables, cfg: P2pFanoutConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    found = flows(tables, cfg)
    servers = _servers(tables, cfg).mutate(serves=ibis.literal(True))
    hosts = _hosts(found, cfg).left_join(servers, "src").drop("src_right")
    rows = [row for batch in tables.batches(hosts) for row in batch.to_pylist()]
    if not rows:
        return
    counts = {m: np.array([r[m] for r in rows], dtype=np.int64) for m, *_ in METRICS}
    base = baseline(counts, cfg)
    if base.centres is None:
        log.info(
            "p2p-fanout: %d internal hosts opened flows, fewer than min_fleet=%d: absolute "
            "thresholds stand in for the fleet's baseline",
            base.hosts,
            cfg.min_fleet,
        )
    known = set(cfg.known_servers)
    ranked = rank(f for row in rows for f in _findings(row, base, row["src"] in known, cfg))
    yield from _with_uids(tables, found, ranked)


def _findings(
    row: dict[str, Any], base: Baseline, known: bool, cfg: P2pFanoutConfig
) -> Iterator[Finding]:
    """Every kind this host's flows show: P2P (else generic fan-out), and scans."""
    flow_count, peers = int(row["flows"]), int(row["peers"])
    strength, z_scores = fanout_strength({m: int(row[m]) for m, *_ in METRICS}, base, cfg)
    web_ratio = int(row["web_peers"]) / max(peers, 1)
    service_ratio = int(row["service_flows"]) / max(flow_count, 1)
    common: dict[str, Any] = {
        "flows": flow_count,
        "peers": peers,
        "outside_peers": int(row["outside_peers"]),
        "peak_flows_per_bucket": int(row["peak_flows"]),
        "peak_peers_per_bucket": int(row["peak_peers"]),
        "bucket_s": cfg.bucket_s,
        "udp_ratio": round(int(row["udp_flows"]) / max(flow_count, 1), 3),
        "failed_ratio": round(int(row["failed_flows"]) / max(flow_count, 1), 3),
        "baseline": base.kind,
        "fleet_hosts": base.hosts,
        **{f"{m}_z": round(z, 2) for m, z in z_scores.items()},
    }
    crowd = damping(web_ratio, service_ratio, serves=bool(row["serves"]), known=known, cfg=cfg)
    alone = damping(0.0, 0.0, serves=False, known=known, cfg=cfg)  # scans: only known_servers
    swarm = _p2p(row, strength, crowd, common, cfg)
    scans = [_horizontal(row, alone, common, cfg), _vertical(row, alone, common, cfg)]
    if swarm is None and not any(scans):
        swarm = _fanout(row, strength, crowd, common, cfg)
    for f in (swarm, *scans):
        if f is not None and f.score >= cfg.min_score:
            yield f


def _p2p(
    row: dict[str, Any],
    strength: float,
    crowd: Damping,
    common: dict[str, Any],
    cfg: P2pFanoutConfig,
) -> Finding | None:
    outside = int(row["outside_peers"])
    high = int(row["high_port_peers"]) / max(outside, 1)
    udp, failed = float(common["udp_ratio"]), float(common["failed_ratio"])
    is_swarm = (
        outside >= cfg.min_peers
        and high >= cfg.p2p_high_port_ratio
        and (udp >= cfg.p2p_udp_ratio or failed >= cfg.p2p_failed_ratio)
    )
    if not is_swarm:
        return None
    scattered = int(row["networks"]) / max(outside, 1)
    traits = (high + udp + failed + scattered) / 4.0
    evidence = {
        "kind": "p2p",
        **common,
        "high_port_ratio": round(high, 3),
        "networks_16": int(row["networks"]),
        "fanout_strength": round(strength, 3),
        "traits": round(traits, 3),
    }
    summary = (
        f"{row['src']} talked to {outside} outside peers, {high:.0%} of them on high ports, "
        f"{udp:.0%} of its {common['flows']} flows over UDP and {failed:.0%} unanswered: "
        f"P2P botnet-like fan-out"
    )
    return _finding(row, None, None, p2p_score(strength, traits, cfg), summary, evidence, crowd)


def _fanout(
    row: dict[str, Any],
    strength: float,
    crowd: Damping,
    common: dict[str, Any],
    cfg: P2pFanoutConfig,
) -> Finding | None:
    if strength <= 0:
        return None
    flow_count, peers = int(common["flows"]), int(common["peers"])
    busiest, busiest_flows = str(row["busiest"]), int(row["busiest_flows"])
    dst = busiest if 2 * busiest_flows >= flow_count else None  # one peer took most flows
    one_port = dst is not None and 2 * int(row["scan_port_flows"]) >= flow_count
    port = row["scan_port"] if one_port else None
    evidence = {
        "kind": "fan-out",
        **common,
        "busiest_peer": busiest,
        "busiest_peer_flows": busiest_flows,
        "fanout_strength": round(strength, 3),
    }
    against = (
        "the fleet's" if common["baseline"] == "fleet" else "absolute thresholds (small fleet)"
    )
    summary = (
        f"{row['src']} opened {flow_count:,} flows ({common['peak_flows_per_bucket']:,} in its "
        f"busiest minute, {common['failed_ratio']:.0%} unanswered or refused) to {peers:,} "
        f"peer{'s' if peers != 1 else ''}"
    )
    if dst is not None:
        summary += f", {busiest_flows:,} of them to {dst}"
    summary += f": far above {against}"
    score = cfg.fanout_max_score * (0.3 + 0.7 * strength)
    factor, reasons = crowd
    answered = 1.0 - float(common["failed_ratio"])
    if answered >= 0.5:  # probes fail; a client polling its fleet of devices gets answers
        factor *= 1.0 - cfg.answered_damping * answered
        reasons = [*reasons, f"{answered:.0%} of its flows were answered"]
    return _finding(row, dst, port, score, summary, evidence, (factor, reasons))


def _horizontal(
    row: dict[str, Any], alone: Damping, common: dict[str, Any], cfg: P2pFanoutConfig
) -> Finding | None:
    hosts = int(row["scan_hosts"])
    failed = int(row["scan_port_failed"]) / max(int(row["scan_port_flows"]), 1)
    if hosts < cfg.scan_min_hosts or failed < cfg.scan_failed_ratio:
        return None
    port = row["scan_port"]
    what = f"{row['scan_proto']}/{port}" if port is not None else str(row["scan_proto"])
    evidence = {
        "kind": "horizontal-scan",
        **common,
        "scan_proto": row["scan_proto"],
        "scan_hosts": hosts,
        "scan_failed_ratio": round(failed, 3),
        "wide_ports": int(row["wide_ports"]),
    }
    summary = (
        f"{row['src']} probed {what} on {hosts} hosts, {failed:.0%} unanswered or refused: "
        f"a horizontal scan"
    )
    if int(row["wide_ports"]) > 1:
        summary += f" ({row['wide_ports']} ports each on {cfg.scan_min_hosts}+ hosts)"
    score = scan_score(hosts, cfg.scan_min_hosts, cfg.scan_hosts_full, failed, cfg)
    return _finding(row, None, port, score, summary, evidence, alone)


def _vertical(
    row: dict[str, Any], alone: Damping, common: dict[str, Any], cfg: P2pFanoutConfig
) -> Finding | None:
    ports = int(row["probed_ports"])
    failed = int(row["probed_failed"]) / max(int(row["probed_flows"]), 1)
    if ports < cfg.scan_min_ports or failed < cfg.scan_failed_ratio:
        return None
    evidence = {
        "kind": "vertical-scan",
        **common,
        "scan_ports": ports,
        "scan_failed_ratio": round(failed, 3),
        "deep_peers": int(row["deep_peers"]),
    }
    summary = (
        f"{row['src']} probed {ports} ports of {row['probed']}, {failed:.0%} unanswered or "
        f"refused: a vertical (port) scan"
    )
    score = scan_score(ports, cfg.scan_min_ports, cfg.scan_ports_full, failed, cfg)
    return _finding(row, str(row["probed"]), None, score, summary, evidence, alone)


def _finding(
    row: dict[str, Any],
    dst: str | None,
    port: int | None,
    score: float,
    summary: str,
    evidence: dict[str, Any],
    context: Damping,
) -> Finding:
    factor, reasons = context
    return Finding(
        detector="p2p-fanout",
        src=str(row["src"]),
        dst=dst,
        dst_port=int(port) if port is not None else None,
        score=min(1.0, max(0.0, score * factor)),
        first_seen=utc(row["first_seen"]),
        last_seen=utc(row["last_seen"]),
        summary=lowered(summary, evidence, reasons) + ".",
        evidence=evidence,
    )


_UID_KEYS = {
    "vertical-scan": ("src", "dst"),
    "horizontal-scan": ("src", "port"),
    "p2p": ("src",),
    "fan-out": ("src",),
}


def _with_uids(tables: Tables, found: ir.Table, ranked: list[Finding]) -> Iterator[Finding]:
    """Each finding with uids of the flows behind it: the probed peer's for a vertical scan,
    the scanned port's for a horizontal one, the host's otherwise."""
    records = found.mutate(port=found.port.fill_null(-1))
    sampled: dict[str, dict[tuple[str, ...], list[str]]] = {}
    for kind, keys in _UID_KEYS.items():
        chosen = [f for f in ranked if f.evidence["kind"] == kind]
        if chosen:
            wanted = pa.table({k: _keys(chosen, k) for k in keys})
            sampled[kind] = sample_uids(tables, records, keys, wanted)
    for f in ranked:
        kind = str(f.evidence["kind"])
        key = tuple(str(v[0]) for v in (_keys([f], k).to_pylist() for k in _UID_KEYS[kind]))
        yield with_uids(f, sampled[kind].get(key, []))


def _keys(found: list[Finding], key: str) -> pa.Array:
    if key == "port":
        return pa.array([-1 if f.dst_port is None else f.dst_port for f in found], pa.int32())
    return pa.array([f.src if key == "src" else f.dst for f in found], pa.string())


DETECTOR = Detector(
    name="p2p-fanout",
    requires=("conn",),
    config=P2pFanoutConfig,
    run=run,
    description="hosts reaching unusually many peers: P2P swarms, horizontal and vertical scans",
)
