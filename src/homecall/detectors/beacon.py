"""Beacons: an internal host calling one destination at a regular interval
(docs/detection.md#beacon).

One series per (internal src, grouping, dst): a domain (TLS SNI, HTTP Host or the DNS name the
host resolved), a remote IP never named, or a host requested through a web proxy. The set-based
part (grouping, timestamps and sizes per series, fleet prevalence) is Ibis; the per-series maths
is pure NumPy on whole batches in `beacon_scoring`, with the one combining function `combine`.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from homecall.detectors import web
from homecall.detectors.base import Detector
from homecall.detectors.beacon_scoring import (
    BeaconConfig,
    IntervalScore,
    SizeScore,
    beacon_score,
    combine,
    score_intervals,
    score_intervals_batch,
    score_sizes,
    score_sizes_batch,
    shared_factor,
    sleep_change,
)
from homecall.detectors.common import (
    fleet_share,
    lowered,
    most_common_port,
    named_contacts,
    sample_uids,
    utc,
    with_uids,
)
from homecall.detectors.segments import Ints
from homecall.findings import Finding, rank
from homecall.intel.services import known_service
from homecall.store.tables import Tables

__all__ = [
    "DETECTOR",
    "BeaconConfig",
    "IntervalScore",
    "SizeScore",
    "beacon_score",
    "candidates",
    "events",
    "run",
    "score_intervals",
    "score_sizes",
]

log = logging.getLogger(__name__)

UNKNOWN_BYTES = -1  # sizes of a check-in seen without its conn.log record


def events(tables: Tables) -> ir.Table:
    """Every check-in candidate once: (src, grouping, dst, dst_port, ts, uid, bytes_out, bytes_in).

    An outbound connection is keyed by the name it was made for, when one is known (TLS SNI,
    HTTP Host, else the name this host resolved to that address), so a C2 that rotates IPs or
    hides behind a CDN stays one series ("domain"); else by the remote IP ("ip-pair"). Requests
    through a web proxy (HTTP CONNECT, or absolute-URI requests) are keyed by the requested host
    ("proxy"); the client-to-proxy connections themselves are internal and not counted twice.
    A connection carrying several HTTP requests gives one event per request.
    """
    conn = tables.oriented("conn")
    out = conn.filter(conn.direction == "outbound")
    out = out.mutate(
        bytes_out=out.orig_ip_bytes.fill_null(out.orig_bytes.fill_null(0)),
        bytes_in=out.resp_ip_bytes.fill_null(out.resp_bytes.fill_null(0)),
    )
    contacts = named_contacts(tables)
    named = _names_by_uid(contacts).rename(_name="name")
    resolved = _resolved_names(tables)
    keyed = out.left_join(named, "uid").drop("uid_right")
    keyed = keyed.left_join(resolved, [keyed.src == resolved.r_src, keyed.dst == resolved.r_ip])
    name = keyed._name.fill_null(keyed.r_name)
    direct = keyed.select(
        src=keyed.src,
        grouping=name.isnull().ifelse("ip-pair", "domain"),
        dst=name.fill_null(keyed.dst),
        dst_port=keyed.dst_port,
        ts=keyed.ts,
        uid=keyed.uid,
        bytes_out=keyed.bytes_out,
        bytes_in=keyed.bytes_in,
    )
    direct = _per_request(tables, direct)
    return ibis.union(direct, _proxy_requests(tables, conn), _without_conn(contacts, conn))


def _per_request(tables: Tables, direct: ir.Table) -> ir.Table:
    """A connection that carried several HTTP requests (keep-alive: Go's and python-requests'
    clients reuse one connection for many check-ins) counts once per request, at the request's
    time and sized by its bodies; every other connection counts once."""
    http = tables.oriented("http")
    requests = http.filter((http.direction == "outbound") & http.proxy.isnull())
    reused = requests.group_by("uid").aggregate(requests=requests.count())
    reused = reused.filter(reused.requests > 1).select("uid")
    requests = requests.semi_join(reused, "uid").select(
        "uid",
        r_ts=requests.ts,
        r_out=requests.request_body_len.fill_null(0),
        r_in=requests.response_body_len.fill_null(0),
    )
    each = direct.join(requests, "uid")
    each = each.select(
        src=each.src,
        grouping=each.grouping,
        dst=each.dst,
        dst_port=each.dst_port,
        ts=each.r_ts,
        uid=each.uid,
        bytes_out=each.r_out,
        bytes_in=each.r_in,
    )
    return ibis.union(direct.anti_join(reused, "uid"), each)


def _without_conn(contacts: ir.Table, conn: ir.Table) -> ir.Table:
    """TLS and HTTP records whose conn.log record is missing (a sensor that logs ssl.log but
    not conn.log, or a partial import) stand in for their connections; sizes unknown (-1)."""
    named = contacts.filter(~contacts.via_proxy).anti_join(conn.select("uid"), "uid")
    return named.select(
        src=named.src,
        grouping=ibis.literal("domain"),
        dst=named.name,
        dst_port=named.dst_port,
        ts=named.ts,
        uid=named.uid,
        bytes_out=ibis.literal(UNKNOWN_BYTES, type="int64"),
        bytes_in=ibis.literal(UNKNOWN_BYTES, type="int64"),
    )


def _names_by_uid(contacts: ir.Table) -> ir.Table:
    return contacts.group_by("uid").aggregate(name=contacts.name.max())


def _resolved_names(tables: Tables) -> ir.Table:
    """(src, ip) -> the name that host looked up most often among those answering with ip."""
    dns = tables.oriented("dns")
    dns = dns.filter(dns.query.fill_null("") != "")
    answers = dns.select(r_src=dns.src, name=dns.query.lower(), r_ip=dns.answers.unnest())
    answers = answers.filter(answers.r_ip.re_search(r"^[0-9.]+$|:"))
    counts = answers.group_by(["r_src", "r_ip", "name"]).aggregate(n=ibis._.count())
    # most lookups wins; ties go to the alphabetically last name, so the result is deterministic
    rank_key = counts.n.cast("string").lpad(12, "0").concat(counts.name)
    return counts.group_by(["r_src", "r_ip"]).aggregate(r_name=counts.name.argmax(rank_key))


def _proxy_requests(tables: Tables, conn: ir.Table) -> ir.Table:
    """Requests through a web proxy (`web.requests`), keyed by the requested host and port.
    A CONNECT a sensor saw is sized by its tunnel's conn record; the rest by what the proxy
    logged, else the HTTP bodies."""
    requests = web.requests(tables)
    requests = requests.filter(requests.via_proxy & requests.host.notnull())
    tunnel = conn.select(
        "uid",
        c_out=conn.orig_ip_bytes.fill_null(conn.orig_bytes),
        c_in=conn.resp_ip_bytes.fill_null(conn.resp_bytes),
    )
    joined = requests.left_join(tunnel, "uid").drop("uid_right")
    return joined.select(
        src=joined.src,
        grouping=ibis.literal("proxy"),
        dst=joined.host,
        dst_port=joined.port,
        ts=joined.ts,
        uid=joined.uid,
        bytes_out=joined.c_out.fill_null(joined.request_bytes.fill_null(0)),
        bytes_in=joined.c_in.fill_null(joined.response_bytes.fill_null(0)),
    )


def candidates(series: ir.Table, cfg: BeaconConfig) -> ir.Table:
    """One row per (src, grouping, dst) series with enough check-ins: timestamps and sizes."""
    keys = ["src", "grouping", "dst"]
    pairs = series.group_by(keys).aggregate(
        conns=ibis._.count(),
        uids=ibis._.uid.nunique(),
        ports=ibis._.dst_port.nunique(),
        first_seen=ibis._.ts.min(),
        last_seen=ibis._.ts.max(),
        ts=ibis._.ts.collect(),
        bytes_out=ibis._.bytes_out.collect(),
        bytes_in=ibis._.bytes_in.collect(),
    )
    pairs = pairs.filter(pairs.conns >= cfg.min_checkins)
    prevalence = series.group_by(["grouping", "dst"]).aggregate(dst_hosts=ibis._.src.nunique())
    return pairs.join(prevalence, ["grouping", "dst"]).join(most_common_port(series, keys), keys)


def run(tables: Tables, cfg: BeaconConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    series = events(tables)
    fleet = tables.fleet_size
    span = tables.to_pyarrow(series.aggregate(lo=series.ts.min(), hi=series.ts.max()))
    lo, hi = span.column("lo")[0].as_py(), span.column("hi")[0].as_py()
    if lo is None:
        return
    window_s = max((hi - lo).total_seconds(), 1.0)
    found: list[Finding] = []
    for batch in tables.batches(candidates(series, cfg)):
        found.extend(_score_batch(batch, cfg, fleet, window_s))
    yield from _with_uids(tables, series, rank(_same_period(found)))


SAME_PERIOD_TOLERANCE = 0.1  # periods within 10 % of each other are the same timer


def _same_period(found: list[Finding]) -> list[Finding]:
    """Note, on each beacon, how many internal hosts call the same destination at the same
    period: the signature of a fleet-wide timer (an agent, an updater) rather than one implant.
    The score is already lowered by the destination's prevalence (a superset of these hosts).
    A series is one (src, grouping, dst), so each finding of a destination is another host."""
    by_dst: dict[tuple[object, str | None], list[float]] = {}
    for f in found:
        by_dst.setdefault((f.evidence["grouping"], f.dst), []).append(float(f.evidence["period_s"]))
    periods = {key: sorted(values) for key, values in by_dst.items()}
    out = []
    for f in found:
        period = float(f.evidence["period_s"])
        near = periods[(f.evidence["grouping"], f.dst)]
        slack = SAME_PERIOD_TOLERANCE * period
        hosts = bisect.bisect_right(near, period + slack) - bisect.bisect_left(near, period - slack)
        if hosts < 2:
            out.append(f)
            continue
        reason = f"{hosts} internal hosts call {f.dst} at this period"
        context = f.evidence.get("context")
        evidence = {
            **f.evidence,
            "same_period_hosts": hosts,
            "context": f"{context}; {reason}" if context else reason,
        }
        out.append(dataclasses.replace(f, evidence=evidence))
    return out


@dataclass(frozen=True, slots=True)
class _Scored:
    """One reported series with everything its finding says."""

    row: dict[str, Any]
    score: float
    timing: IntervalScore
    size_out: SizeScore
    size_in: SizeScore
    coverage: float
    shared: float
    service: str | None
    persistence: dict[str, float]
    histogram: dict[str, list[float]]
    connections: int
    change: dict[str, object] | None


def _score_batch(
    batch: pa.RecordBatch, cfg: BeaconConfig, fleet: int, window_s: float
) -> Iterator[Finding]:
    """Score every series of a batch in NumPy passes; Python touches only the reported ones."""
    ts_lists = batch.column("ts")
    offsets = ts_lists.offsets.to_numpy().astype(np.int64)
    offsets = offsets - offsets[0]  # a sliced batch's offsets need not start at 0
    ts_us = ts_lists.values.cast(pa.int64()).to_numpy()
    timing = score_intervals_batch(ts_us, offsets, cfg)
    sizes_out = score_sizes_batch(batch.column("bytes_out").values.to_numpy(), offsets)
    sizes_in = score_sizes_batch(batch.column("bytes_in").values.to_numpy(), offsets)
    for sizes in (sizes_out, sizes_in):  # sizes unknown: neither for nor against a beacon
        sizes.regularity[sizes.median_bytes < 0] = 0.5
    first = batch.column("first_seen").cast(pa.int64()).to_numpy()
    last = batch.column("last_seen").cast(pa.int64()).to_numpy()
    coverage = np.minimum(1.0, (last - first) / 1e6 / window_s)
    shared = shared_factor(batch.column("dst_hosts").to_numpy(), fleet, cfg)
    alone = combine(
        timing.regularity, sizes_out.regularity, sizes_in.regularity, coverage, 1.0, cfg
    )
    rows = batch.select(
        [
            "src", "grouping", "dst", "dst_port", "ports", "first_seen", "last_seen", "dst_hosts",
            "conns", "uids",
        ]
    )  # fmt: skip
    for i in np.flatnonzero(timing.valid & (alone >= cfg.min_score)):
        row = rows.slice(int(i), 1).to_pylist()[0]
        interval = timing.one(int(i))
        assert interval is not None
        service = known_service(row["dst"], row["dst_port"])
        context = float(shared[i]) * (1.0 - cfg.service_damping if service else 1.0)
        series_ts = np.sort(ts_us[offsets[i] : offsets[i + 1]])
        yield _finding(
            _Scored(
                row=row,
                score=float(alone[i]) * context,  # context lowers the score, never hides it
                timing=interval,
                size_out=sizes_out.one(int(i)),
                size_in=sizes_in.one(int(i)),
                coverage=float(coverage[i]),
                shared=float(shared[i]),
                service=service,
                persistence=persistence(series_ts, window_s, cfg),
                histogram=interval_histogram(series_ts, interval.period_s),
                connections=int(offsets[i + 1] - offsets[i]),
                change=_change(series_ts, cfg),
            ),
            fleet,
        )


def _change(ts_us: Ints, cfg: BeaconConfig) -> dict[str, object] | None:
    """The sleep change of a series, as evidence (`sleep_change`)."""
    found = sleep_change(ts_us, cfg)
    if found is None:
        return None
    before, after, at_s = found
    at = datetime.fromtimestamp(at_s, UTC).isoformat()
    return {"before_s": round(before, 3), "after_s": round(after, 3), "changed_at": at}


def persistence(ts_us: Ints, window_s: float, cfg: BeaconConfig) -> dict[str, float]:
    """Share of the window's hours with a check-in, days with one, and the share of check-ins
    outside working hours (weekdays, `working_hours_utc`)."""
    hours = np.unique(ts_us // 3_600_000_000)
    days = np.unique(ts_us // 86_400_000_000)
    hour_of_day = (ts_us // 3_600_000_000) % 24
    weekday = (ts_us // 86_400_000_000 + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0
    start, end = cfg.working_hours_utc
    at_work = (weekday < 5) & (hour_of_day >= start) & (hour_of_day < end)
    return {
        "hours_active_ratio": round(min(1.0, len(hours) / max(window_s / 3600, 1.0)), 3),
        "days_active": len(days),
        "off_hours_ratio": round(float(1.0 - at_work.mean()), 3) if len(ts_us) else 0.0,
    }


HISTOGRAM_EDGES = (0.0, 0.25, 0.5, 0.75, 0.9, 1.1, 1.25, 1.5, 2.0, 3.0)


def interval_histogram(ts_us: Ints, period_s: float) -> dict[str, list[float]]:
    """Counts of the gaps between connections, in multiples of the period (for plots)."""
    gaps = np.diff(ts_us) / 1e6 / max(period_s, 1e-9)
    edges = np.array([*HISTOGRAM_EDGES, np.inf])
    counts, _ = np.histogram(gaps, bins=edges)
    return {"edges_x_period": list(HISTOGRAM_EDGES), "counts": [int(c) for c in counts]}


def _finding(scored: _Scored, fleet: int) -> Finding:
    row, timing = scored.row, scored.timing
    src, dst, port = str(row["src"]), str(row["dst"]), row["dst_port"]
    evidence: dict[str, object] = {
        "grouping": row["grouping"],
        "period_s": round(timing.period_s, 3),
        "jitter_ratio": round(timing.jitter_ratio, 3),
        "missed_fraction": round(timing.missed_fraction, 3),
        "checkins": timing.checkins,
        "connections": scored.connections,
        "conns_per_checkin": round(timing.conns_per_checkin, 2),
        "interval_regularity": round(timing.regularity, 3),
        "periodicity_z": round(timing.periodicity_z, 2),
        "p_value": float(f"{timing.p_value:.3g}"),
        "bytes_out_median": scored.size_out.median_bytes,
        "bytes_out_spread_ratio": round(scored.size_out.spread_ratio, 3),
        "bytes_in_median": scored.size_in.median_bytes,
        "bytes_in_spread_ratio": round(scored.size_in.spread_ratio, 3),
        "coverage_ratio": round(scored.coverage, 3),
        **scored.persistence,
        "dst_ports": row["ports"],
        "dst_hosts": row["dst_hosts"],
        "fleet_hosts": fleet,
        "interval_histogram": scored.histogram,
    }
    if scored.change:
        evidence["sleep_change"] = scored.change
    reasons = fleet_share(evidence, scored.shared, int(row["dst_hosts"]), fleet, f"talk to {dst}")
    if scored.service:
        evidence["known_service"] = scored.service
        reasons.append(f"{dst}:{port} is a known {scored.service} service")
    # requests through a proxy, or several over one kept-alive connection: "requested"
    reused = int(row["uids"]) < int(row["conns"])
    verb = "requested" if row["grouping"] == "proxy" or reused else "connected to"
    via = " through a proxy" if row["grouping"] == "proxy" else ""
    summary = (
        f"{src} {verb} {dst}:{port}{via} {scored.connections} times, about every "
        f"{_duration(timing.period_s)} (jitter ±{timing.jitter_ratio:.0%}, "
        f"{timing.missed_fraction:.0%} check-ins missed)"
    )
    summary = lowered(summary, evidence, reasons) + "."
    return Finding(
        detector="beacon",
        src=src,
        dst=dst,
        dst_port=int(port) if port is not None else None,
        score=scored.score,
        first_seen=utc(row["first_seen"]),
        last_seen=utc(row["last_seen"]),
        summary=summary,
        evidence=evidence,
    )


def _with_uids(tables: Tables, series: ir.Table, found: list[Finding]) -> Iterator[Finding]:
    """Attach up to MAX_UIDS record uids to each finding, one query for all of them."""
    keys = ("src", "grouping", "dst")
    wanted = pa.table(
        {
            "src": [f.src for f in found],
            "grouping": [str(f.evidence["grouping"]) for f in found],
            "dst": [f.dst or "" for f in found],
        }
    )
    uids = sample_uids(tables, series, keys, wanted)
    for f in found:
        yield with_uids(f, uids.get((f.src, str(f.evidence["grouping"]), f.dst or ""), []))


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


DETECTOR = Detector(
    name="beacon",
    requires=("conn",),
    config=BeaconConfig,
    run=run,
    description="regular check-ins from an internal host to one remote IP",
)
