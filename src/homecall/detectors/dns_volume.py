"""DNS volume: an internal host whose lookups in one time bucket are far above its own usual rate
and above what the rest of the fleet ever reaches (docs/detection.md#dns-volume).

Lookups are counted per (host, bucket) in Ibis; per host, NumPy compares the busiest bucket with
the host's other active buckets (median and MAD) and with the busiest bucket of every other host
(robust z-scores). Hosts that answer DNS for other internal hosts (resolvers, forwarders) are left
out: their volume is their clients'. Volume is a symptom, not a technique, so the score stays at
or below `max_score` ("medium" by default); the dns-tunnel finding names the technique.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from homecall.detectors.base import Detector
from homecall.detectors.common import ramp, sample_uids, scaled_log, utc, with_uids
from homecall.detectors.dns_queries import client_queries, resolvers
from homecall.findings import Finding, rank
from homecall.intel.domains import registered_domain
from homecall.store.tables import Tables

__all__ = [
    "DETECTOR",
    "DnsVolumeConfig",
    "HostRates",
    "buckets",
    "host_rates",
    "run",
    "volume_score",
]

log = logging.getLogger(__name__)

MAD_TO_SD = 1.4826  # MAD x 1.4826 estimates the standard deviation of normal data
TOP_DOMAINS = 5  # registered domains listed from the peak bucket


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsVolumeConfig:
    """Settings under [detectors.dns-volume] in homecall.toml."""

    bucket_s: int = 3600  # lookups are counted per host per hour
    min_buckets: int = 3  # other active buckets needed for a host's own baseline
    min_fleet: int = 5  # hosts needed for a fleet baseline (the host itself not counted)
    min_queries_per_hour: float = 1000.0  # floor: a busy workstation browses at a few hundred
    spread_ratio: float = 0.5  # a host's lookups per bucket vary by at least half their median
    z_low: float = 3.5  # robust z below which a count is within ordinary variation
    z_high: float = 20.0  # robust z giving full weight
    peak_full_ratio: float = 20.0  # a peak this many times the floor gives the full volume weight
    max_score: float = 0.7  # volume alone is at most "medium" (findings.severity_for)
    min_score: float = 0.25  # below: not worth an analyst's time


@dataclass(frozen=True, slots=True)
class HostRates:
    """One host's busiest bucket against its own other buckets and the fleet's busiest buckets."""

    peak: int
    peak_index: int  # position of the busiest bucket in the host's counts
    active_buckets: int
    baseline_median: float
    baseline_mad: float
    host_z: float | None  # None when the host has fewer than min_buckets other buckets
    fleet_median: float
    fleet_mad: float
    fleet_z: float | None  # None when the fleet is smaller than min_fleet


def _robust_z(value: float, median: float, mad: float, cfg: DnsVolumeConfig) -> float:
    """(value - median) / spread; the spread is MAD x 1.4826 but at least spread_ratio x median
    (lookup counts swing with use far more than Poisson counts do), sqrt(median) and 1."""
    spread = max(MAD_TO_SD * mad, cfg.spread_ratio * median, math.sqrt(max(median, 0.0)), 1.0)
    return (value - median) / spread


def host_rates(
    counts: npt.NDArray[np.int64], fleet_peaks: npt.NDArray[np.int64], cfg: DnsVolumeConfig
) -> HostRates:
    """Pure: robust z-scores of a host's busiest bucket (`counts`: its active buckets) against
    its other buckets and against `fleet_peaks`, the busiest bucket of every other host."""
    peak_index = int(np.argmax(counts))
    peak = int(counts[peak_index])
    others = np.delete(counts, peak_index).astype(np.float64)
    median = float(np.median(others)) if len(others) else 0.0
    mad = float(np.median(np.abs(others - median))) if len(others) else 0.0
    host_z = _robust_z(peak, median, mad, cfg) if len(others) >= cfg.min_buckets else None
    fleet = fleet_peaks.astype(np.float64)
    fleet_median = float(np.median(fleet)) if len(fleet) else 0.0
    fleet_mad = float(np.median(np.abs(fleet - fleet_median))) if len(fleet) else 0.0
    fleet_z = _robust_z(peak, fleet_median, fleet_mad, cfg) if len(fleet) >= cfg.min_fleet else None
    return HostRates(
        peak, peak_index, len(counts), median, mad, host_z, fleet_median, fleet_mad, fleet_z
    )


def volume_score(rates: HostRates, cfg: DnsVolumeConfig) -> float:
    """0..max_score: both z-scores must be high (geometric mean of their weights), scaled by
    how far the peak is above the floor; 0 when a baseline is missing or the floor not met."""
    floor = cfg.min_queries_per_hour * cfg.bucket_s / 3600.0
    if rates.host_z is None or rates.fleet_z is None or rates.peak < floor:
        return 0.0
    own = ramp(rates.host_z, cfg.z_low, cfg.z_high)
    fleet = ramp(rates.fleet_z, cfg.z_low, cfg.z_high)
    volume = scaled_log(rates.peak / floor - 1.0, cfg.peak_full_ratio - 1.0)
    return cfg.max_score * math.sqrt(own * fleet) * (0.6 + 0.4 * volume)


def _bucketed(queries: ir.Table, cfg: DnsVolumeConfig) -> ir.Table:
    """`queries` with `bucket`: epoch seconds // bucket_s."""
    return queries.mutate(bucket=queries.ts.epoch_seconds() // cfg.bucket_s)


def buckets(queries: ir.Table, cfg: DnsVolumeConfig) -> ir.Table:
    """(src, bucket, queries, names, first_seen, last_seen) for every active host-bucket."""
    return (
        _bucketed(queries, cfg)
        .group_by(["src", "bucket"])
        .aggregate(
            queries=ibis._.count(),
            names=ibis._.name.nunique(),
            first_seen=ibis._.ts.min(),
            last_seen=ibis._.ts.max(),
        )
    )


def run(tables: Tables, cfg: DnsVolumeConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    queries = client_queries(tables)
    answering = resolvers(tables)
    queries = queries.anti_join(answering, queries.src == answering.ip)
    counted = buckets(queries, cfg).order_by(["src", "bucket"])
    table = tables.to_pyarrow(counted)
    if table.num_rows == 0:
        return
    src = np.asarray(table.column("src").to_pylist(), dtype=object)
    counts = table.column("queries").to_numpy().astype(np.int64)
    starts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]])
    ends = np.r_[starts[1:], len(src)]
    peaks = np.maximum.reduceat(counts, starts)
    found: list[Finding] = []
    for host, (lo, hi) in enumerate(zip(starts, ends, strict=True)):
        rates = host_rates(counts[lo:hi], np.delete(peaks, host), cfg)
        score = volume_score(rates, cfg)
        if score > 0 and score >= cfg.min_score:
            row = table.slice(int(lo) + rates.peak_index, 1).to_pylist()[0]
            found.append(_finding(row, rates, score, len(peaks), cfg))
    yield from _with_domains(tables, queries, rank(found), cfg)


def _with_domains(
    tables: Tables, queries: ir.Table, found: list[Finding], cfg: DnsVolumeConfig
) -> Iterator[Finding]:
    """Add the peak bucket's top registered domains and record uids to each finding."""
    if not found:
        return
    wanted = pa.table(
        {
            "src": [f.src for f in found],
            "bucket": pa.array([int(f.evidence["peak_bucket"]) for f in found], pa.int64()),
        }
    )
    peak_rows = _bucketed(queries, cfg).semi_join(tables.memtable(wanted), ["src", "bucket"])
    per_name = peak_rows.group_by(["src", "name"]).aggregate(queries=ibis._.count())
    domains: dict[str, dict[str, int]] = {}
    for row in tables.to_pyarrow(per_name.order_by(["src", "name"])).to_pylist():
        domain = registered_domain(row["name"]) or row["name"]
        by_domain = domains.setdefault(row["src"], {})
        by_domain[domain] = by_domain.get(domain, 0) + int(row["queries"])
    uids = sample_uids(tables, peak_rows, ("src", "bucket"), wanted)
    for f in found:
        top = sorted(domains.get(f.src, {}).items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_DOMAINS]
        evidence = {
            **f.evidence,
            "peak_top_domains": [d for d, _ in top],
            "peak_top_domain_queries": [n for _, n in top],
        }
        named = f"; most to {top[0][0]} ({top[0][1]:,})" if top else ""
        summary = f.summary.removesuffix(".") + named + "."
        f = dataclasses.replace(f, summary=summary, evidence=evidence)
        yield with_uids(f, uids.get((f.src, str(f.evidence["peak_bucket"])), []))


def _finding(
    row: dict[str, Any], rates: HostRates, score: float, hosts: int, cfg: DnsVolumeConfig
) -> Finding:
    assert rates.host_z is not None
    assert rates.fleet_z is not None
    src = str(row["src"])
    start = datetime.fromtimestamp(int(row["bucket"]) * cfg.bucket_s, UTC)
    evidence: dict[str, Any] = {
        "bucket_s": cfg.bucket_s,
        "peak_bucket": int(row["bucket"]),
        "peak_bucket_start": start.isoformat().replace("+00:00", "Z"),
        "peak_queries": rates.peak,
        "peak_distinct_names": int(row["names"]),
        "active_buckets": rates.active_buckets,
        "baseline_median_queries": rates.baseline_median,
        "baseline_mad_queries": rates.baseline_mad,
        "host_z": round(rates.host_z, 2),
        "fleet_median_peak_queries": rates.fleet_median,
        "fleet_mad_peak_queries": rates.fleet_mad,
        "fleet_z": round(rates.fleet_z, 2),
        "dns_hosts": hosts,
    }
    per = _duration(cfg.bucket_s)
    summary = (
        f"{src} made {rates.peak:,} DNS lookups ({int(row['names']):,} distinct names) in the "
        f"{per} from {start:%Y-%m-%d %H:%M} UTC, against its usual {rates.baseline_median:,.0f} "
        f"(z {rates.host_z:.1f}) and a median busiest {per} of {rates.fleet_median:,.0f} "
        f"among the other {hosts - 1} hosts (z {rates.fleet_z:.1f})."
    )
    return Finding(
        detector="dns-volume",
        src=src,
        dst=None,
        dst_port=None,
        score=score,
        first_seen=utc(row["first_seen"]),
        last_seen=utc(row["last_seen"]),
        summary=summary,
        evidence=evidence,
    )


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return "hour" if seconds == 3600 else f"{seconds // 3600} hours"
    if seconds % 60 == 0:
        return "minute" if seconds == 60 else f"{seconds // 60} minutes"
    return f"{seconds} s"


DETECTOR = Detector(
    name="dns-volume",
    requires=("dns",),
    config=DnsVolumeConfig,
    run=run,
    description="hosts whose DNS lookups in an hour far exceed their own and the fleet's rate",
)
