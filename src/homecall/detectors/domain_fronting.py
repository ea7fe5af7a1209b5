"""Domain fronting: TLS names one site, the HTTP request inside it another
(docs/detection.md#domain-fronting).

A fronted C2 connects to an innocuous name (the TLS SNI, the proxy CONNECT target) on a CDN
edge and names its real server in the HTTP Host header, which only a sensor behind TLS
decryption or a decrypting proxy sees. Three views: the SNI and the Host of one connection
(same uid in the tls and http tables); a proxy CONNECT to one name carrying TLS for another
(a sensor in front of the proxy); and, in a decrypting proxy's own log, requests `https://B/`
from a client that never asked the proxy to CONNECT to B, logged within seconds of its CONNECT
to A. A mismatch counts only across registered domains (not `www.` against the bare name, nor
two names of one CDN customer). A certificate that does not cover the SNI is reported here only
when such a mismatch corroborates it; otherwise tls-anomaly reports the certificate.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from homecall.detectors import web
from homecall.detectors.base import Detector
from homecall.detectors.common import prevalence_factor, sample_uids, scaled_log, utc, with_uids
from homecall.detectors.tls_anomaly import leaf_fingerprint, name_covered
from homecall.findings import Finding, rank
from homecall.intel.domains import registered_domain
from homecall.intel.tls_intel import fronting_cdn
from homecall.store.tables import Tables

__all__ = [
    "DETECTOR",
    "DomainFrontingConfig",
    "fronting_score",
    "is_mismatch",
    "run",
]

log = logging.getLogger(__name__)

KINDS = ("sni-host", "connect-sni", "proxy-bump")
_MAX_URIS = 3
_RECORD_COLUMNS = ("ts", "uid", "src", "host", "port", "front", "kind", "uri", "_leaf")


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainFrontingConfig:
    """Settings under [detectors.domain-fronting] in homecall.toml."""

    sni_host_score: float = 0.75  # SNI and Host of one connection in different domains: "high"
    connect_sni_score: float = 0.7  # a CONNECT to one domain carrying TLS for another
    proxy_pair_score: float = 0.55  # pairing proxy-log lines by time is a guess: "medium"
    repeat_bonus: float = 0.15  # repeated requests add up to this...
    requests_full: float = 100.0  # ...at this many requests (log scale)
    cdn_bonus: float = 0.1  # through a CDN edge, where fronting works (Fifield et al. 2015)
    uncovered_bonus: float = 0.05  # the SNI's certificate does not cover the SNI either
    coalescing_factor: float = 0.6  # the certificate covers the Host: browsers reuse one HTTP/2
    # connection for every name its certificate covers (RFC 7540 9.1.1), a benign reading
    pair_window_s: int = 5  # proxy log: a request this close to the client's CONNECT is its own
    shared_ratio: float = 0.1  # a mismatch 10 % of the fleet shows is infrastructure...
    shared_damping: float = 0.9  # ...and is cut by up to 90 %
    min_fleet: int = 10  # prevalence means nothing in a fleet smaller than this
    min_score: float = 0.25  # below: not worth an analyst's time


def _owner(domain: str) -> str:
    """The label a registrant chose: "customer" in customer.com and customer.azureedge.net."""
    return domain.split(".", 1)[0]


def is_mismatch(front: str | None, host: str | None) -> bool:
    """True when `front` (SNI, CONNECT target) and `host` (HTTP Host) are in different
    registered domains that are not two names of one CDN customer (customer.com and
    customer.azureedge.net). False when either has no registered domain (an address)."""
    front_domain, host_domain = registered_domain(front), registered_domain(host)
    if front_domain is None or host_domain is None or front_domain == host_domain:
        return False
    on_cdn = fronting_cdn(front_domain) is not None or fronting_cdn(host_domain) is not None
    return not (on_cdn and _owner(front_domain) == _owner(host_domain))


def fronting_score(
    kind: str,
    requests: int,
    *,
    cdn: bool,
    uncovered: bool,
    coalescing: bool,
    shared: float,
    cfg: DomainFrontingConfig,
) -> float:
    """(base of the kind + repeat_bonus x w(requests) + CDN and certificate bonuses) x
    coalescing factor x prevalence factor, at most 1."""
    base = {
        "sni-host": cfg.sni_host_score,
        "connect-sni": cfg.connect_sni_score,
        "proxy-bump": cfg.proxy_pair_score,
    }[kind]
    score = base + cfg.repeat_bonus * scaled_log(requests, cfg.requests_full)
    score += (cfg.cdn_bonus if cdn else 0.0) + (cfg.uncovered_bonus if uncovered else 0.0)
    if coalescing:
        score *= cfg.coalescing_factor
    return min(1.0, score * shared)


def _mismatched(tables: Tables, pairs: ir.Table, front: str, host: str) -> ir.Table:
    """The distinct (front, host) pairs of `pairs` that `is_mismatch`; names are few."""
    distinct = tables.to_pyarrow(pairs.select(front, host).distinct().order_by([front, host]))
    keep = [
        (f, h)
        for f, h in zip(
            distinct.column(front).to_pylist(), distinct.column(host).to_pylist(), strict=True
        )
        if is_mismatch(f, h)
    ]
    schema = pa.schema([(front, pa.string()), (host, pa.string())])
    return tables.memtable(
        pa.table([list(c) for c in zip(*keep, strict=True)] or [[], []], schema=schema)
    )


def same_flow(tables: Tables) -> ir.Table:
    """_RECORD_COLUMNS of connections whose SNI and HTTP Host (or CONNECT target) are in
    different domains, seen by a sensor (same uid in tls and http)."""
    tls = web.tls_sessions(tables)
    s = tls.filter(tls.name.notnull())
    s = s.select("uid", sni=s.name, _leaf=leaf_fingerprint(s.cert_chain))
    r = web.requests(tables)
    r = r.filter(~r.proxy_log & r.host.notnull() & ~r.host_is_ip)
    joined = r.join(s, "uid").select(
        "ts", "uid", "src", "host", "port", "method", "uri", s.sni, s._leaf
    )
    # one pass over the requests: connections with both an SNI and a Host are few
    joined = tables.memtable(tables.to_pyarrow(joined))
    wrong = _mismatched(tables, joined, "sni", "host")
    joined = joined.semi_join(wrong, ["sni", "host"])
    connect = joined.method.fill_null("").upper() == "CONNECT"
    # a CONNECT row's host is the front, and the SNI the name hidden inside the tunnel
    return joined.select(
        "ts",
        "uid",
        "src",
        host=connect.ifelse(joined.sni, joined.host),
        port=joined.port,
        front=connect.ifelse(joined.host, joined.sni),
        kind=connect.ifelse("connect-sni", "sni-host"),
        uri=joined.uri,
        _leaf=joined._leaf,
    )


def proxy_pairs(tables: Tables, cfg: DomainFrontingConfig) -> ir.Table | None:
    """_RECORD_COLUMNS of decrypted requests in a proxy's log for a host the client never sent
    a CONNECT for, within pair_window_s of a CONNECT to another domain (the front); None when
    the window has no proxy log."""
    r = web.requests(tables)
    r = r.filter(r.proxy_log & r.host.notnull() & ~r.host_is_ip & ~r.denied)
    r = r.select(
        "ts",
        "uid",
        "src",
        "host",
        "port",
        "uri",
        connect=r.method.fill_null("").upper() == "CONNECT",
    )
    # one pass over the requests; the pairing below reads this extract
    rows = tables.to_pyarrow(r.filter(r.connect | (r.port == 443)))
    if rows.num_rows == 0:
        return None
    r = tables.memtable(rows)
    connects = r.filter(r.connect).select("src", front=r.host, c_ts=r.ts)
    inner = r.filter(~r.connect)
    asked = tables.to_pyarrow(connects.select("src", "front").distinct().order_by(["src", "front"]))
    domains: dict[str, set[str]] = {}
    for src, front in zip(
        asked.column("src").to_pylist(), asked.column("front").to_pylist(), strict=True
    ):
        domain = registered_domain(front)
        if domain:
            domains.setdefault(src, set()).add(domain)
    seen = tables.to_pyarrow(inner.select("src", "host").distinct().order_by(["src", "host"]))
    unexplained = [
        (src, host)
        for src, host in zip(
            seen.column("src").to_pylist(), seen.column("host").to_pylist(), strict=True
        )
        if src in domains and registered_domain(host) not in domains[src]
    ]
    schema = pa.schema([("src", pa.string()), ("host", pa.string())])
    table = pa.table([list(c) for c in zip(*unexplained, strict=True)] or [[], []], schema=schema)
    inner = inner.semi_join(tables.memtable(table), ["src", "host"])
    window = ibis.interval(seconds=cfg.pair_window_s)
    paired = inner.join(
        connects,
        [inner.src == connects.src, connects.c_ts.between(inner.ts - window, inner.ts + window)],
    )
    paired = paired.select(inner, front=connects.front)
    wrong = _mismatched(tables, paired, "front", "host")
    paired = paired.semi_join(wrong, ["front", "host"])
    return paired.select(
        "ts",
        "uid",
        "src",
        "host",
        "port",
        "front",
        kind=ibis.literal("proxy-bump"),
        uri=paired.uri,
        _leaf=ibis.literal(""),
    )


def run(tables: Tables, cfg: DomainFrontingConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    proxied = proxy_pairs(tables, cfg)
    flows = same_flow(tables)
    records = flows if proxied is None else ibis.union(flows, proxied)
    groups = records.group_by(["src", "host", "port", "front", "kind", "_leaf"]).aggregate(
        requests=records.count(),
        first_seen=records.ts.min(),
        last_seen=records.ts.max(),
        uri_first=records.uri.min(),
        uri_last=records.uri.max(),
    )
    rows = tables.to_pyarrow(groups.order_by(["src", "host", "port", "front", "kind", "_leaf"]))
    if rows.num_rows == 0:
        return
    certificates = _certificates(tables, rows.column("_leaf").to_pylist())
    by_key: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in rows.to_pylist():
        by_key.setdefault((row["src"], row["host"], row["port"]), []).append(row)
    spread = _spread(rows.to_pylist())
    fleet = tables.fleet_size
    found = rank(
        f
        for key, group in by_key.items()
        if (f := _finding(key, group, certificates, spread, fleet, cfg)) is not None
    )
    if not found:
        return
    wanted = pa.table(
        {
            "src": [f.src for f in found],
            "host": [f.dst for f in found],
            "port": pa.array([f.dst_port for f in found], pa.int32()),
        }
    )
    uids = sample_uids(
        tables, records.filter(records.uid.notnull()), ("src", "host", "port"), wanted
    )
    for f in found:
        yield with_uids(f, uids.get((f.src, f.dst or "", str(f.dst_port)), []))


def _certificates(tables: Tables, leaves: Iterable[str | None]) -> dict[str, tuple[Any, Any]]:
    """leaf fingerprint -> (SAN dNSNames, subject) for the certificates of the candidates."""
    wanted = sorted({leaf for leaf in leaves if leaf})
    if not wanted:
        return {}
    tls = web.tls_sessions(tables)
    s = tls.mutate(_leaf=leaf_fingerprint(tls.cert_chain))
    s = s.filter(s._leaf.isin(wanted) & s.cert_subject.notnull())
    certs = s.select("_leaf", "cert_subject", "cert_san_dns").distinct().order_by("_leaf")
    return {
        r["_leaf"]: (r["cert_san_dns"] or [], r["cert_subject"])
        for r in tables.to_pyarrow(certs).to_pylist()
    }


def _spread(rows: list[dict[str, Any]]) -> dict[tuple[str | None, str | None], int]:
    """(front domain, host domain) -> internal hosts that show this mismatch."""
    hosts: dict[tuple[str | None, str | None], set[str]] = {}
    for row in rows:
        pair = (registered_domain(row["front"]), registered_domain(row["host"]))
        hosts.setdefault(pair, set()).add(row["src"])
    return {pair: len(srcs) for pair, srcs in hosts.items()}


def _finding(
    key: tuple[str, str, int],
    group: list[dict[str, Any]],
    certificates: dict[str, tuple[Any, Any]],
    spread: dict[tuple[str | None, str | None], int],
    fleet: int,
    cfg: DomainFrontingConfig,
) -> Finding | None:
    src, host, port = key
    requests = sum(int(r["requests"]) for r in group)
    kinds = sorted({r["kind"] for r in group}, key=KINDS.index)
    fronts = sorted({r["front"] for r in group})
    top = min(group, key=lambda r: (KINDS.index(r["kind"]), -int(r["requests"]), r["front"]))
    front = top["front"]
    cdn = fronting_cdn(host) or fronting_cdn(front)
    san, subject = certificates.get(top["_leaf"] or "", (None, None))
    known = subject is not None
    covers_front = name_covered(front, san, subject) if known else None
    covers_host = name_covered(host, san, subject) if known else None
    hosts = max(
        spread.get((registered_domain(r["front"]), registered_domain(host)), 1) for r in group
    )
    shared = prevalence_factor(
        hosts, fleet, ratio=cfg.shared_ratio, damping=cfg.shared_damping, min_fleet=cfg.min_fleet
    )
    score = fronting_score(
        top["kind"],
        requests,
        cdn=cdn is not None,
        uncovered=covers_front is False,
        coalescing=bool(covers_host),
        shared=shared,
        cfg=cfg,
    )
    if score < cfg.min_score:
        return None
    uris = sorted(
        {
            u
            for r in group
            if r["kind"] != "connect-sni"
            for u in (r["uri_first"], r["uri_last"])
            if u
        }
    )[:_MAX_URIS]
    kind = top["kind"]
    evidence: dict[str, Any] = {
        "kind": kind,
        "kinds": kinds,
        "front": front,
        "sni": {"sni-host": front, "connect-sni": host}.get(kind),
        "host": host,
        "connect_host": front if kind != "sni-host" else None,
        "front_domain": registered_domain(front),
        "host_domain": registered_domain(host),
        "fronts": fronts[:5],
        "cdn": cdn,
        "requests": requests,
        "example_uris": uris,
        "cert_covers_front": covers_front,
        "cert_covers_host": covers_host,
        "dst_hosts": hosts,
        "fleet_hosts": fleet,
    }
    what = {
        "sni-host": f"sent TLS SNI {front} but HTTP Host {host} in the same connection",
        "connect-sni": f"asked the proxy to CONNECT to {front} but sent TLS SNI {host} inside",
        "proxy-bump": f"sent decrypted requests for {host} through a proxy tunnel opened for "
        f"{front}",
    }[kind]
    summary = f"{src} {what} ({requests} request{'s' if requests != 1 else ''}"
    summary += f", through {cdn})" if cdn else ")"
    context = []
    if covers_front is False:
        context.append(f"the certificate does not cover {front} either")
    if covers_host:
        context.append(f"the certificate covers {host} too (HTTP/2 connection reuse?)")
    if shared < 1.0:
        evidence["shared_destination_factor"] = round(shared, 3)
        context.append(f"{hosts} of {fleet} internal hosts show the same mismatch")
    if context:
        evidence["context"] = "; ".join(context)
        summary += "; " + "; ".join(context)
    return Finding(
        detector="domain-fronting",
        src=src,
        dst=host,
        dst_port=int(port) if port is not None else None,
        score=score,
        first_seen=min(utc(r["first_seen"]) for r in group),
        last_seen=max(utc(r["last_seen"]) for r in group),
        summary=summary + ".",
        evidence=evidence,
    )


DETECTOR = Detector(
    name="domain-fronting",
    requires=("tls", "http"),
    config=DomainFrontingConfig,
    run=run,
    description="TLS SNI or proxy CONNECT naming one domain, the HTTP Host inside another",
)
