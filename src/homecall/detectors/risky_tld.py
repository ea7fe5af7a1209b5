"""Risky TLDs in web traffic: an internal host using a site under a top-level domain with a high
share of abuse, weighted by how much it used it (docs/detection.md#risky-tld).

Names are the hosts of web requests (direct, proxied, proxy-logged) and the TLS SNI of
sessions (`common.named_contacts`), grouped per (internal host, registered domain). The TLD's
weight comes from `intel.lists.risky_tlds` (the list suspicious-domain uses for DNS) plus the
user's own file; it is a prior, so the score grows with connections and the days the site was
used, shrinks when many internal hosts use it, and stays at most "medium".
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ibis.expr.types as ir
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from homecall.detectors.base import Detector
from homecall.detectors.common import (
    fleet_share,
    lowered,
    most_common_port,
    named_contacts,
    prevalence_factor,
    sample_uids,
    utc,
    with_uids,
)
from homecall.findings import Finding, rank
from homecall.intel import lists
from homecall.store.tables import Tables

__all__ = ["DETECTOR", "RiskyTldConfig", "risky_tld_score", "run"]

log = logging.getLogger(__name__)

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskyTldConfig:
    """Settings under [detectors.risky-tld] in homecall.toml."""

    max_score: float = 0.7  # a TLD is a prior, not a proof: at most "medium"
    # Share of the score any listed TLD carries; the rest follows its weight, so .xyz (0.30)
    # counts 0.58, .top (0.49) 0.69 and .xin (1.0) 1.0: heavy use of a .xyz site still ranks.
    tld_floor: float = 0.4
    activity_floor: float = 0.3  # share of the score a single connection already carries
    connections_full: float = 500.0  # connections for the full repetition weight
    days_full: float = 5.0  # days with a connection for the full persistence weight
    days_weight: float = 0.3  # share of the repetition weight that is days rather than count
    shared_ratio: float = 0.1  # a domain 10 % of the fleet uses is business use...
    shared_damping: float = 0.9  # ...and its score is cut by up to 90 %
    min_fleet: int = 10  # prevalence means nothing in a fleet smaller than this
    min_score: float = 0.2  # below: a single visit to a .top or .xyz site, the web's long tail
    extra_risky_tlds_file: str = ""  # the user's TLDs, "tld" or "tld<TAB>weight" per line
    extra_tld_weight: float = 0.35  # weight of a user TLD given without one (.xyz: 0.30)


def risky_tld_score(
    tld_weight: npt.ArrayLike,
    connections: npt.ArrayLike,
    days: npt.ArrayLike,
    shared: npt.ArrayLike,
    cfg: RiskyTldConfig,
) -> Floats:
    """max_score x (tld_floor + (1 - tld_floor) x weight) x (activity_floor + (1 -
    activity_floor) x repetition) x prevalence, elementwise; repetition is 0.7 w(connections)
    + 0.3 min(1, days / days_full) (days_weight), w as `common.scaled_log`."""
    weight = np.clip(np.asarray(tld_weight, dtype=np.float64), 0.0, 1.0)
    tld = cfg.tld_floor + (1.0 - cfg.tld_floor) * weight
    conns = np.maximum(np.asarray(connections, dtype=np.float64), 0.0)
    used = np.minimum(1.0, np.log10(1.0 + conns) / np.log10(1.0 + cfg.connections_full))
    spread = np.minimum(1.0, np.asarray(days, dtype=np.float64) / cfg.days_full)
    repetition = (1.0 - cfg.days_weight) * used + cfg.days_weight * spread
    use = cfg.activity_floor + (1.0 - cfg.activity_floor) * repetition
    score: Floats = cfg.max_score * tld * use * np.asarray(shared, dtype=np.float64)
    return score


def _shared(hosts: npt.NDArray[np.int64], fleet: int, cfg: RiskyTldConfig) -> Floats:
    """The prevalence factor of each row's domain (`common.prevalence_factor`)."""
    values, inverse = np.unique(hosts, return_inverse=True)
    factors = [
        prevalence_factor(
            int(h),
            fleet,
            ratio=cfg.shared_ratio,
            damping=cfg.shared_damping,
            min_fleet=cfg.min_fleet,
        )
        for h in values
    ]
    shared: Floats = np.asarray(factors, dtype=np.float64)[inverse]
    return shared


def _user_tlds(cfg: RiskyTldConfig) -> Mapping[str, float] | None:
    if not cfg.extra_risky_tlds_file:
        return None
    path = Path(cfg.extra_risky_tlds_file)
    key = "detectors.risky-tld.extra_risky_tlds_file"
    return lists.read_tld_file(path, key, cfg.extra_tld_weight)


def _classify(
    names: list[str], user: Mapping[str, float] | None
) -> tuple[pa.Table, dict[str, lists.Category]]:
    """(name -> domain for names under a risky TLD, domain -> its TLD category)."""
    kept_names, kept_domains = [], []
    found: dict[str, lists.Category] = {}
    for name in names:
        risky = [c for c in lists.categories(name, extra_tlds=user) if c.name == "risky-tld"]
        domain = lists.registrable(name) if risky else None
        if domain is None:
            continue
        kept_names.append(name)
        kept_domains.append(domain)
        best = found.get(domain)
        if best is None or (risky[0].weight, risky[0].matched) > (best.weight, best.matched):
            found[domain] = risky[0]
    table = pa.table(
        {"name": pa.array(kept_names, pa.string()), "domain": pa.array(kept_domains, pa.string())}
    )
    return table, found


def _candidate_names(contacts: ir.Table, user: Mapping[str, float] | None) -> ir.Table:
    """Distinct names whose last label is a listed TLD (or ends a user suffix)."""
    last_labels = {*lists.risky_tlds(), *(s.rsplit(".", 1)[-1] for s in (user or {}))}
    tld = contacts.name.re_extract(r"\.([a-z0-9-]+)\.?$", 1)
    named = contacts.filter(tld.isin(sorted(last_labels)))
    return named.select("name").distinct().order_by("name")


def run(tables: Tables, cfg: RiskyTldConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    user = _user_tlds(cfg)
    contacts = named_contacts(tables)
    names = tables.to_pyarrow(_candidate_names(contacts, user))
    lookup, categories = _classify(names.column("name").to_pylist(), user)
    if not categories:
        return
    keyed = contacts.join(tables.memtable(lookup), "name")
    keys = ["src", "domain"]
    pairs = keyed.group_by(keys).aggregate(
        connections=keyed.uid.nunique() + keyed.uid.isnull().cast("int64").sum(),
        records=keyed.count(),
        days=keyed.ts.date().nunique(),
        distinct_names=keyed.name.nunique(),
        first_name=keyed.name.min(),
        last_name=keyed.name.max(),
        first_seen=keyed.ts.min(),
        last_seen=keyed.ts.max(),
    )
    hosts = keyed.group_by("domain").aggregate(dst_hosts=keyed.src.nunique())
    pairs = pairs.join(hosts, "domain").join(most_common_port(keyed, keys), keys)
    fleet = tables.fleet_size
    found: list[Finding] = []
    for batch in tables.batches(pairs):  # scored in NumPy: most pairs are one-off visits
        weights = [categories[d].weight for d in batch.column("domain").to_pylist()]
        shared = _shared(batch.column("dst_hosts").to_numpy(), fleet, cfg)
        connections = batch.column("connections").to_numpy()
        scores = risky_tld_score(weights, connections, batch.column("days").to_numpy(), shared, cfg)
        keep = np.flatnonzero(scores >= cfg.min_score)
        rows = batch.take(pa.array(keep, pa.int64())).to_pylist()
        for row, score, factor in zip(rows, scores[keep], shared[keep], strict=True):
            tld = categories[row["domain"]]
            found.append(_finding(row, tld, float(score), float(factor), fleet))
    found = rank(found)
    if not found:
        return
    wanted = pa.table({"src": [f.src for f in found], "domain": [f.dst for f in found]})
    uids = sample_uids(tables, keyed, ("src", "domain"), wanted)
    for f in found:
        yield with_uids(f, uids.get((f.src, f.dst or ""), []))


def _finding(
    row: dict[str, Any], tld: lists.Category, score: float, shared: float, fleet: int
) -> Finding:
    connections, days, hosts = int(row["connections"]), int(row["days"]), int(row["dst_hosts"])
    src, domain, port = str(row["src"]), str(row["domain"]), row["dst_port"]
    evidence: dict[str, Any] = {
        "tld": tld.matched,
        "tld_weight": round(tld.weight, 3),
        "list_source": tld.source,
        "connections": connections,
        "records": int(row["records"]),
        "days_active": days,
        "distinct_names": int(row["distinct_names"]),
        "example_names": sorted({row["first_name"], row["last_name"]}),
        "dst_hosts": hosts,
        "fleet_hosts": fleet,
    }
    times = "once" if connections == 1 else f"{connections} times"
    over = "" if days <= 1 else f" on {days} days"
    summary = (
        f"{src} used the web site {domain} {times}{over}: a name in the risky TLD "
        f".{tld.matched} (weight {tld.weight:.2f}, {tld.source})"
    )
    summary = lowered(summary, evidence, fleet_share(evidence, shared, hosts, fleet))
    return Finding(
        detector="risky-tld",
        src=src,
        dst=domain,
        dst_port=int(port) if port is not None else None,
        score=score,
        first_seen=utc(row["first_seen"]),
        last_seen=utc(row["last_seen"]),
        summary=summary + ".",
        evidence=evidence,
    )


DETECTOR = Detector(
    name="risky-tld",
    requires=("http", "tls"),
    config=RiskyTldConfig,
    run=run,
    description="web traffic to sites under top-level domains with a high share of abuse",
)
