"""Helpers shared by detectors: evidence that points back to the raw records, shared views,
scoring ramps and robust statistics."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from datetime import UTC, datetime

import ibis
import ibis.expr.types as ir
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from homecall.detectors import web
from homecall.findings import MAX_UIDS, Finding
from homecall.store.tables import Tables

__all__ = [
    "FAILED_STATES",
    "MAD_TO_SD",
    "centre",
    "connection_bytes",
    "contacts_with_names",
    "epoch_s",
    "fleet_share",
    "host_name",
    "is_failed",
    "log_ramp",
    "lowered",
    "most_common_port",
    "named_contacts",
    "prevalence_factor",
    "ramp",
    "sample_uids",
    "scaled_log",
    "utc",
    "with_uids",
]


# Zeek conn_state of an attempt the responder never took up: no reply (S0), refused (REJ), the
# originator gave up (RSTOS0, SH) or only the responder's half was seen (RSTRH, SHR).
FAILED_STATES = ("S0", "REJ", "RSTOS0", "RSTRH", "SH", "SHR")
MAD_TO_SD = 1.4826  # MAD x 1.4826 estimates the standard deviation of normal data


def ramp(value: float, low: float, high: float) -> float:
    """0 at `low`, 1 at `high`, linear between."""
    if high <= low:
        return 1.0 if value >= high else 0.0
    return min(1.0, max(0.0, (value - low) / (high - low)))


def log_ramp(value: float, low: float, high: float) -> float:
    """`ramp` on a log scale: counts that grow by factors."""
    return ramp(math.log1p(max(value, 0.0)), math.log1p(low), math.log1p(high))


def centre(values: npt.NDArray[np.float64], floor: float) -> tuple[float, float]:
    """(median, spread) of `values`: spread = 1.4826 x MAD, at least `floor`."""
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median)))
    return median, max(MAD_TO_SD * mad, floor)


def epoch_s(ts: ir.TimestampValue) -> ir.IntegerValue:
    """Whole seconds since the epoch, the same on every engine (DuckDB's epoch keeps the
    fraction, Spark's drops it); whole seconds suffice for retries, sends and buckets."""
    return ts.epoch_seconds().floor().cast("int64")


def is_failed(conn: ir.Table) -> ir.BooleanValue:
    """A connection attempt that was never answered or was refused: a failed Zeek state, or,
    for sources without states (flow records), no packet back."""
    state = conn.conn_state
    no_reply = state.isnull() & (conn.resp_pkts.fill_null(-1) == 0)
    return state.isin(FAILED_STATES).fill_null(False) | no_reply


def sample_uids(
    tables: Tables, records: ir.Table, keys: Sequence[str], wanted: pa.Table
) -> dict[tuple[str, ...], list[str]]:
    """The first MAX_UIDS uids (by time) of `records` for each key tuple listed in `wanted`.

    One query for every reported finding, so evidence can lead back to the logs without
    carrying every uid of every candidate through the analysis.
    """
    if wanted.num_rows == 0:
        return {}
    chosen = records.semi_join(tables.memtable(wanted), list(keys))
    ranked = chosen.mutate(_n=ibis.row_number().over(group_by=list(keys), order_by=["ts", "uid"]))
    picked = ranked.filter(ranked._n < MAX_UIDS).select(*keys, "uid", "_n").order_by([*keys, "_n"])
    uids: dict[tuple[str, ...], list[str]] = {}
    for batch in tables.batches(picked):
        columns = [batch.column(k).to_pylist() for k in keys]
        for key, uid in zip(
            zip(*columns, strict=True), batch.column("uid").to_pylist(), strict=True
        ):
            if uid is not None:
                uids.setdefault(tuple(str(k) for k in key), []).append(uid)
    return uids


def connection_bytes(conn: ir.Table) -> ir.IntegerValue:
    """Bytes both ways of each conn row: Zeek's payload counts, else the IP-level counts the
    flow sources have (Suricata flow, NetFlow, Argus), else 0."""
    out = conn.orig_bytes.fill_null(conn.orig_ip_bytes).fill_null(0)
    back = conn.resp_bytes.fill_null(conn.resp_ip_bytes).fill_null(0)
    return out + back


def scaled_log(value: float, full_at: float) -> float:
    """log10(1 + value) / log10(1 + full_at), clipped to 0..1: counts and bytes as a 0..1 weight."""
    if value <= 0:
        return 0.0
    return min(1.0, math.log10(1.0 + value) / math.log10(1.0 + full_at))


def fleet_share(
    evidence: dict[str, object], shared: float, hosts: int, fleet: int, doing: str = "use it"
) -> list[str]:
    """Why a destination much of the fleet shares scores lower: [] when `shared` (the factor
    from `prevalence_factor`) is 1, else the reason, with the factor kept in `evidence`."""
    if shared >= 1.0:
        return []
    evidence["shared_destination_factor"] = round(shared, 3)
    return [f"{hosts} of {fleet} internal hosts {doing}"]


def lowered(summary: str, evidence: dict[str, object], reasons: Sequence[str]) -> str:
    """`summary` followed by the reasons its score was lowered, which also go to
    evidence["context"]; `summary` unchanged when there are none."""
    if not reasons:
        return summary
    evidence["context"] = "; ".join(reasons)
    return f"{summary}; {evidence['context']} (score lowered)"


def with_uids(finding: Finding, uids: list[str]) -> Finding:
    """A copy of `finding` whose evidence carries `uids`."""
    return dataclasses.replace(finding, evidence={**finding.evidence, "uids": uids})


def utc(value: object) -> datetime:
    """A timestamp from Arrow as an aware UTC datetime (engines differ on naive vs aware)."""
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {value!r}")
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def most_common_port(records: ir.Table, keys: Sequence[str]) -> ir.Table:
    """keys + `dst_port`: the port each group used most (ties: the higher port).

    Ibis has no `mode` on every engine (PySpark lacks it), so this is a count and an argmax over
    count * 65536 + port, which also makes ties deterministic.
    """
    counts = records.group_by([*keys, "dst_port"]).aggregate(_n=ibis._.count())
    rank_key = counts._n * 65536 + counts.dst_port.fill_null(0).cast("int64")
    return counts.group_by(list(keys)).aggregate(dst_port=counts.dst_port.argmax(rank_key))


def host_name(column: ir.StringColumn) -> ir.StringColumn:
    """A TLS SNI, Host header or CONNECT target as a name: lower case, without a port."""
    return column.lower().re_replace(r":[0-9]+$", "")


def named_contacts(tables: Tables) -> ir.Table:
    """`contacts_with_names`, computed once per Tables."""
    return tables.reuse("common.named_contacts", contacts_with_names)


def contacts_with_names(tables: Tables) -> ir.Table:
    """Contacts of internal hosts with outside names: ts, uid, src, dst, dst_port, name,
    via_proxy. From the TLS SNI (outbound, or inside a proxy CONNECT tunnel) and every web
    request's requested host (`web.requests`: direct, through a proxy, or in a proxy's log).

    `dst` is the address contacted (the proxy's, for a request a sensor saw on its way to a
    proxy; the requested host in a proxy's own log) and `dst_port` the requested port; rows
    `via_proxy` have no outbound connection of their own in conn.
    """
    tls = web.tls_sessions(tables)
    tls = tls.filter(tls.name.notnull())
    tunnels = web.proxy_tunnels(tables)
    sessions = tls.left_join(tunnels, "uid").select(
        "ts",
        "uid",
        "src",
        "dst",
        dst_port=tunnels.port.fill_null(tls.dst_port),
        name=host_name(tls.name),
        via_proxy=tunnels.port.notnull(),
    )
    requests = web.requests(tables)
    requests = requests.filter(requests.host.notnull())
    asked = requests.select(
        "ts", "uid", "src", "dst", dst_port=requests.port, name=requests.host, via_proxy="via_proxy"
    )
    return ibis.union(sessions, asked)


def prevalence_factor(
    hosts: int, fleet: int, *, ratio: float, damping: float, min_fleet: int
) -> float:
    """1 for a destination of one host; down to 1 - damping when `ratio` of the fleet uses it.
    Not applied in a fleet smaller than min_fleet (the beacon detector's rule)."""
    if fleet < min_fleet:
        return 1.0
    share = max(hosts - 1, 0) / max(fleet - 1, 1)
    return 1.0 - damping * min(1.0, share / ratio)
