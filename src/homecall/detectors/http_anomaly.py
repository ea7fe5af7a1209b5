"""Unusual HTTP per host (docs/detection.md#http-anomaly): odd protocol versions, requests
without a Host header, very large requests, one request size repeated to one destination, and
one URI template asked of many different domains (Simda's /login.php); and, from flow records
without HTTP, connections of one size repeated to one address (`http_flow_sizes`).

The kinds are group-bys in Ibis (`http_kinds`); here the groups that pass their thresholds are
damped by how many internal hosts share the destination or template, lifted when another kind
points at the same destination, and given the uids of their records.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from homecall.detectors.base import Detector
from homecall.detectors.common import prevalence_factor, sample_uids, with_uids
from homecall.detectors.http_flow_sizes import repeated_flow_sizes
from homecall.detectors.http_kinds import (
    KINDS,
    Anomaly,
    HttpAnomalyConfig,
    anomaly_score,
    large_thresholds,
    requests,
)
from homecall.findings import Finding, rank
from homecall.store.tables import Tables

__all__ = [
    "DETECTOR",
    "Anomaly",
    "HttpAnomalyConfig",
    "anomaly_score",
    "large_thresholds",
    "requests",
    "run",
]

log = logging.getLogger(__name__)


def run(tables: Tables, cfg: HttpAnomalyConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    req = requests(tables)
    fleet = tables.fleet_size
    anomalies: list[Anomaly] = []
    records: dict[str, ir.Table] = {}
    for kind in (*KINDS, repeated_flow_sizes):
        found, behind = kind(tables, req, cfg)
        # what cannot reach min_score even unshared and uncorroborated is dropped here
        kept = [a for a in found if _base_score(a, fleet, cfg) >= cfg.min_score]
        anomalies.extend(kept)
        if kept:
            records[kept[0].kind] = behind
    anomalies = _with_prevalence(tables, req, anomalies)
    log.info("http-anomaly: %d anomalies can reach min_score before context", len(anomalies))
    base = [_base_score(a, fleet, cfg) for a in anomalies]
    at_destination: dict[tuple[str, str | None], list[int]] = {}
    for i, a in enumerate(anomalies):
        at_destination.setdefault((a.src, a.dst), []).append(i)
    findings: list[tuple[Anomaly, Finding]] = []
    for i, a in enumerate(anomalies):
        if base[i] < cfg.min_score:
            continue
        others = [
            j
            for j in at_destination[(a.src, a.dst)]
            if anomalies[j].kind != a.kind and base[j] >= cfg.min_score
        ]
        corroboration = max((base[j] for j in others), default=0.0)
        kinds = sorted({anomalies[j].kind for j in others})
        findings.append((a, _finding(a, base[i], corroboration, kinds, fleet, cfg)))
    if not findings:
        return
    wanted = pa.table(
        {
            "src": [a.src for a, _ in findings],
            "kind": [a.kind for a, _ in findings],
            "key": [a.key for a, _ in findings],
        }
    )
    # each kind's records narrowed to the reported hosts first: cheap, and one query for all
    sources = sorted({a.src for a, _ in findings})
    reported = {a.kind for a, _ in findings}
    behind = [r.filter(r.src.isin(sources)) for kind, r in records.items() if kind in reported]
    uids = sample_uids(tables, ibis.union(*behind), ("src", "kind", "key"), wanted)
    yield from rank(with_uids(f, uids.get((a.src, a.kind, a.key), [])) for a, f in findings)


def _with_prevalence(tables: Tables, req: ir.Table, anomalies: list[Anomaly]) -> list[Anomaly]:
    """Fill `shared_hosts` (internal hosts talking to the destination) where not yet known,
    in one query over the requests to those destinations only."""
    wanted = sorted({str(a.dst) for a in anomalies if a.shared_hosts is None})
    if not wanted:
        return anomalies
    names = tables.memtable(pa.table({"destination": wanted}))
    near = req.semi_join(names, "destination")
    counts = near.group_by("destination").aggregate(hosts=near.src.nunique())
    hosts = {str(r["destination"]): int(r["hosts"]) for r in tables.to_pyarrow(counts).to_pylist()}
    return [
        a if a.shared_hosts is not None else dataclasses.replace(a, shared_hosts=hosts[str(a.dst)])
        for a in anomalies
    ]


def _shared(a: Anomaly, fleet: int, cfg: HttpAnomalyConfig) -> float:
    """The prevalence factor of the anomaly's destination or template (1 while unknown)."""
    return prevalence_factor(
        a.shared_hosts or 1, fleet, ratio=cfg.shared_ratio, damping=cfg.shared_damping,
        min_fleet=cfg.min_fleet,
    )  # fmt: skip


def _base_score(a: Anomaly, fleet: int, cfg: HttpAnomalyConfig) -> float:
    """The score before corroboration."""
    damping = float(np.prod([factor for factor, _ in a.damping]))
    return anomaly_score(a.strength, a.requests, _shared(a, fleet, cfg) * damping, 0.0, cfg)


def _finding(
    a: Anomaly,
    base: float,
    corroboration: float,
    kinds: list[str],
    fleet: int,
    cfg: HttpAnomalyConfig,
) -> Finding:
    score = base + (1.0 - base) * cfg.corroboration_weight * corroboration
    shared = _shared(a, fleet, cfg)
    lowered = [why for _, why in a.damping]
    if shared < 1.0:
        lowered.append(f"{a.shared_hosts} of {fleet} internal hosts use it")
    summary = f"{a.src} {a.reason}"
    if lowered:
        summary += "; " + "; ".join(lowered) + " (score lowered)"
    evidence = {"kind": a.kind, **a.evidence, "dst_hosts": a.shared_hosts, "fleet_hosts": fleet}
    if kinds:
        evidence["corroborating_kinds"] = kinds
        summary += "; also " + ", ".join(kinds) + " to the same destination"
    if lowered:
        evidence["score_before_context"] = round(
            anomaly_score(a.strength, a.requests, 1.0, 0.0, cfg), 4
        )
        evidence["context"] = "; ".join(lowered)
    return Finding(
        detector="http-anomaly",
        src=a.src,
        dst=a.dst,
        dst_port=a.dst_port,
        score=min(1.0, score),
        first_seen=a.first_seen,
        last_seen=a.last_seen,
        summary=summary + ".",
        evidence=evidence,
    )


DETECTOR = Detector(
    name="http-anomaly",
    requires=("http", "conn"),
    config=HttpAnomalyConfig,
    run=run,
    description="odd HTTP versions, no Host header, large or identical requests, one URI on "
    "many domains",
)
