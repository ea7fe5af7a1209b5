"""DNS bypass: internal hosts resolving through outside resolvers (plain DNS on port 53,
DNS-over-TLS on 853, known DNS-over-HTTPS services) when the network has its own
(docs/detection.md#dns-bypass).

The network's resolvers are the `resolvers` setting, or else inferred: internal hosts that
answered DNS for at least `min_resolver_clients` internal hosts (or the server whose query log
was imported). Without one, everyone uses an outside resolver by design and nobody is flagged.
Resolvers themselves are never flagged (they forward and recurse), nor are non-recursive
queries (a host doing its own iterative resolution asks authoritative servers, not a resolver).
A host that is the only one going outside scores higher than a whole fleet doing it.
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
from homecall.detectors.common import named_contacts, sample_uids, scaled_log, utc, with_uids
from homecall.findings import Finding, rank
from homecall.intel import lists
from homecall.store.tables import Tables

__all__ = ["DETECTOR", "KIND_WEIGHTS", "DnsBypassConfig", "bypass_score", "exchanges", "run"]

log = logging.getLogger(__name__)

DNS_PORT, DOT_PORT, HTTPS_PORT = 53, 853, 443
# Plain DNS and DoT to an outside server are a choice someone made on the host; DoH is built
# into browsers (Firefox's default for US users) and more often benign.
KIND_WEIGHTS = {"dns": 1.0, "dot": 1.0, "doh": 0.8}
_KIND_NAMES = {"dns": "plain DNS", "dot": "DNS over TLS", "doh": "DNS over HTTPS"}


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsBypassConfig:
    """Settings under [detectors.dns-bypass] in homecall.toml."""

    resolvers: tuple[str, ...] = ()  # the network's own resolvers; empty: inferred from traffic
    min_resolver_clients: int = 2  # answering DNS for this many internal hosts makes a resolver
    max_score: float = 0.7  # bypassing policy is one reason: at most "medium"
    min_score: float = 0.2  # below: a lookup or two, a misconfigured secondary resolver
    exchanges_full: float = 1000.0  # DNS exchanges for the full volume weight
    fleet_damping: float = 0.7  # when every DNS client bypasses, the score keeps 30 %


def bypass_score(kind: str, count: int, share: float, cfg: DnsBypassConfig) -> float:
    """max_score x kind weight x (0.5 + 0.5 w(exchanges)) x (1 - fleet_damping x share), where
    share is the fraction of the other DNS clients that bypass too."""
    volume = 0.5 + 0.5 * scaled_log(count, cfg.exchanges_full)
    return cfg.max_score * KIND_WEIGHTS[kind] * volume * (1.0 - cfg.fleet_damping * share)


def exchanges(tables: Tables) -> ir.Table:
    """One row per DNS exchange on port 53 or 853, from conn.log and from DNS records without
    a conn record: (ts, uid, src, dst, dst_port, direction, answered, recursive)."""
    dns = tables.oriented("dns")
    rd = dns.group_by("uid").aggregate(recursive=dns.rd.cast("int8").max())
    conn = tables.oriented("conn")
    conn = conn.filter(
        conn.dst_port.isin([DNS_PORT, DOT_PORT]) & conn.proto.fill_null("udp").isin(["tcp", "udp"])
    )
    answered = (conn.resp_pkts.fill_null(0) > 0) | (conn.resp_bytes.fill_null(0) > 0)
    flows = conn.left_join(rd, "uid").select(
        "ts",
        "uid",
        "src",
        "dst",
        "dst_port",
        "direction",
        answered=answered,
        recursive=rd.recursive.fill_null(1) > 0,  # unknown (no dns.log record): assume so
    )
    alone = dns.filter(dns.dst_port.fill_null(DNS_PORT).isin([DNS_PORT, DOT_PORT]))
    alone = alone.anti_join(conn.select("uid"), "uid").select(
        "ts",
        "uid",
        "src",
        "dst",
        "direction",
        dst_port=alone.dst_port.fill_null(DNS_PORT),
        answered=alone.rcode.notnull(),
        recursive=alone.rd.fill_null(True),
    )
    return ibis.union(flows, alone)


def _doh(tables: Tables) -> ir.Table:
    """Outbound DoH: TLS SNI / HTTP Host of a known DoH service, or HTTPS to a public resolver's
    anycast address: (ts, uid, src, dst, dst_port)."""
    known = lists.public_resolvers()
    names = [k for k in known if lists.normalize(k) is not None]
    addresses = [k for k in known if lists.normalize(k) is None]
    contacts = named_contacts(tables)
    by_name = contacts.filter(contacts.name.isin(names)).select(
        "ts", "uid", "src", dst=contacts.name, dst_port=contacts.dst_port
    )
    conn = tables.oriented("conn")
    by_address = conn.filter(
        (conn.direction == "outbound") & conn.dst.isin(addresses) & (conn.dst_port == HTTPS_PORT)
    ).anti_join(by_name.select("uid"), "uid")
    return ibis.union(by_name, by_address.select("ts", "uid", "src", "dst", "dst_port"))


def _resolvers(
    tables: Tables, flows: ir.Table, cfg: DnsBypassConfig
) -> tuple[list[str], str] | None:
    """(internal resolvers, how they are known), or None when the network has none."""
    if cfg.resolvers:
        return sorted(cfg.resolvers), "config"
    served = flows.filter(
        (flows.direction == "internal") & (flows.dst_port == DNS_PORT) & flows.answered
    )
    counts = served.group_by("dst").aggregate(clients=served.src.nunique())
    found = tables.to_pyarrow(
        counts.filter(counts.clients >= cfg.min_resolver_clients).select("dst").order_by("dst")
    )
    if found.num_rows:
        return [str(ip) for ip in found.column("dst").to_pylist()], "inferred"
    dns = tables.oriented("dns")
    server_log = tables.to_pyarrow(dns.filter(dns.dst.isnull()).limit(1)).num_rows
    if server_log:  # a dnsmasq/BIND/Pi-hole query log: the network runs that resolver
        return [], "server log"
    return None


def run(tables: Tables, cfg: DnsBypassConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    flows = exchanges(tables)
    found = _resolvers(tables, flows, cfg)
    if found is None:
        log.info(
            "dns-bypass: no internal resolver configured or seen answering %d+ internal hosts: "
            "outside resolvers are the network's own; nobody flagged",
            cfg.min_resolver_clients,
        )
        return
    resolvers, how = found
    doh = _doh(tables).mutate(kind=ibis.literal("doh"))
    outside = flows.filter(
        (flows.direction == "outbound")
        & flows.dst.notnull()  # a DNS server's own query log names no server
        & flows.recursive
        & ~flows.src.isin(resolvers)
        & ~flows.dst.isin(resolvers)  # a configured resolver may have a public address
    )
    plain = outside.select(
        "ts",
        "uid",
        "src",
        "dst",
        "dst_port",
        kind=(outside.dst_port == DOT_PORT).ifelse("dot", "dns"),
    )
    bypass = ibis.union(plain, doh.filter(~doh.src.isin(resolvers)))
    clients = ibis.union(
        flows.filter(flows.direction != "inbound").select("src"), doh.select("src"), distinct=True
    ).filter(~ibis._.src.isin(resolvers))
    counts = tables.to_pyarrow(
        bypass.select("src")
        .distinct()
        .aggregate(bypassing=ibis._.count())
        .cross_join(clients.aggregate(dns_clients=ibis._.count()))
    )
    bypassing, dns_clients = (counts.column(c)[0].as_py() for c in ("bypassing", "dns_clients"))
    if not bypassing:
        return
    share = (bypassing - 1) / max(dns_clients - 1, 1)
    pairs = bypass.group_by(["src", "dst", "kind"]).aggregate(
        count=bypass.count(),
        dst_port=bypass.dst_port.max(),
        first_seen=bypass.ts.min(),
        last_seen=bypass.ts.max(),
    )
    context = _Context(resolvers, how, bypassing, dns_clients, share)
    ranked = rank(
        f
        for batch in tables.batches(pairs)
        for row in batch.to_pylist()
        if (f := _finding(row, context, cfg)) is not None
    )
    if not ranked:
        return
    wanted = pa.table(
        {
            "src": [f.src for f in ranked],
            "dst": [f.dst for f in ranked],
            "kind": [str(f.evidence["kind"]) for f in ranked],
        }
    )
    uids = sample_uids(tables, bypass, ("src", "dst", "kind"), wanted)
    for f in ranked:
        yield with_uids(f, uids.get((f.src, f.dst or "", str(f.evidence["kind"])), []))


@dataclass(frozen=True, slots=True)
class _Context:
    resolvers: list[str]
    how: str
    bypassing: int
    dns_clients: int
    share: float


def _finding(row: dict[str, Any], context: _Context, cfg: DnsBypassConfig) -> Finding | None:
    kind, count = str(row["kind"]), int(row["count"])
    score = bypass_score(kind, count, context.share, cfg)
    if score < cfg.min_score:
        return None
    src, dst, port = str(row["src"]), str(row["dst"]), row["dst_port"]
    provider = lists.public_resolver(dst)
    evidence: dict[str, Any] = {
        "kind": kind,
        "exchanges": count,
        "provider": provider,
        "internal_resolvers": context.resolvers,
        "resolvers_from": context.how,
        "bypassing_hosts": context.bypassing,
        "dns_clients": context.dns_clients,
    }
    ours = ", ".join(context.resolvers) if context.resolvers else "the logged DNS server"
    summary = (
        f"{src} sent {_KIND_NAMES[kind]} to {dst}:{port}"
        f"{f' ({provider})' if provider else ''} {_times(count)} instead of the network's "
        f"resolvers ({ours}, {context.how})"
    )
    if context.bypassing > 1:
        evidence["fleet_share_factor"] = round(1.0 - cfg.fleet_damping * context.share, 3)
        summary += (
            f"; {context.bypassing} of {context.dns_clients} DNS clients go outside, score lowered"
        )
    return Finding(
        detector="dns-bypass",
        src=src,
        dst=dst,
        dst_port=int(port) if port is not None else None,
        score=score,
        first_seen=utc(row["first_seen"]),
        last_seen=utc(row["last_seen"]),
        summary=summary + ".",
        evidence=evidence,
    )


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


DETECTOR = Detector(
    name="dns-bypass",
    requires=("conn", "dns"),
    config=DnsBypassConfig,
    run=run,
    description="internal hosts using outside resolvers (DNS, DoT, DoH) past the network's own",
)
