"""Rare destinations: remote domains, IPs, user agents and TLS client fingerprints only one
internal host uses (docs/detection.md#rare-destination).

Domains are grouped by registered domain (eTLD+1, from the TLS SNI, the HTTP Host and the host
requested through a proxy or in a proxy's log), so a CDN's per-customer names do not look rare.
IPs count only when no name was seen for them: a direct-to-IP contact. User agents (versions
masked) and JA3/JA4 fingerprints are destination-like artefacts of the client: one only this
host uses is reported as rare, at most "low"; why an agent is suspicious is user-agent's job.
Rarity alone is weak evidence; the score grows with connections and bytes and stays at most
"medium". With history in the store, a destination first contacted in the window keeps its
score and one the store saw days before is lowered (first-seen dates in the evidence).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from homecall.detectors import web
from homecall.detectors.base import Detector
from homecall.detectors.common import (
    connection_bytes,
    named_contacts,
    sample_uids,
    scaled_log,
    utc,
    with_uids,
)
from homecall.findings import Finding, rank
from homecall.intel import user_agents
from homecall.intel.domains import registered_domain, registered_domains
from homecall.store.tables import ENDPOINT_TABLES, Tables

__all__ = [
    "DETECTOR",
    "RareDestinationConfig",
    "agent_requests",
    "and_others",
    "contacts",
    "domain_of",
    "familiarity",
    "rarity_score",
    "run",
    "under_domains",
]

log = logging.getLogger(__name__)

_DAY_S = 86_400.0
_SUMMARY_AGENT_CHARS = 80  # agents are hostile data of any length: summaries quote a prefix


@dataclass(frozen=True, slots=True, kw_only=True)
class RareDestinationConfig:
    """Settings under [detectors.rare-destination] in homecall.toml."""

    max_hosts: int = 1  # "rare" = contacted by at most this many internal hosts in the window
    min_fleet: int = 5  # with fewer internal hosts, everything is rare and rarity says nothing
    max_score: float = 0.6  # rarity alone is at most "medium" (findings.severity_for)
    conns_full: float = 1000.0  # this many connections give the full connection weight
    bytes_full: float = 1e8  # this many bytes (100 MB) give the full volume weight
    min_score: float = 0.3  # below: one-off visits of the long tail, not worth an analyst's time
    artifact_max_score: float = 0.45  # a rare agent or TLS fingerprint: at most "low" (apps
    # and versions make many clients unique; user-agent and tls-anomaly say why one is bad)
    benign_damping: float = 0.5  # a rare agent of a listed OS component, updater, AV or app
    seen_damping: float = 0.5  # a destination the store saw before the window loses up to half
    seen_full_days: float = 7.0  # ...all of it when first seen a week or more before


def rarity_score(
    conns: int, total_bytes: int, cfg: RareDestinationConfig, *, ceiling: float | None = None
) -> float:
    """0..ceiling (max_score by default): a base for being rare, plus weights for connections
    and volume."""
    weight = (
        0.2
        + 0.5 * scaled_log(conns, cfg.conns_full)
        + 0.3 * scaled_log(total_bytes, cfg.bytes_full)
    )
    return (cfg.max_score if ceiling is None else ceiling) * weight


def familiarity(seen_before_s: float | None, cfg: RareDestinationConfig) -> float:
    """1 for a destination new to the store (or no history); down to 1 - seen_damping for one
    first seen seen_full_days or more before the window's first contact."""
    if seen_before_s is None or seen_before_s <= 0:
        return 1.0
    return 1.0 - cfg.seen_damping * min(1.0, seen_before_s / _DAY_S / cfg.seen_full_days)


def and_others(count: int) -> str:
    """ " and 3 other names" for a summary; "" for none."""
    return f" and {count} other name{'s' if count > 1 else ''}" if count > 0 else ""


def domain_of(name: str) -> str:
    """The registered domain of a requested name; the name itself for addresses and names
    without one (single labels, bare public suffixes)."""
    return registered_domain(name) or name


def under_domains(tables: Tables, t: ir.Table, column: str, domains: Collection[str]) -> ir.Table:
    """Rows of `t` whose `column` equals or ends in "." + one of `domains`, with `domain`: the
    longest domain matched. One scan of `t`, backend-neutral: for each label count n among
    the domains, the name's last n labels are joined to the domains of n labels."""
    by_labels: dict[int, list[str]] = defaultdict(list)
    for domain in sorted(set(domains)):
        by_labels[domain.count(".") + 1].append(domain)
    if not by_labels:
        return t.filter(ibis.literal(False)).mutate(domain=ibis.null(str))
    name = t[column].fill_null("")
    counts = sorted(by_labels, reverse=True)
    joined = t.mutate(
        **{
            f"_tail{n}": name.re_extract(r"([^.]+" + r"\.[^.]+" * (n - 1) + r")$", 1)
            for n in counts
        }
    )
    for n in counts:
        listed = tables.memtable(pa.table({f"_domain{n}": pa.array(by_labels[n], pa.string())}))
        joined = joined.left_join(listed, joined[f"_tail{n}"] == listed[f"_domain{n}"])
    domain = ibis.coalesce(*(joined[f"_domain{n}"] for n in counts))
    helpers = [f"{prefix}{n}" for n in counts for prefix in ("_tail", "_domain")]
    matched = joined.mutate(domain=domain).drop(*helpers)
    return matched.filter(matched.domain.notnull())


def contacts(tables: Tables) -> tuple[ir.Table, ir.Table]:
    """(named, direct): outbound contacts with a domain (direct, proxied or proxy-logged), and
    conn rows to IPs never named."""
    conn = tables.oriented("conn")
    outbound = conn.filter(conn.direction == "outbound")
    sizes = outbound.select("uid", bytes=connection_bytes(outbound))
    http = tables.oriented("http")
    logged = http.filter(http.proxy.notnull())  # a proxy's own line: its wire bytes
    sizes = ibis.union(
        sizes,
        logged.select(
            "uid", bytes=logged.request_bytes.fill_null(0) + logged.response_bytes.fill_null(0)
        ),
    )
    named = named_contacts(tables)
    names = tables.to_pyarrow(named.select("name").distinct())
    lookup = pa.table(
        {"name": names.column("name"), "domain": registered_domains(names.column("name"))}
    )
    domains = tables.memtable(lookup.filter(pa.compute.is_valid(lookup.column("domain"))))
    named = named.join(domains, "name").left_join(sizes, "uid").drop("uid_right")
    named_ips = named.select(ip=named.dst).distinct()
    direct = outbound.anti_join(named_ips, outbound.dst == named_ips.ip)
    direct = direct.mutate(
        domain=ibis.null(str),
        bytes=connection_bytes(direct),
        via_proxy=ibis.literal(False),
    )
    return named, direct


def agent_requests(tables: Tables) -> ir.Table:
    """Web requests (`web.requests`) with `agent` (user_agents.NO_AGENT when absent, empty or
    "-"), `target` (the requested name without a trailing dot, else the address asked) and
    `bytes` (request and response)."""
    r = web.requests(tables)
    agent = r.user_agent.fill_null(user_agents.NO_AGENT).strip()
    return r.mutate(
        agent=(agent == "-").ifelse(user_agents.NO_AGENT, agent),
        target=r.host.re_replace(r"\.$", "").nullif("").fill_null(r.dst),
        bytes=r.request_bytes.fill_null(0) + r.response_bytes.fill_null(0),
    )


def _agent_artifacts(tables: Tables) -> ir.Table:
    r = agent_requests(tables)
    r = r.filter(r.agent != user_agents.NO_AGENT)
    return r.select(
        "ts",
        "uid",
        "src",
        "target",
        "bytes",
        dst_port=r.port,
        key=r.agent.re_replace(user_agents.SHAPE_PATTERN, user_agents.SHAPE_MASK),
        value=r.agent,
    )


def _fingerprint_artifacts(tables: Tables) -> ir.Table:
    s = web.tls_sessions(tables)
    tunnels = web.proxy_tunnels(tables)
    s = s.left_join(tunnels, "uid").drop("uid_right", "host")
    conn = tables.oriented("conn")
    sizes = conn.select("uid", bytes=connection_bytes(conn))
    sizes = sizes.group_by("uid").aggregate(bytes=sizes.bytes.max())
    s = s.left_join(sizes, "uid").drop("uid_right")
    ja4, ja3 = s.ja4.nullif(""), s.ja3.nullif("")
    s = s.filter(ja4.notnull() | ja3.notnull())
    return s.select(
        "ts",
        "uid",
        "src",
        "bytes",
        target=s.name.fill_null(s.dst),
        dst_port=s.port.fill_null(s.dst_port),
        key=ja4.fill_null(ja3),
        value=ja4.notnull().ifelse("ja4", "ja3"),
    )


def _rare(records: ir.Table, key: str, cfg: RareDestinationConfig) -> ir.Table:
    """Per (src, rare key, port): rows, connections, bytes, times and an address (not a
    proxy's) of the destination; `_merged` folds the ports in Python (one pass, not two)."""
    hosts = records.group_by(key).aggregate(hosts=records.src.nunique())
    kept = records.semi_join(hosts.filter(hosts.hosts <= cfg.max_hosts), key)
    keys = ["src", key, "dst_port"]
    return kept.group_by(keys).aggregate(
        rows=kept.count(),
        conns=kept.uid.nunique(),
        total_bytes=kept.bytes.sum(),
        first_seen=kept.ts.min(),
        last_seen=kept.ts.max(),
        example=kept.dst.max(where=~kept.via_proxy),
    )


def _merged(rows: Iterable[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of `_rare` (one per port) folded into one per `keys`: sums, first and last, the
    greatest example, and the port with the most rows (ties: the higher, as
    common.most_common_port). A connection has one port, so connections add up."""
    folded: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        group = tuple(row[k] for k in keys)
        into = folded.get(group)
        if into is None:
            folded[group] = dict(row)
            continue
        into["conns"] += row["conns"]
        if row["total_bytes"] is not None:
            into["total_bytes"] = (into["total_bytes"] or 0) + row["total_bytes"]
        into["first_seen"] = min(into["first_seen"], row["first_seen"])
        into["last_seen"] = max(into["last_seen"], row["last_seen"])
        for name in ("example", "value"):
            if row.get(name) is not None and (into.get(name) is None or row[name] > into[name]):
                into[name] = row[name]
        if (row["rows"], row["dst_port"] or 0) > (into["rows"], into["dst_port"] or 0):
            into["dst_port"] = row["dst_port"]
        into["rows"] = max(into["rows"], row["rows"])
        into["requests"] = into.get("requests", 0) + row.get("requests", 0)
    return list(folded.values())


def _rare_artifacts(records: ir.Table, cfg: RareDestinationConfig) -> ir.Table:
    """Per (src, rare key, target, port): requests, connections, bytes, times."""
    hosts = records.group_by("key").aggregate(hosts=records.src.nunique())
    kept = records.semi_join(hosts.filter(hosts.hosts <= cfg.max_hosts), "key")
    keys = ["src", "key", "target", "dst_port"]
    return kept.group_by(keys).aggregate(
        rows=kept.count(),
        requests=kept.count(),
        conns=kept.uid.nunique(),
        total_bytes=kept.bytes.sum(),
        first_seen=kept.ts.min(),
        last_seen=kept.ts.max(),
        value=kept.value.max(),
    )


def _has_history(tables: Tables) -> bool:
    """Whether the store holds records of the window's hosts from before the window."""
    if tables.window.start_us is None:
        return False
    before = ibis.union(*(tables.history(name).select("ts") for name in ENDPOINT_TABLES))
    return bool(tables.to_pyarrow(before.aggregate(n=before.count())).column("n")[0].as_py())


def _first_seen_before(tables: Tables, kind: str, keys: Collection[str]) -> dict[str, datetime]:
    """Key -> the first record before the window in which any internal host used it."""
    if not keys:
        return {}
    past = tables.past()
    if kind == "domain":
        names = named_contacts(past)
        names = names.group_by("name").aggregate(ts=names.ts.min())  # each name computed once
        seen = under_domains(tables, names, "name", keys).select("ts", key="domain")
    elif kind == "ip":
        parts = [tables.history(n).select("ts", key="dst") for n in ("conn", "http", "tls")]
        seen = ibis.union(*parts)
        seen = seen.filter(seen.key.isin(sorted(keys)))
    elif kind == "user_agent":
        seen = _agent_artifacts(past).select("ts", "key")
        seen = seen.filter(seen.key.isin(sorted(keys)))
    else:
        seen = _fingerprint_artifacts(past).select("ts", "key")
        seen = seen.filter(seen.key.isin(sorted(keys)))
    first = seen.group_by("key").aggregate(first=seen.ts.min()).order_by("key")
    return {
        row["key"]: utc(row["first"])
        for batch in tables.batches(first)
        for row in batch.to_pylist()
    }


@dataclass(frozen=True, slots=True)
class _Seen:
    """When the store first saw a destination, and how that changes the score."""

    first_seen_store: datetime
    new_in_window: bool
    seen_before_s: float | None  # before the window's first contact; None when new

    def evidence(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "first_seen_store": _iso(self.first_seen_store),
            "new_in_window": self.new_in_window,
        }
        if self.seen_before_s is not None:
            found["seen_before_days"] = round(self.seen_before_s / _DAY_S, 2)
        return found


def _seen(
    tables: Tables, kind: str, window_first: dict[str, datetime], history: bool
) -> dict[str, _Seen]:
    before = _first_seen_before(tables, kind, window_first.keys()) if history else {}
    found = {}
    for key, first in window_first.items():
        earlier = before.get(key)
        if earlier is None:
            found[key] = _Seen(first, history, None)
        else:
            found[key] = _Seen(earlier, False, (first - earlier).total_seconds())
    return found


def run(tables: Tables, cfg: RareDestinationConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    fleet = tables.fleet_size
    if fleet < cfg.min_fleet:
        log.info(
            "rare-destination: %d internal hosts, fewer than %d; skipped", fleet, cfg.min_fleet
        )
        return
    history = _has_history(tables)
    named, direct = contacts(tables)
    for kind, records, key in (("domain", named, "domain"), ("ip", direct, "dst")):
        ported = [r for b in tables.batches(_rare(records, key, cfg)) for r in b.to_pylist()]
        rows = [r for r in _merged(ported, ("src", key)) if _base_score(r, cfg) >= cfg.min_score]
        seen = _seen(tables, kind, _earliest((str(r[key]), r["first_seen"]) for r in rows), history)
        found = rank(
            f
            for row in rows
            if (f := _finding(kind, key, row, fleet, seen[str(row[key])], cfg)) is not None
        )
        yield from _with_uids(tables, records, key, [(f, f.dst or "") for f in found])
    for kind, records in (
        ("user_agent", _agent_artifacts(tables)),
        ("tls_fingerprint", _fingerprint_artifacts(tables)),
    ):
        yield from _artifacts(tables, kind, records, fleet, history, cfg)


def _base_score(row: dict[str, Any], cfg: RareDestinationConfig) -> float:
    return rarity_score(int(row["conns"]), int(row["total_bytes"] or 0), cfg)


def _earliest(pairs: Iterable[tuple[str, Any]]) -> dict[str, datetime]:
    first: dict[str, datetime] = {}
    for key, ts in pairs:
        when = utc(ts)
        first[key] = min(first.get(key, when), when)
    return first


def _with_uids(
    tables: Tables, records: ir.Table, key: str, found: list[tuple[Finding, str]]
) -> Iterator[Finding]:
    """Each finding with the uids of its (src, key value) records, in the order given."""
    if not found:
        return
    wanted = pa.table({"src": [f.src for f, _ in found], key: [k for _, k in found]})
    uids = sample_uids(tables, records, ("src", key), wanted)
    for f, value in found:
        yield with_uids(f, uids.get((f.src, value), []))


def _artifacts(
    tables: Tables,
    kind: str,
    records: ir.Table,
    fleet: int,
    history: bool,
    cfg: RareDestinationConfig,
) -> Iterator[Finding]:
    """Rare user agents (kind "user_agent") or TLS fingerprints ("tls_fingerprint")."""
    clients = tables.to_pyarrow(records.aggregate(n=records.src.nunique())).column("n")[0]
    if (clients.as_py() or 0) < cfg.min_fleet:
        return
    ported = [r for b in tables.batches(_rare_artifacts(records, cfg)) for r in b.to_pylist()]
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in _merged(ported, ("src", "key", "target")):
        grouped[(row["src"], row["key"])].append(row)
    hosts: dict[str, int] = defaultdict(int)
    for _, key in grouped:
        hosts[key] += 1
    chosen = {
        pair: rows
        for pair, rows in grouped.items()
        if _artifact_score(kind, rows, cfg) >= cfg.min_score
    }
    first = _earliest((key, row["first_seen"]) for (_, key), rows in chosen.items() for row in rows)
    seen = _seen(tables, kind, first, history)
    found = []
    for (src, key), rows in chosen.items():
        context = _Context(fleet, int(clients.as_py()), hosts[key], seen[key])
        score = _artifact_score(kind, rows, cfg) * familiarity(seen[key].seen_before_s, cfg)
        if score >= cfg.min_score:
            found.append((_artifact_finding(kind, src, key, rows, score, context), key))
    found.sort(key=lambda pair: (-pair[0].score, pair[0].src, pair[0].dst or "", pair[1]))
    yield from _with_uids(tables, records, "key", found)


@dataclass(frozen=True, slots=True)
class _Context:
    fleet: int  # internal hosts in the window
    clients: int  # hosts with a user agent, or with a TLS fingerprint
    hosts: int  # hosts using this agent or fingerprint
    seen: _Seen


def _artifact_score(kind: str, rows: list[dict[str, Any]], cfg: RareDestinationConfig) -> float:
    conns = sum(_connections(r) for r in rows)
    total = sum(int(r["total_bytes"] or 0) for r in rows)
    score = rarity_score(conns, total, cfg, ceiling=cfg.artifact_max_score)
    if kind == "user_agent":
        known = user_agents.parse(str(rows[0]["value"])).known
        if known is not None and known.category in user_agents.BENIGN_CATEGORIES:
            score *= cfg.benign_damping
    return score


def _connections(row: dict[str, Any]) -> int:
    """Distinct uids; requests when the records carry none."""
    return int(row["conns"]) or int(row["requests"])


def _artifact_finding(
    kind: str, src: str, key: str, rows: list[dict[str, Any]], score: float, context: _Context
) -> Finding:
    rows = sorted(rows, key=lambda r: (-int(r["requests"]), str(r["target"])))
    main = rows[0]
    requests = sum(int(r["requests"]) for r in rows)
    conns = sum(_connections(r) for r in rows)
    known = any(r["total_bytes"] is not None for r in rows)
    total = sum(int(r["total_bytes"] or 0) for r in rows)
    names = [str(r["target"]) for r in rows]
    others = and_others(len(names) - 1)
    evidence: dict[str, Any] = {"kind": kind}
    if kind == "user_agent":
        agent = str(main["value"])
        evidence |= {
            "user_agent": agent,
            "agent_hosts": context.hosts,
            "web_hosts": context.clients,
            "requests": requests,
        }
        what = f'the user agent "{agent[:_SUMMARY_AGENT_CHARS]}"'
        clients = "web clients"
        listed = user_agents.parse(agent).known
        if listed is not None:
            evidence["agent_category"] = listed.category
    else:
        label = str(main["value"])  # ja3 or ja4
        evidence |= {
            "kind": label,
            label: key,
            "fingerprint_hosts": context.hosts,
            "tls_hosts": context.clients,
        }
        what = f"the TLS client fingerprint {label.upper()} {key}"
        clients = "TLS clients"
    evidence |= {
        "connections": conns,
        "total_bytes": total if known else None,
        "destinations" if kind == "user_agent" else "server_names": names[:10],
        "fleet_hosts": context.fleet,
        **context.seen.evidence(),
    }
    summary = (
        f"{src} is the only internal host of {context.clients} {clients} that used {what} "
        f"({conns} connections to {main['target']}{others})"
    )
    port = main["dst_port"]
    return Finding(
        detector="rare-destination",
        src=src,
        dst=str(main["target"]),
        dst_port=int(port) if port is not None else None,
        score=score,
        first_seen=min(utc(r["first_seen"]) for r in rows),
        last_seen=max(utc(r["last_seen"]) for r in rows),
        summary=summary + _history_note(context.seen) + ".",
        evidence=evidence,
    )


def _finding(
    kind: str,
    key: str,
    row: dict[str, Any],
    fleet: int,
    seen: _Seen,
    cfg: RareDestinationConfig,
) -> Finding | None:
    conns = int(row["conns"])
    known = row["total_bytes"] is not None  # None: TLS or HTTP records without their conn.log
    total = int(row["total_bytes"]) if known else 0
    score = rarity_score(conns, total, cfg) * familiarity(seen.seen_before_s, cfg)
    if score < cfg.min_score:
        return None
    dst = str(row[key])
    what = "domain" if kind == "domain" else "address, never named in TLS or HTTP,"
    summary = (
        f"{row['src']} is the only internal host of {fleet} that contacted the {what} {dst} "
        f"({conns} connections, {f'{total:,} bytes' if known else 'bytes unknown'})"
    )
    evidence: dict[str, Any] = {
        "kind": kind,
        "connections": conns,
        "total_bytes": total if known else None,
        "dst_hosts": 1,
        "fleet_hosts": fleet,
    }
    if kind == "domain":
        evidence["example_ip"] = row["example"]
    evidence.update(seen.evidence())
    port = row["dst_port"]
    return Finding(
        detector="rare-destination",
        src=str(row["src"]),
        dst=dst,
        dst_port=int(port) if port is not None else None,
        score=score,
        first_seen=utc(row["first_seen"]),
        last_seen=utc(row["last_seen"]),
        summary=summary + _history_note(seen) + ".",
        evidence=evidence,
    )


def _history_note(seen: _Seen) -> str:
    if seen.new_in_window:
        return "; new: the store's earlier records never had it"
    if seen.seen_before_s is None:
        return ""
    days = seen.seen_before_s / _DAY_S
    return f"; first seen {_iso(seen.first_seen_store)[:10]}, {days:.1f} days earlier (lowered)"


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


DETECTOR = Detector(
    name="rare-destination",
    requires=("conn",),
    config=RareDestinationConfig,
    run=run,
    description=(
        "remote domains, IPs, user agents and TLS fingerprints that only one internal host uses"
    ),
)
