"""Covert timing channels: data hidden in when a flow's packets leave, not in what they carry
(docs/detection.md#covert-timing).

One series per flow and direction of a packet capture (the `packets` table): the times of the
packets that carry data, up to `max_delays` inter-packet delays (IPDs). Bulk transfers (delays at
line rate), timers (keep-alives, heartbeats: delays all alike), slow flows and DNS are out of
scope. Four tests from the literature, each weak alone: Cabuk, Brodley and Shields' regularity
(CCS 2004), the Kolmogorov-Smirnov distance to the fleet's delays (Peng, Ning and Reeves 2006),
Gianvecchio and Wang's corrected conditional entropy (CCS 2007) and a lattice test for
JitterBug (Shah, Molina and Blaze 2006). The fleet is the other flows of the same service in the
window; without enough of them only the per-flow tests run. The set-based part is Ibis, the
statistics pure NumPy (`ipd_statistics`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from homecall.detectors import ipd_statistics as stats
from homecall.detectors import segments
from homecall.detectors.base import Detector
from homecall.detectors.common import utc
from homecall.detectors.covert_timing_scoring import (
    TESTS,
    CovertTimingConfig,
    Measures,
    Scores,
    in_scope,
    measure,
    near_timer,
    score_flows,
)
from homecall.detectors.segments import Ints
from homecall.findings import MAX_UIDS, Finding, rank
from homecall.store.tables import Tables

__all__ = ["DETECTOR", "CovertTimingConfig", "batch_delays", "candidates", "run"]

log = logging.getLogger(__name__)

GROUP = ["proto", "resp_port", "from_orig"]  # a service, seen from one side: the fleet baseline
FLOW = ["uid", "from_orig"]
BATCH_FLOWS = 256  # flow directions per batch: up to 512,000 delays in memory at once


def candidates(tables: Tables, cfg: CovertTimingConfig) -> ir.Table:
    """One row per flow direction with enough data packets: the times of its first
    max_delays + 1 (`ts`, unordered), its data packets and its first and last time.
    Backend-neutral."""
    p = tables.oriented("packets")
    flags = p.tcp_flags.fill_null(0)
    has_push = (flags // 8) % 2 == 1
    # TCP: packets with data; a lone byte without PSH is a keep-alive probe (Windows sends one)
    carries = (p.proto != "tcp") | (p.payload_len > 1) | ((p.payload_len == 1) & has_push)
    ignored = list(cfg.ignore_ports)
    p = p.filter(
        carries
        & p.uid.notnull()
        & p.from_orig.notnull()
        & ~p.resp_port.fill_null(0).isin(ignored)
        & ~p.orig_port.fill_null(0).isin(ignored)
    )
    counts = p.group_by(FLOW).aggregate(packets=ibis._.count())
    counts = counts.filter(counts.packets > cfg.min_delays)
    p = p.semi_join(counts, FLOW)
    ranked = p.mutate(_n=ibis.row_number().over(group_by=FLOW, order_by=["ts", "pcap_offset"]))
    first = ranked.filter(ranked._n <= cfg.max_delays)
    sender = (first.from_orig == (first.orig_ip == first.src)).ifelse(first.src, first.dst)
    series = first.mutate(sender=sender).group_by(
        ["proto", "resp_port", *FLOW, "src", "dst", "dst_port", "sender"]
    )
    series = series.aggregate(
        ts=ibis._.ts.collect(), first_seen=ibis._.ts.min(), last_seen=ibis._.ts.max()
    )
    return series.join(counts, FLOW)


def run(tables: Tables, cfg: CovertTimingConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    kept = tables.materialize(candidates(tables, cfg))
    ordered = kept.order_by(["proto", "resp_port", *FLOW])
    pools = _pools(tables, ordered, cfg)
    rows: list[dict[str, Any]] = []
    parts: list[Measures] = []
    services: list[int] = []
    ids: dict[tuple[Any, ...], int] = {}
    for batch in tables.batches(ordered, batch_rows=BATCH_FLOWS):
        delays, offsets = batch_delays(batch)
        scope = in_scope(delays, offsets, cfg)
        info = batch.drop_columns(["ts"]).to_pylist()
        groups = [tuple(r[g] for g in GROUP) for r in info]
        for group in dict.fromkeys(groups):
            pick = np.array([g == group for g in groups]) & scope
            if not pick.any():
                continue
            parts.append(measure(*_only(delays, offsets, pick), pools.get(group), cfg))
            rows.extend(
                info[i] | {"baseline_flows": _peers(pools, group)} for i in np.flatnonzero(pick)
            )
            services += [ids.setdefault(group, len(ids))] * int(pick.sum())
    if not rows:
        return
    m = Measures.concat(parts)
    scores = score_flows(m, np.asarray(services, dtype=np.int64), cfg)
    by_pair: dict[tuple[str, str, int | None], list[int]] = {}
    for i in np.flatnonzero((scores.score >= cfg.min_score) & (scores.score > 0)):
        row = rows[i]
        by_pair.setdefault((str(row["src"]), str(row["dst"]), row["dst_port"]), []).append(int(i))
    yield from rank(_finding(flows, rows, m, scores, cfg) for flows in by_pair.values())


def _peers(pools: dict[tuple[Any, ...], stats.Baseline], group: tuple[Any, ...]) -> int:
    """Other flows in the service's baseline (0 without one)."""
    pool = pools.get(group)
    return pool.flows - 1 if pool is not None else 0


def _only(delays: Ints, offsets: Ints, pick: npt.NDArray[np.bool_]) -> tuple[Ints, Ints]:
    """The picked flows' delays, laid end to end, and their offsets."""
    n = segments.lengths(offsets)
    kept = np.concatenate(([0], np.cumsum(n[pick]))).astype(np.int64)
    return delays[np.repeat(pick, n)], kept


def batch_delays(batch: pa.RecordBatch) -> tuple[Ints, Ints]:
    """The batch's delays (us, in time order) and their offsets."""
    lists = batch.column("ts")
    offsets = lists.offsets.to_numpy().astype(np.int64)
    offsets = offsets - offsets[0]
    ts_us = lists.values.cast(pa.int64()).to_numpy().astype(np.float64)
    ordered = segments.sort(ts_us, offsets)
    delays, delay_offsets = segments.diff(ordered, offsets)
    return delays.astype(np.int64), delay_offsets


def _pools(
    tables: Tables, ordered: ir.Table, cfg: CovertTimingConfig
) -> dict[tuple[Any, ...], stats.Baseline]:
    """The fleet baseline of every service with more than min_baseline_flows flows in scope:
    each flow's delays as baseline_points order statistics, pooled."""
    samples: dict[tuple[Any, ...], list[Ints]] = {}
    counts: dict[tuple[Any, ...], int] = {}
    for batch in tables.batches(ordered.select(*GROUP, "ts"), batch_rows=BATCH_FLOWS):
        delays, offsets = batch_delays(batch)
        scope = in_scope(delays, offsets, cfg)
        ranked = segments.sort(delays.astype(np.float64), offsets).astype(np.int64)
        sample, sample_offsets = stats.subsample(ranked, offsets, cfg.baseline_points)
        columns = [batch.column(g).to_pylist() for g in GROUP]
        for i, group in enumerate(zip(*columns, strict=True)):
            if scope[i]:
                samples.setdefault(group, []).append(
                    sample[sample_offsets[i] : sample_offsets[i + 1]]
                )
                counts[group] = counts.get(group, 0) + int(offsets[i + 1] - offsets[i])
    pools = {}
    for group, parts in samples.items():
        if len(parts) > cfg.min_baseline_flows:
            offsets = np.concatenate(([0], np.cumsum([len(p) for p in parts]))).astype(np.int64)
            pools[group] = stats.Baseline.of(np.concatenate(parts), offsets, counts[group])
    return pools


def _finding(
    flows: list[int], rows: list[dict[str, Any]], m: Measures, s: Scores, cfg: CovertTimingConfig
) -> Finding:
    """One finding per (src, dst, dst_port): the strongest flow direction's figures."""
    best = max(flows, key=lambda i: (s.score[i], rows[i]["uid"]))
    row = rows[best]
    src, dst, port = str(row["src"]), str(row["dst"]), row["dst_port"]
    strengths = {t: round(float(s.strengths[t][best]), 3) for t in TESTS}
    evidence: dict[str, Any] = {
        "sender": row["sender"],
        "proto": row["proto"],
        "service_port": row["resp_port"],
        "packets": int(row["packets"]),
        "delays": int(m.delays[best]),
        "ipd_median_s": _num(m.median_s[best], 4),
        "ipd_iqr_s": _num(m.iqr_s[best], 4),
        "tests": [t for t in TESTS if strengths[t] > 0],
        "strengths": strengths,
        "baseline": "fleet" if row["baseline_flows"] else "per-flow",
        "baseline_flows": row["baseline_flows"],
        "regularity": _num(m.regularity[best], 3),
        "regularity_threshold": cfg.regularity_weak,
        "ks_distance": _num(m.ks_distance[best], 3),
        "ks_p_value": _num(m.ks_p_value[best], None),
        "ks_threshold": cfg.ks_weak,
        "ks_fleet_z": _num(s.ks_z[best], 2),
        "cce_bits": _num(m.cce_bits[best], 3),
        "cce_ratio": _num(m.cce_bits[best] / np.log2(cfg.cce_bins), 3),
        "cce_threshold_ratio": cfg.cce_weak if m.fleet_bins[best] else cfg.own_cce_weak,
        "cce_pattern_length": int(m.cce_pattern[best]),
        "entropy_bits": _num(m.entropy_bits[best], 3),
        "cce_bins_from": "fleet" if m.fleet_bins[best] else "flow",
        "cce_fleet_z": _num(s.cce_z[best], 2),
        "lattice_step_ms": _num(m.lattice_step_s[best] * 1e3, 3),
        "lattice_concentration": _num(m.lattice_concentration[best], 3),
        "lattice_z": _num(m.lattice_z[best], 1),
        "lattice_threshold_z": _num(m.lattice_threshold_z[best], 1),
        "flagged_flows": len({rows[i]["uid"] for i in flows}),
        "uids": _first_uids([rows[i] for i in flows]),
    }
    if strengths["lattice"] and near_timer(m.lattice_step_s[best : best + 1], cfg)[0]:
        evidence["context"] = "the lattice step is an OS timer's: lowered"
    return Finding(
        detector="covert-timing",
        src=src,
        dst=dst,
        dst_port=int(port) if port is not None else None,
        score=float(s.score[best]),
        first_seen=utc(min(rows[i]["first_seen"] for i in flows)),
        last_seen=utc(max(rows[i]["last_seen"] for i in flows)),
        summary=_summary(src, dst, port, evidence, m, best),
        evidence=evidence,
    )


def _summary(
    src: str, dst: str, port: object, evidence: dict[str, Any], m: Measures, best: int
) -> str:
    reasons = []
    if "regularity" in evidence["tests"]:
        reasons.append(f"stationary delays (regularity {evidence['regularity']})")
    if "ks" in evidence["tests"]:
        reasons.append(
            f"delays unlike the other port-{evidence['service_port']} flows' "
            f"(KS distance {evidence['ks_distance']})"
        )
    if "cce" in evidence["tests"]:
        reasons.append(f"low conditional entropy (CCE {evidence['cce_ratio']:.0%} of the maximum)")
    if "lattice" in evidence["tests"]:
        reasons.append(f"delays on a {evidence['lattice_step_ms']:.1f} ms lattice (JitterBug-like)")
    flows = evidence["flagged_flows"]
    text = (
        f"{src} -> {dst}:{port}: the packets {evidence['sender']} sends"
        f"{f' in {flows} flows' if flows > 1 else ''} are timed like a covert channel: "
        f"{'; '.join(reasons)}, over {evidence['delays']} delays of median "
        f"{m.median_s[best] * 1e3:.0f} ms"
    )
    if evidence["baseline"] == "per-flow":
        text += " (per-flow tests only: too few flows of this service for a fleet baseline)"
    return text + "."


def _first_uids(rows: list[dict[str, Any]]) -> list[str]:
    """The uids of the flows, the first MAX_UIDS by time."""
    ordered = sorted(rows, key=lambda r: (utc(r["first_seen"]), r["uid"]))
    return list(dict.fromkeys(r["uid"] for r in ordered))[:MAX_UIDS]


def _num(value: float, digits: int | None) -> float | None:
    """A JSON-safe number: None for NaN or infinity; rounded, or to 3 significant digits."""
    if not np.isfinite(value):
        return None
    return round(float(value), digits) if digits is not None else float(f"{value:.3g}")


DETECTOR = Detector(
    name="covert-timing",
    requires=("packets",),
    config=CovertTimingConfig,
    run=run,
    description="a flow whose packet timing carries hidden data (covert timing channel)",
)
