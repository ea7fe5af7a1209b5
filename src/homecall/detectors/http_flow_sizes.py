"""http-anomaly's repeated request size, seen in flow records (docs/detection.md#http-anomaly).

NetFlow, Argus, Suricata flow events and firewall teardowns carry no HTTP, only each
connection's packets and bytes. A program that sends one request over and over to a plain-HTTP
port (Simda asking /login.php of its C2 address hundreds of times a minute, a bot polling its
panel) still shows: connections of the same size, again and again, to one address. Per (host,
address, port), the connections whose HTTP was not logged are grouped by their size out, rounded
to `flow_size_step` bytes (TCP options make a few bytes' difference between otherwise identical
connections); the most common size, when it is most of the connections there, is reported as a
`repeated-flow-size` anomaly. Connections without a request (refused, unanswered, or only a
handshake: fewer bytes than the packets' headers) are left out: their sizes are the same for
every client.
"""

from __future__ import annotations

import dataclasses

import ibis
import ibis.expr.types as ir

from homecall.detectors.common import scaled_log
from homecall.detectors.http_kinds import Anomaly, HttpAnomalyConfig, _anomaly, _marked
from homecall.store.tables import Tables

__all__ = ["HEADER_BYTES", "repeated_flow_sizes"]

HEADER_BYTES = 52  # IPv4 + TCP with the timestamp option: what a packet without payload weighs


def repeated_flow_sizes(
    tables: Tables, req: ir.Table, cfg: HttpAnomalyConfig
) -> tuple[list[Anomaly], ir.Table]:
    """The most common connection size per (host, address, port) of web connections whose HTTP
    was not logged, when it is most of them."""
    del req  # flow records have no requests: the http table has nothing for them
    conn = tables.oriented("conn")
    out_bytes = conn.orig_ip_bytes.fill_null(conn.orig_bytes)
    web = conn.filter(
        (conn.direction == "outbound")
        & (conn.proto == "tcp")
        & conn.dst_port.isin(list(cfg.flow_ports))
        & (conn.resp_ip_bytes.fill_null(conn.resp_bytes).fill_null(0) > 0)
        & (out_bytes - HEADER_BYTES * conn.orig_pkts.fill_null(0) >= cfg.flow_min_payload)
    )
    logged = ibis.union(
        tables["http"].select("uid"), tables["tls"].select("uid"), distinct=True
    ).filter(ibis._.uid.notnull())
    flows = web.anti_join(logged, "uid").mutate(
        destination=web.dst,
        sized=(out_bytes // cfg.flow_size_step) * cfg.flow_size_step,
        out_bytes=out_bytes,
    )
    pair = ["src", "destination", "dst_port"]
    sizes = flows.group_by([*pair, "sized"]).aggregate(
        requests=flows.count(),
        first_seen=flows.ts.min(),
        last_seen=flows.ts.max(),
        smallest=flows.out_bytes.min(),
        largest=flows.out_bytes.max(),
        bytes_in=flows.resp_ip_bytes.fill_null(flows.resp_bytes).median(),
    )
    sizes = sizes.mutate(
        connections=sizes.requests.sum().over(group_by=pair),
        distinct_sizes=sizes.requests.count().over(group_by=pair),
    )
    sizes = sizes.filter(
        (sizes.requests >= cfg.repeat_min_requests)
        & (sizes.requests >= cfg.repeat_min_share * sizes.connections)
    )
    hosts = flows.group_by("destination").aggregate(shared_hosts=flows.src.nunique())
    sizes = sizes.join(hosts, "destination")
    records = _marked(
        flows, "repeated-flow-size", flows.destination + "|" + flows.sized.cast("string")
    )
    found: list[Anomaly] = []
    for row in tables.to_pyarrow(sizes.order_by([*pair, "sized"])).to_pylist():
        n, total = int(row["requests"]), int(row["connections"])
        share = n / total
        low, high = int(row["smallest"]), int(row["largest"])
        size = f"{low:,}" if low == high else f"{low:,}-{high:,}"
        anomaly = _anomaly(
            "repeated-flow-size",
            row,
            f"{row['destination']}|{int(row['sized'])}",
            cfg.repeat_strength * share * scaled_log(n, cfg.repeat_full),
            f"opened {n:,} connections of {size} bytes each to {row['destination']}:"
            f"{row['dst_port']} ({share:.0%} of its connections there; HTTP not logged): one "
            "request repeated by a program",
            bytes_out_min=low,
            bytes_out_max=high,
            bytes_in_median=int(row["bytes_in"] or 0),
            connections=n,
            size_share_ratio=round(share, 3),
            connections_to_destination=total,
            distinct_sizes=int(row["distinct_sizes"]),
        )
        found.append(dataclasses.replace(anomaly, shared_hosts=int(row["shared_hosts"])))
    return found, records
