"""User agents: why an internal host's HTTP agent looks like an implant's
(docs/detection.md#user-agent).

One candidate per (internal host, agent), from every web request (`web.requests`: direct,
through a proxy, or in a proxy's log). An agent is suspicious when it is malformed (a rule of
`intel.user_agents.MALFORMATIONS`), when it is a scripting or tool agent on a host that
otherwise browses, when it names another OS than the host's browsers, or when it is rare in the
fleet and goes only to destinations no other host uses. Each host is judged against its own
usual agents: a build server that always uses curl is not a browsing workstation. Reasons
combine as independent evidence, weighted by the requests made; listed applications and
updaters are damped.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import ibis.expr.types as ir
import pyarrow as pa

from homecall.detectors.base import Detector
from homecall.detectors.common import sample_uids, scaled_log, utc, with_uids
from homecall.detectors.rare_destination import (
    agent_requests,
    and_others,
    domain_of,
    under_domains,
)
from homecall.findings import Finding
from homecall.intel import user_agents
from homecall.intel.user_agents import NO_AGENT, AgentInfo
from homecall.store.tables import Tables

__all__ = [
    "DETECTOR",
    "Destination",
    "HostProfile",
    "UserAgentConfig",
    "agent_score",
    "fleet_weight",
    "main_destination",
    "profile_hosts",
    "reasons_for",
    "run",
]

log = logging.getLogger(__name__)

RARITY = frozenset({"rare_agent", "rare_destinations_only"})  # reasons that need company
_SUMMARY_AGENT_CHARS = 80  # agents are hostile data of any length: the summary quotes a prefix


@dataclass(frozen=True, slots=True, kw_only=True)
class UserAgentConfig:
    """Settings under [detectors.user-agent] in homecall.toml."""

    max_score: float = 0.9  # an agent string is forgeable evidence: "critical" needs more
    min_score: float = 0.25  # below: one weak reason on a few requests
    tool_weight: float = 0.5  # a scripting/tool agent from a host that otherwise browses
    no_agent_weight: float = 0.4  # no agent at all, to destinations no other host uses
    os_mismatch_weight: float = 0.4  # another OS than the host's browsers (a VM behind NAT can)
    os_version_weight: float = 0.25  # another Windows version: apps hard-code old agents
    shared_damping: float = 0.5  # tool and OS reasons, agent used only to names others use too
    rare_weight: float = 0.35  # an agent only this host uses (alone it stays "low")
    rare_destinations_weight: float = 0.25  # ...and only towards destinations no other host uses
    max_agent_hosts: int = 2  # "rare": used by at most this many hosts (versions masked)
    max_destinations: int = 3  # "only rare destinations" holds for at most this many of them
    min_fleet: int = 5  # web clients below which rarity says nothing...
    fleet_full: int = 50  # ...and at which it counts fully (log ramp between)
    min_browser_destinations: int = 3  # a workstation reaches at least 3 names by browser...
    browser_ratio: float = 0.5  # ...and at least half of its destinations
    os_ratio: float = 0.8  # the host's usual OS: that of 80 % of its browsers' names
    usual_ratio: float = 0.5  # an agent behind half the host's destinations is its usual one...
    usual_damping: float = 0.5  # ...and its rarity (the only Mac, a server's tool) is halved
    benign_damping: float = 0.3  # listed OS components, updaters, AV, chat and package managers
    requests_full: float = 100.0  # requests for the full activity weight
    activity_floor: float = 0.6  # share of the score a single request already carries
    max_listed: int = 10  # destinations listed in the evidence


@dataclass(frozen=True, slots=True)
class Destination:
    """A name (or address) an agent asked for: requests, the address most used, fleet users."""

    name: str
    requests: int
    server: str | None  # the address the requests went to (a proxy's, when proxied)
    port: int | None
    hosts: int  # internal hosts requesting any name under the same registered domain
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class HostProfile:
    """A host's own agents: destinations reached per agent (its baseline)."""

    destinations: Mapping[str, int] = field(default_factory=dict)  # agent -> distinct names
    requests: Mapping[str, int] = field(default_factory=dict)  # agent -> requests

    def browser_ratio(self) -> tuple[int, float]:
        """Names reached by browsers, and their share of names reached by browsers and tools."""
        browsers = tools = 0
        for agent, count in self.destinations.items():
            info = user_agents.parse(agent)
            if _is_plain_browser(agent):
                browsers += count
            elif _is_tool(info):
                tools += count
        return browsers, browsers / max(browsers + tools, 1)

    def is_workstation(self, cfg: UserAgentConfig) -> bool:
        """A host that browses: enough names by browser, and most of its browser/tool ones."""
        browsed, ratio = self.browser_ratio()
        return browsed >= cfg.min_browser_destinations and ratio >= cfg.browser_ratio

    def usual_os(self, ratio: float) -> tuple[str | None, str | None]:
        """The OS (and Windows NT version) of `ratio` of the names its browsers reached."""
        systems: Counter[str] = Counter()
        versions: Counter[str] = Counter()
        for agent, count in self.destinations.items():
            info = user_agents.parse(agent)
            if _is_plain_browser(agent) and info.os is not None:
                systems[info.os] += count
                if info.os == "Windows" and info.os_version:
                    versions[info.os_version] += count
        system, version = _dominant(systems, ratio), None
        if system == "Windows":
            version = _dominant(versions, ratio)
        return system, version

    def usual_agent(self, besides: str) -> str | None:
        """The agent behind most of the host's names, other than `besides`; a browser when the
        host uses one."""
        others = [
            (not _is_plain_browser(a), -n, -self.requests[a], a)
            for a, n in self.destinations.items()
            if a != besides
        ]
        return min(others)[3] if others else None

    def share(self, agent: str) -> float:
        """The share of the host's names reached with `agent`."""
        return self.destinations.get(agent, 0) / max(sum(self.destinations.values()), 1)


def _dominant(counts: Counter[str], ratio: float) -> str | None:
    total = sum(counts.values())
    if not total:
        return None
    best, count = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return best if count >= ratio * total else None


def _is_plain_browser(agent: str) -> bool:
    info = user_agents.parse(agent)
    return info.is_browser and not info.problems


def _is_tool(info: AgentInfo) -> bool:
    return info.known is not None and info.known.category == "tool"


def profile_hosts(pairs: pa.Table) -> dict[str, HostProfile]:
    """Per host, its agents' distinct names and requests (from the (src, agent) pair table)."""
    names: dict[str, dict[str, int]] = defaultdict(dict)
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    columns = (pairs.column(c).to_pylist() for c in ("src", "agent", "names", "requests"))
    for src, agent, n, asked in zip(*columns, strict=True):
        names[src][agent] = n
        counts[src][agent] = asked
    return {src: HostProfile(names[src], counts[src]) for src in names}


def fleet_weight(web_hosts: int, cfg: UserAgentConfig) -> float:
    """How much rarity means among `web_hosts` clients: 0 up to min_fleet, 1 from fleet_full,
    on a log scale between."""
    if web_hosts <= cfg.min_fleet:
        return 0.0
    return min(1.0, math.log(web_hosts / cfg.min_fleet) / math.log(cfg.fleet_full / cfg.min_fleet))


def _os_reason(
    info: AgentInfo, usual: tuple[str | None, str | None], cfg: UserAgentConfig
) -> tuple[str, float] | None:
    system, version = usual
    if info.os is None or system is None:
        return None
    if info.os != system:
        return "os_mismatch", cfg.os_mismatch_weight
    if system == "Windows" and version and info.os_version and info.os_version != version:
        return "os_version_mismatch", cfg.os_version_weight
    return None


def reasons_for(
    agent: str,
    profile: HostProfile,
    destinations: Sequence[Destination],
    *,
    agent_hosts: int,
    web_hosts: int,
    cfg: UserAgentConfig,
) -> dict[str, float]:
    """Reason -> strength (0..1) for one host's agent; empty when nothing is suspicious.

    For NO_AGENT, `destinations` must hold only names no other host requests. Rarity alone (an
    agent, or destinations, only this host uses) is left to rare-destination: here it needs
    another reason, or both together (a rare agent used only towards rare destinations)."""
    info = user_agents.parse(agent)
    found = {r: user_agents.MALFORMATIONS[r][0] for r in info.problems}
    workstation = profile.is_workstation(cfg)
    fleet = fleet_weight(web_hosts, cfg)
    if agent == NO_AGENT:
        if workstation and destinations:
            found["no_agent"] = cfg.no_agent_weight * fleet
        return {r: s for r, s in found.items() if s > 0}
    total = sum(d.requests for d in destinations)
    rare_share = sum(d.requests for d in destinations if d.hosts <= 1) / max(total, 1)
    # a tool or another OS talking to what the rest of the fleet talks to: likely a component
    shared = 1.0 - cfg.shared_damping * (1.0 - rare_share) * fleet
    if workstation and _is_tool(info):
        found["tool_agent"] = cfg.tool_weight * shared
    mismatch = _os_reason(info, profile.usual_os(cfg.os_ratio), cfg)
    if mismatch is not None:
        found[mismatch[0]] = mismatch[1] * shared
    if agent_hosts <= cfg.max_agent_hosts:
        rarity = (cfg.max_agent_hosts + 1 - agent_hosts) / cfg.max_agent_hosts
        usual = cfg.usual_damping if profile.share(agent) >= cfg.usual_ratio else 1.0
        found["rare_agent"] = cfg.rare_weight * rarity * fleet * (0.5 + 0.5 * rare_share) * usual
    if rare_share == 1.0 and 0 < len(destinations) <= cfg.max_destinations:
        found["rare_destinations_only"] = cfg.rare_destinations_weight * fleet
    found = {r: s for r, s in found.items() if s > 0}
    rarity_alone = not (found.keys() - RARITY) and found.keys() != RARITY
    return {} if rarity_alone else found


def agent_score(
    reasons: Mapping[str, float], requests: int, *, benign: bool, cfg: UserAgentConfig
) -> float:
    """max_score x (1 - prod(1 - strength)) x activity(requests) x benign damping."""
    combined = 1.0 - math.prod(1.0 - s for s in reasons.values())
    weight = scaled_log(requests, cfg.requests_full)
    activity = cfg.activity_floor + (1.0 - cfg.activity_floor) * weight
    return cfg.max_score * combined * activity * (cfg.benign_damping if benign else 1.0)


def _pairs(tables: Tables, records: ir.Table) -> pa.Table:
    """(src, agent, requests, names): every agent of every host."""
    pairs = records.group_by(["src", "agent"]).aggregate(
        requests=records.count(), names=records.target.nunique()
    )
    return tables.to_pyarrow(pairs.order_by(["src", "agent"]))


def _worth_a_look(agent: str, profile: HostProfile, agent_hosts: int, cfg: UserAgentConfig) -> bool:
    """True when a reason may hold: a malformed, tool, absent, mismatched or rare agent."""
    info = user_agents.parse(agent)
    if info.problems or agent_hosts <= cfg.max_agent_hosts:
        return True
    if agent == NO_AGENT or _is_tool(info):
        return profile.is_workstation(cfg)
    return _os_reason(info, profile.usual_os(cfg.os_ratio), cfg) is not None


def _destinations(
    tables: Tables, records: ir.Table, chosen: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], list[Destination]]:
    """Per chosen (src, agent), the names it asked for, most requested first."""
    wanted = pa.table({"src": [c[0] for c in chosen], "agent": [c[1] for c in chosen]})
    kept = records.semi_join(tables.memtable(wanted), ["src", "agent"])
    keys = ["src", "agent", "target", "dst", "port"]
    rows = kept.group_by(keys).aggregate(
        n=kept.count(), first_seen=kept.ts.min(), last_seen=kept.ts.max()
    )
    table = tables.to_pyarrow(rows.order_by(keys))
    domains = {n: domain_of(n) for n in set(table.column("target").to_pylist())}
    hosts = _hosts_per_domain(tables, records, set(domains.values()))
    grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in table.to_pylist():
        grouped[(row["src"], row["agent"], row["target"])].append(row)
    found: dict[tuple[str, str], list[Destination]] = defaultdict(list)
    for (src, agent, name), parts in grouped.items():
        top = min(parts, key=lambda r: (-r["n"], str(r["dst"]), r["port"] or 0))
        found[(src, agent)].append(
            Destination(
                name=name,
                requests=sum(r["n"] for r in parts),
                server=top["dst"],
                port=top["port"],
                hosts=hosts.get(domains[name], 1),
                first_seen=min(utc(r["first_seen"]) for r in parts),
                last_seen=max(utc(r["last_seen"]) for r in parts),
            )
        )
    for listed in found.values():
        listed.sort(key=lambda d: (-d.requests, d.name))
    return found


def _hosts_per_domain(tables: Tables, records: ir.Table, domains: set[str]) -> dict[str, int]:
    """Domain -> internal hosts requesting it or any name under it."""
    # distinct first: the names are computed once, not once per label count looked up
    pairs = records.select("src", "target").distinct()
    matched = under_domains(tables, pairs, "target", domains)
    counts = matched.group_by("domain").aggregate(hosts=matched.src.nunique())
    table = tables.to_pyarrow(counts)
    return dict(zip(*(table.column(c).to_pylist() for c in ("domain", "hosts")), strict=True))


def main_destination(destinations: Sequence[Destination]) -> Destination:
    """The most requested name; ties go to the name whose server carries the most of the
    agent's requests (Simda's many generated names at one address), then to name order."""
    load: Counter[str | None] = Counter()
    for d in destinations:
        load[d.server] += d.requests
    return min(destinations, key=lambda d: (-d.requests, -load[d.server], d.name))


def run(tables: Tables, cfg: UserAgentConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    records = agent_requests(tables)
    pairs = _pairs(tables, records)
    if pairs.num_rows == 0:
        return
    profiles = profile_hosts(pairs)
    users: dict[str, set[str]] = defaultdict(set)
    for src, agent in zip(
        pairs.column("src").to_pylist(), pairs.column("agent").to_pylist(), strict=True
    ):
        users[user_agents.shape(agent)].add(src)
    agent_hosts = {shape: len(hosts) for shape, hosts in users.items()}
    chosen = [
        (src, agent)
        for src, agent in zip(
            pairs.column("src").to_pylist(), pairs.column("agent").to_pylist(), strict=True
        )
        if _worth_a_look(agent, profiles[src], agent_hosts[user_agents.shape(agent)], cfg)
    ]
    if not chosen:
        return
    destinations = _destinations(tables, records, chosen)
    context = _Fleet(len(profiles), tables.fleet_size, agent_hosts)
    found = []
    for src, agent in chosen:
        f = _finding(src, agent, profiles[src], destinations[(src, agent)], context, cfg)
        if f is not None:
            found.append((f, agent, main_destination(_judged(agent, destinations[(src, agent)]))))
    found.sort(key=lambda x: (-x[0].score, x[0].src, x[1]))
    if not found:
        return
    wanted = pa.table(
        {
            "src": [f.src for f, _, _ in found],
            "agent": [a for _, a, _ in found],
            "target": [d.name for _, _, d in found],
        }
    )
    uids = sample_uids(tables, records, ("src", "agent", "target"), wanted)
    for f, agent, main in found:
        yield with_uids(f, uids.get((f.src, agent, main.name), []))


@dataclass(frozen=True, slots=True)
class _Fleet:
    web_hosts: int  # internal hosts that made web requests
    fleet_hosts: int  # internal hosts active in the window
    agent_hosts: Mapping[str, int]  # agent shape -> hosts using it


def _judged(agent: str, destinations: list[Destination]) -> list[Destination]:
    """The destinations a finding is about: for requests without an agent, the names no other
    host requests (OS components send none to shared services all day)."""
    if agent == NO_AGENT:
        return [d for d in destinations if d.hosts <= 1]
    return destinations


def _finding(
    src: str,
    agent: str,
    profile: HostProfile,
    destinations: list[Destination],
    fleet: _Fleet,
    cfg: UserAgentConfig,
) -> Finding | None:
    judged = _judged(agent, destinations)
    if not judged:
        return None
    shape_hosts = fleet.agent_hosts[user_agents.shape(agent)]
    reasons = reasons_for(
        agent, profile, judged, agent_hosts=shape_hosts, web_hosts=fleet.web_hosts, cfg=cfg
    )
    if not reasons:
        return None
    info = user_agents.parse(agent)
    benign = info.known is not None and info.known.category in user_agents.BENIGN_CATEGORIES
    requests = sum(d.requests for d in judged)
    score = agent_score(reasons, requests, benign=benign, cfg=cfg)
    if score < cfg.min_score:
        return None
    main = main_destination(judged)
    ordered = sorted(reasons, key=lambda r: (-reasons[r], r))
    usual_os, usual_version = profile.usual_os(cfg.os_ratio)
    evidence: dict[str, Any] = {
        "user_agent": agent if agent != NO_AGENT else None,
        "reasons": ordered,
        "reason_weights": [round(reasons[r], 3) for r in ordered],
        "agent_family": info.family,
        "agent_version": info.version,
        "agent_os": info.os,
        "agent_os_version": info.os_version,
        "agent_category": info.known.category if info.known else None,
        "host_usual_agent": profile.usual_agent(besides=agent),
        "host_usual_os": usual_os,
        "host_usual_os_version": usual_version,
        "host_browser_ratio": round(profile.browser_ratio()[1], 3),
        "requests": requests,
        "destination_count": len(judged),
        "destinations": [d.name for d in judged[: cfg.max_listed]],
        "main_server": main.server,
        "main_destination_hosts": main.hosts,
        "agent_hosts": shape_hosts,
        "web_hosts": fleet.web_hosts,
        "fleet_hosts": fleet.fleet_hosts,
    }
    return Finding(
        detector="user-agent",
        src=src,
        dst=main.name,
        dst_port=main.port,
        score=score,
        first_seen=min(d.first_seen for d in judged),
        last_seen=max(d.last_seen for d in judged),
        summary=_summary(src, agent, main, judged, ordered, evidence, benign),
        evidence=evidence,
    )


_WORDS = {
    "misspelled_mozilla": "a misspelt Mozilla token",
    "impossible_combination": "a browser and Windows version that never shipped together",
    "impossible_version": "an impossible version number",
    "unbalanced_parentheses": "unbalanced parentheses",
    "too_short": "a one- or two-character agent",
    "incomplete": "a bare Mozilla/x.y agent",
    "no_agent": "no user agent at all",
    "tool_agent": "a scripting/tool agent from a host that otherwise browses",
    "os_mismatch": "another OS than the host's browsers",
    "os_version_mismatch": "another Windows version than the host's browsers",
    "rare_agent": "an agent few internal hosts use",
    "rare_destinations_only": "only towards names no other internal host requests",
}


def _summary(
    src: str,
    agent: str,
    main: Destination,
    judged: list[Destination],
    reasons: list[str],
    evidence: Mapping[str, Any],
    benign: bool,
) -> str:
    quoted = f'"{agent[:_SUMMARY_AGENT_CHARS]}"' if agent != NO_AGENT else "no user agent"
    others = and_others(len(judged) - 1)
    words = ", ".join(_WORDS[r] for r in reasons)
    if "rare_agent" in reasons:
        words += f" ({evidence['agent_hosts']} of {evidence['web_hosts']} web clients use it)"
    if "os_mismatch" in reasons or "os_version_mismatch" in reasons:
        claimed = " ".join(filter(None, (evidence["agent_os"], evidence["agent_os_version"])))
        usual = " ".join(
            filter(None, (evidence["host_usual_os"], evidence["host_usual_os_version"]))
        )
        words += f" (claims {claimed}, the host's browsers run {usual})"
    text = (
        f"{src} sent {evidence['requests']} requests with {quoted} to {main.name}{others}: {words}"
    )
    if benign:
        text += f"; a listed {evidence['agent_category']} agent, score lowered"
    return text + "."


DETECTOR = Detector(
    name="user-agent",
    requires=("http",),
    config=UserAgentConfig,
    run=run,
    description="malformed, tool, OS-mismatched or rare HTTP user agents of internal hosts",
)
