"""DGA: hosts that look up many algorithmically generated names, most of which do not exist.

One generated-looking name means little: benign DNS has random-looking registered names too,
about one in a thousand at the classifier's strict threshold. So the unit is the host. For each
internal host the detector counts the distinct registered domains it looked up, how many of them
the classifier (homecall.intel.dga) calls generated, and compares that count with what the
false-positive rate alone would give (a Poisson tail). NXDOMAIN answers add the classic DGA
signature: generated names that fail, and bursts of many distinct failed names in minutes.

Three signals, each 0..1, combined as independent evidence: score = 1 - (1 - 0.7 g)(1 - 0.6 f)
(1 - 0.5 b), with g the generated-name confidence, f the failed generated names and b the
NXDOMAIN burst (docs/detection.md). A host whose generated names all resolve (a pre-registered
DGA) reaches "medium" at most, and so does a burst of failures whose names look ordinary (a
dictionary DGA); together they reach "critical".
"""

from __future__ import annotations

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
import pyarrow.compute as pc

from homecall.detectors.base import Detector
from homecall.detectors.common import sample_uids, scaled_log, utc, with_uids
from homecall.findings import Finding, rank
from homecall.intel.dga import DgaModel, dga_domain, load_model
from homecall.store.tables import Tables

__all__ = ["DETECTOR", "DgaConfig", "burst_weight", "poisson_tail", "run"]

log = logging.getLogger(__name__)
_NXDOMAIN = 3
_PTR = 12
_LOCAL_SUFFIXES = ("local", "lan", "home", "internal", "localdomain", "arpa", "corp", "intranet")


@dataclass(frozen=True, slots=True, kw_only=True)
class DgaConfig:
    """Settings under [detectors.dga] in homecall.toml."""

    strict_fpr: float = 1e-3  # the model threshold that counts a name as generated (1e-3 or 1e-2);
    # a name that failed (NXDOMAIN) counts at the looser 1e-2 threshold
    assumed_fpr: float = 2e-3  # share of benign domains expected above it on real traffic
    p_value_full: float = 1e-8  # a Poisson tail this small gives full generated-name confidence
    nx_full: float = 20.0  # distinct failed generated names that give full weight
    burst_window_s: float = 300.0  # NXDOMAIN bursts: distinct failed domains within this window
    burst_min: int = 10  # fewer distinct failed domains in one window are no burst
    burst_full: float = 50.0  # distinct failed domains in one window that give full weight
    shared_fraction: float = 0.2  # names looked up by this share of the fleet are not candidates
    internal_domains: tuple[str, ...] = ()  # your own zones (suffixes), never candidates
    min_score: float = 0.25
    max_examples: int = 10


@dataclass(frozen=True, slots=True)
class _Names:
    """One row per (host, queried name): the aggregated lookups."""

    host: npt.NDArray[np.int64]  # index into hosts
    domain: npt.NDArray[np.int64]  # index into domains
    queries: npt.NDArray[np.int64]
    nx: npt.NDArray[np.int64]
    resolved: npt.NDArray[np.bool_]
    first_us: npt.NDArray[np.int64]
    nx_first_us: npt.NDArray[np.int64]  # first NXDOMAIN of the name (int64 max when none)
    last_us: npt.NDArray[np.int64]
    query: list[str]


def poisson_tail(k: int, mean: float) -> float:
    """P(X >= k) for X ~ Poisson(mean): the chance of k or more false positives."""
    if k <= 0:
        return 1.0
    term = math.exp(-mean)
    below = term
    for i in range(1, k):
        term *= mean / i
        below += term
    tail = 1.0 - below
    if tail > 1e-12:
        return tail
    # for tiny tails sum upward from k in log space (1 - below loses every digit)
    log_term = -mean + k * math.log(mean) - math.lgamma(k + 1)
    total, i = 0.0, k
    while True:
        value = math.exp(log_term)
        total += value
        if value < total * 1e-12 or i > k + 10_000:
            return total
        i += 1
        log_term += math.log(mean / i)


def burst_weight(burst: int, cfg: DgaConfig) -> float:
    """0 below `burst_min` distinct failures in a window, rising on a log scale to 1 at
    `burst_full` (a typo or a search-domain append fails a few names, a DGA fails dozens)."""
    if burst < cfg.burst_min:
        return 0.0
    floor = cfg.burst_min / 2
    return min(1.0, math.log10(burst / floor) / math.log10(cfg.burst_full / floor))


def _lookups(tables: Tables) -> ir.Table:
    dns = tables.oriented("dns")
    dns = dns.filter(dns.query.notnull() & (dns.qtype.fill_null(0) != _PTR))
    failed = dns.rcode == _NXDOMAIN
    return dns.group_by(["src", "query"]).aggregate(
        queries=dns.count(),
        nx=failed.fill_null(False).cast("int64").sum(),
        resolved=(dns.answers.length().fill_null(0) > 0).any(),
        first_seen=dns.ts.min(),
        nx_first=failed.ifelse(dns.ts, ibis.null("timestamp")).min(),
        last_seen=dns.ts.max(),
    )


def _micros(column: pa.ChunkedArray) -> npt.NDArray[np.int64]:
    values = pc.cast(column, pa.timestamp("us", tz="UTC")).cast(pa.int64())
    filled = pc.fill_null(values, np.iinfo(np.int64).max)
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=np.int64)


def _candidate(name: str, internal: tuple[str, ...]) -> str | None:
    host = name.strip().rstrip(".").lower()
    if "." not in host:
        return None
    top = host.rsplit(".", 1)[1]
    if top in _LOCAL_SUFFIXES or any(host == s or host.endswith("." + s) for s in internal):
        return None
    return dga_domain(host)


def _collect(tables: Tables, cfg: DgaConfig) -> tuple[_Names, list[str], list[str]] | None:
    batches = list(tables.batches(_lookups(tables)))
    if not batches:
        return None
    table = pa.Table.from_batches(batches)
    queries = table.column("query").to_pylist()
    internal = tuple(s.strip(".").lower() for s in cfg.internal_domains)
    cache: dict[str, str | None] = {}
    domain_of = []
    for q in queries:
        if q not in cache:
            cache[q] = _candidate(q, internal)
        domain_of.append(cache[q])
    keep = np.array([d is not None for d in domain_of], dtype=bool)
    if not keep.any():
        return None
    hosts, host_idx = np.unique(
        np.array(table.column("src").to_pylist(), dtype=object)[keep].astype(str),
        return_inverse=True,
    )
    domains, domain_idx = np.unique(
        np.array([d for d in domain_of if d is not None], dtype=str), return_inverse=True
    )
    names = _Names(
        host=host_idx.astype(np.int64),
        domain=domain_idx.astype(np.int64),
        queries=table.column("queries").to_numpy()[keep].astype(np.int64),
        nx=np.asarray(pc.fill_null(table.column("nx"), 0).to_numpy(zero_copy_only=False))[keep],
        resolved=np.asarray(
            pc.fill_null(table.column("resolved"), False).to_numpy(zero_copy_only=False)
        )[keep],
        first_us=_micros(table.column("first_seen"))[keep],
        nx_first_us=_micros(table.column("nx_first"))[keep],
        last_us=_micros(table.column("last_seen"))[keep],
        query=[q for q, k in zip(queries, keep, strict=True) if k],
    )
    return names, [str(h) for h in hosts], [str(d) for d in domains]


def _burst(times_us: npt.NDArray[np.int64], window_s: float) -> tuple[int, int]:
    """(most distinct failures within any window, start of that window in µs)."""
    if len(times_us) == 0:
        return 0, 0
    t = np.sort(times_us)
    ends = np.searchsorted(t, t + int(window_s * 1e6), side="right")
    counts = ends - np.arange(len(t))
    best = int(np.argmax(counts))
    return int(counts[best]), int(t[best])


def run(tables: Tables, cfg: DgaConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    collected = _collect(tables, cfg)
    if collected is None:
        return
    names, hosts, domains = collected
    model = load_model()
    probs = model.predict_proba(domains)
    threshold = _threshold(model, cfg)
    generated = probs >= threshold
    loose = probs >= float(model.thresholds[1])  # for names that failed: the looser FPR 1e-2
    fleet = max(tables.fleet_size, 1)
    pairs = np.unique(np.column_stack([names.domain, names.host]), axis=0)
    hosts_per_domain = np.bincount(pairs[:, 0], minlength=len(domains))
    shared = (fleet >= 5) & (hosts_per_domain >= cfg.shared_fraction * fleet)
    candidate = generated & ~shared
    failed_candidate = (generated | loose) & ~shared
    found = []
    order = np.argsort(names.host, kind="stable")
    bounds = np.searchsorted(names.host[order], np.arange(len(hosts) + 1))
    for h, host in enumerate(hosts):
        rows = order[bounds[h] : bounds[h + 1]]
        finding = _host_finding(
            host, rows, names, domains, probs, (candidate, failed_candidate), threshold, cfg
        )
        if finding is not None:
            found.append(finding)
    found = rank(found)
    if not found:
        return
    dga_rows = [
        (hosts[names.host[i]], names.query[i])
        for i in range(len(names.query))
        if candidate[names.domain[i]] or (names.nx[i] > 0 and failed_candidate[names.domain[i]])
    ]
    wanted = pa.table({"src": [r[0] for r in dga_rows], "query": [r[1] for r in dga_rows]})
    dns = tables.oriented("dns")
    uids = sample_uids(tables, dns.select("src", "query", "ts", "uid"), ("src", "query"), wanted)
    by_host: dict[str, list[str]] = {}
    for (src, _), values in sorted(uids.items()):
        by_host.setdefault(src, []).extend(values)
    for f in found:
        yield with_uids(f, sorted(set(by_host.get(f.src, [])))[:20])


def _threshold(model: DgaModel, cfg: DgaConfig) -> float:
    return float(model.thresholds[0] if cfg.strict_fpr <= 1e-3 else model.thresholds[1])


def _host_finding(
    host: str,
    rows: npt.NDArray[np.int64],
    names: _Names,
    domains: list[str],
    probs: npt.NDArray[np.float64],
    candidates: tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]],
    threshold: float,
    cfg: DgaConfig,
) -> Finding | None:
    candidate, failed_candidate = candidates
    host_domains = np.unique(names.domain[rows])
    dga = host_domains[candidate[host_domains]]
    failed_rows = rows[names.nx[rows] > 0]
    failed_domains = np.unique(names.domain[failed_rows])
    failed_dga = failed_domains[failed_candidate[failed_domains]]
    if len(dga) == 0 and len(failed_domains) < 10:
        return None
    expected = max(len(host_domains) * cfg.assumed_fpr, 0.05)
    p_value = poisson_tail(len(dga), expected)
    s_dga = min(1.0, -math.log10(max(p_value, 1e-300)) / -math.log10(cfg.p_value_full))
    s_nx = scaled_log(len(failed_dga), cfg.nx_full)
    first_failure: dict[int, int] = {}
    for i in failed_rows:
        d = int(names.domain[i])
        first_failure[d] = min(
            first_failure.get(d, int(names.nx_first_us[i])), int(names.nx_first_us[i])
        )
    burst, burst_start = _burst(
        np.fromiter(first_failure.values(), np.int64, len(first_failure)), cfg.burst_window_s
    )
    s_burst = burst_weight(burst, cfg)
    score = 1.0 - (1.0 - 0.7 * s_dga) * (1.0 - 0.6 * s_nx) * (1.0 - 0.5 * s_burst)
    if score < cfg.min_score:
        return None
    queries = int(names.queries[rows].sum())
    nx_queries = int(names.nx[rows].sum())
    resolved = sorted(
        {
            int(names.domain[i])
            for i in rows
            if failed_candidate[names.domain[i]] and names.resolved[i] and names.nx[i] == 0
        },
        key=lambda d: (-int(names.queries[rows][names.domain[rows] == d].sum()), domains[d]),
    )
    examples = sorted(dga.tolist(), key=lambda d: (-probs[d], domains[d]))[: cfg.max_examples]
    dst = domains[resolved[0]] if resolved else None
    evidence: dict[str, Any] = {
        "queries": queries,
        "distinct_domains": len(host_domains),
        "dga_domains": len(dga),
        "expected_false_dga": round(expected, 2),
        "p_value": p_value,
        "model_threshold": round(threshold, 4),
        "nxdomain_queries": nx_queries,
        "nxdomain_ratio": round(nx_queries / queries, 4) if queries else 0.0,
        "nxdomain_domains": len(failed_domains),
        "dga_nxdomains": len(failed_dga),
        "burst_nxdomains": burst,
        "burst_window_s": cfg.burst_window_s,
        "examples": [domains[d] for d in examples],
        "example_probabilities": [round(float(probs[d]), 4) for d in examples],
        "resolved_dga": [domains[d] for d in resolved[:5]],
    }
    if burst:
        evidence["burst_start"] = _iso(burst_start)
    reasons = []
    if len(dga):
        reasons.append(f"{len(dga)} generated-looking domains of {len(host_domains)} looked up")
    if len(failed_dga):
        reasons.append(f"{len(failed_dga)} generated-looking domains failed (NXDOMAIN)")
    if burst >= cfg.burst_min:
        reasons.append(
            f"{burst} distinct domains failed (NXDOMAIN) within {cfg.burst_window_s:.0f} s"
        )
    reached = f" that reached {dst}" if dst else ""
    summary = f"{host} looks like a DGA client{reached}: {'; '.join(reasons)}."
    return Finding(
        detector="dga",
        src=host,
        dst=dst,
        dst_port=None,
        score=min(1.0, score),
        first_seen=_ts(int(names.first_us[rows].min())),
        last_seen=_ts(int(names.last_us[rows].max())),
        summary=summary,
        evidence=evidence,
    )


def _ts(us: int) -> datetime:
    return utc(datetime.fromtimestamp(us / 1e6, tz=UTC))


def _iso(us: int) -> str:
    return _ts(us).isoformat().replace("+00:00", "Z")


DETECTOR = Detector(
    name="dga",
    requires=("dns",),
    config=DgaConfig,
    run=run,
    description="hosts looking up many generated domain names, with NXDOMAIN failures and bursts",
)
