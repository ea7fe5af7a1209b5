"""Web traffic on odd ports: requests through a proxy (CONNECT, absolute URIs, proxy logs) and,
more weakly, HTTP or TLS straight to a server, to ports other than the usual web ones
(docs/detection.md#odd-port).

A proxy that is asked to tunnel to port 4444 or 5288 is being used by something that is not a
browser on the web: implants and proxy-aware trojans keep their C2 port behind the proxy. One
finding per (internal host, requested host); the score grows with repetition, several odd ports
to the same host and an address written as the host, is lowered when the proxy refused every
attempt, when the port is a known non-web service (IMAP, Apple push...: `intel.lists`), and
when many internal hosts use the port (a business application).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from homecall.detectors import web
from homecall.detectors.base import Detector
from homecall.detectors.common import (
    fleet_share,
    lowered,
    prevalence_factor,
    sample_uids,
    scaled_log,
    utc,
    with_uids,
)
from homecall.findings import Finding, rank
from homecall.intel import lists
from homecall.store.tables import Tables

__all__ = ["DETECTOR", "OddPortConfig", "odd_port_score", "records", "run"]

log = logging.getLogger(__name__)

_IP_LITERAL = r"^[0-9.]+$|:"  # a host written as an address (IPv6 always has a colon)


@dataclass(frozen=True, slots=True, kw_only=True)
class OddPortConfig:
    """Settings under [detectors.odd-port] in homecall.toml."""

    web_ports: tuple[int, ...] = (80, 443, 8080, 8443)  # IANA http, https, http-alt, https-alt
    extra_web_ports: tuple[int, ...] = ()  # the site's own web ports (an intranet app on 8000)
    # Direct TLS on these is mail, directory, file transfer, DoT, SIP, XMPP, push, MQTT or RDP:
    # standard TLS-wrapped protocols, not the web on an odd port (through a proxy they count,
    # damped as known services).
    tls_service_ports: tuple[int, ...] = (
        *(21, 25, 110, 143, 389, 465, 587, 636, 853, 989, 990, 993, 995),
        *(3389, 5061, 5222, 5223, 5228, 8883),
    )
    max_score: float = 0.85  # odd port is one technique: at most "high", never "critical"
    direct_weight: float = 0.6  # straight to a server: apps on their own ports are common
    requests_full: float = 100.0  # this many requests give the full repetition weight
    refused_factor: float = 0.7  # every attempt refused by the proxy: reported, lower
    service_damping: float = 0.5  # the port is a known non-web service (mail, push, VPN...)
    shared_ratio: float = 0.1  # a port 10 % of the fleet uses is a business application...
    shared_damping: float = 0.9  # ...and its score is cut by up to 90 %
    min_fleet: int = 10  # prevalence means nothing in a fleet smaller than this
    min_score: float = 0.25  # below: one or two direct requests to an application port


def odd_port_score(
    requests: int,
    ports: int,
    *,
    proxied: bool,
    ip_literal: bool,
    allowed_ratio: float,
    factor: float,
    cfg: OddPortConfig,
) -> float:
    """max_score x kind x (0.4 + 0.35 w(requests) + 0.15 address host + 0.1 more ports) x
    (refused_factor + (1 - refused_factor) x allowed share) x factor (service, prevalence)."""
    activity = (
        0.4
        + 0.35 * scaled_log(requests, cfg.requests_full)
        + 0.15 * float(ip_literal)
        + 0.1 * min(1.0, max(ports - 1, 0) / 2)
    )
    allowed = cfg.refused_factor + (1.0 - cfg.refused_factor) * min(max(allowed_ratio, 0.0), 1.0)
    kind = 1.0 if proxied else cfg.direct_weight
    return min(1.0, cfg.max_score * kind * activity * allowed * factor)


def records(tables: Tables, cfg: OddPortConfig) -> ir.Table:
    """Web requests and TLS sessions of internal hosts to non-web ports: (ts, uid, src, host,
    port, proxied, refused, ip_literal). `host` is the requested host (the server's address when
    no name was sent); `refused` only for proxied requests the proxy turned down."""
    usual = sorted({*cfg.web_ports, *cfg.extra_web_ports})
    req = web.requests(tables)
    req = req.filter(req.port.notnull() & ~req.port.isin(usual))  # outbound, or via a proxy
    status = req.status_code.fill_null(0)
    is_connect = req.method.fill_null("").upper() == "CONNECT"
    # 407 is always the proxy asking for credentials; a CONNECT answered >= 400 never reached
    # the server; proxy logs say so themselves (`denied`)
    refused = req.via_proxy & (req.denied | (status == 407) | (is_connect & (status >= 400)))
    host = req.host.fill_null(req.dst)
    asked = req.select(
        "ts",
        "uid",
        "src",
        host=host,
        port=req.port,
        proxied=req.via_proxy,
        refused=refused,
        ip_literal=req.host.isnull() | req.host_is_ip,
    )
    tls = web.tls_sessions(tables)
    tls = tls.filter(
        (tls.direction == "outbound")
        & tls.dst_port.notnull()
        & ~tls.dst_port.isin(sorted({*usual, *cfg.tls_service_ports}))
    )
    sessions = tls.select(
        "ts",
        "uid",
        "src",
        host=tls.name.fill_null(tls.dst),
        port=tls.dst_port,
        proxied=ibis.literal(False),
        refused=ibis.literal(False),
        ip_literal=tls.name.isnull() | tls.name.fill_null("").re_search(_IP_LITERAL),
    )
    return ibis.union(asked, sessions)


def _summaries(found: ir.Table) -> ir.Table:
    """One row per (src, host, port) with counts, and how many internal hosts use the port."""
    keys = ["src", "host", "port"]
    pairs = found.group_by(keys).aggregate(
        requests=found.count(),
        connections=found.uid.nunique() + found.uid.isnull().cast("int64").sum(),
        proxied=found.proxied.cast("int64").sum(),
        refused=found.refused.cast("int64").sum(),
        ip_literal=found.ip_literal.cast("int64").sum(),
        first_seen=found.ts.min(),
        last_seen=found.ts.max(),
    )
    ports = found.group_by("port").aggregate(port_hosts=found.src.nunique())
    return pairs.join(ports, "port")


def run(tables: Tables, cfg: OddPortConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    found = records(tables, cfg)
    by_pair: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for batch in tables.batches(_summaries(found)):
        for row in batch.to_pylist():
            by_pair.setdefault((str(row["src"]), str(row["host"])), []).append(row)
    fleet = tables.fleet_size
    ranked = rank(f for rows in by_pair.values() if (f := _finding(rows, fleet, cfg)) is not None)
    if not ranked:
        return
    wanted = pa.table({"src": [f.src for f in ranked], "host": [f.dst for f in ranked]})
    uids = sample_uids(tables, found, ("src", "host"), wanted)
    for f in ranked:
        yield with_uids(f, uids.get((f.src, f.dst or ""), []))


def _finding(rows: list[dict[str, Any]], fleet: int, cfg: OddPortConfig) -> Finding | None:
    rows = sorted(rows, key=lambda r: (-int(r["requests"]), -int(r["port"])))
    main = rows[0]
    requests = sum(int(r["requests"]) for r in rows)
    proxied = sum(int(r["proxied"]) for r in rows)
    refused = sum(int(r["refused"]) for r in rows)
    ip_literal = any(int(r["ip_literal"]) for r in rows)
    src, host, port = str(main["src"]), str(main["host"]), int(main["port"])
    service = lists.service_port(port)
    port_hosts = int(main["port_hosts"])
    shared = prevalence_factor(
        port_hosts,
        fleet,
        ratio=cfg.shared_ratio,
        damping=cfg.shared_damping,
        min_fleet=cfg.min_fleet,
    )
    factor = shared * (cfg.service_damping if service else 1.0)
    allowed_ratio = 1.0 - refused / proxied if proxied else 1.0  # the proxy judges its own
    score = odd_port_score(
        requests,
        len(rows),
        proxied=bool(proxied),
        ip_literal=ip_literal,
        allowed_ratio=allowed_ratio,
        factor=factor,
        cfg=cfg,
    )
    if score < cfg.min_score:
        return None
    evidence: dict[str, Any] = {
        "kind": "proxy" if proxied else "direct",
        "requests": requests,
        "connections": sum(int(r["connections"]) for r in rows),
        "proxied_requests": proxied,
        "refused_requests": refused,
        "allowed_ratio": round(allowed_ratio, 3),
        "dst_ports": sorted(int(r["port"]) for r in rows),
        "ip_literal": ip_literal,
        "port_hosts": port_hosts,
        "fleet_hosts": fleet,
    }
    summary = _summary(src, host, port, requests, proxied, refused)
    reasons = []
    if service is not None:
        evidence["known_service"] = service.service
        reasons.append(f"port {port} is usually {service.service}")
    reasons += fleet_share(evidence, shared, port_hosts, fleet, f"use port {port}")
    summary = lowered(summary, evidence, reasons)
    return Finding(
        detector="odd-port",
        src=src,
        dst=host,
        dst_port=port,
        score=score,
        first_seen=min(utc(r["first_seen"]) for r in rows),
        last_seen=max(utc(r["last_seen"]) for r in rows),
        summary=summary + ".",
        evidence=evidence,
    )


def _summary(src: str, host: str, port: int, requests: int, proxied: int, refused: int) -> str:
    times = "once" if requests == 1 else f"{requests} times"
    if proxied:
        verdict = (
            "all refused by the proxy"
            if refused == proxied
            else (f"{refused} refused by the proxy" if refused else "allowed by the proxy")
        )
        return (
            f"{src} asked a web proxy for {host}:{port} {times} ({verdict}), "
            f"a port other than the usual web ones"
        )
    return f"{src} spoke HTTP or TLS to {host}:{port} {times}, a port other than the web ones"


DETECTOR = Detector(
    name="odd-port",
    requires=("http", "tls"),
    config=OddPortConfig,
    run=run,
    description="proxied or direct web traffic to ports other than the usual web ones",
)
