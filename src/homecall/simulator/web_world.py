"""The web side of a simulation: who sits behind the proxy, which hosts run which web technique,
the decoys; per day the traffic of them all as the sensor and the proxy see it; the truth."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from homecall.simulator.addresses import LINUX_SERVERS, PROXY, int_to_ip
from homecall.simulator.agents import SERVER_AGENTS, fleet_agents, is_windows_chromium
from homecall.simulator.c2 import C2Plan
from homecall.simulator.catalogue import Catalogue
from homecall.simulator.certs import CS_DEFAULT, Certificate, x509_rows
from homecall.simulator.exchanges import exchange_flows
from homecall.simulator.flows import Flows, concat, row_count
from homecall.simulator.hosts import Fleet, Presence
from homecall.simulator.proxy import PROXY_PORT, AddressNames, through_proxy
from homecall.simulator.squid import ACCESS_LOG, AccessLog, write_access_log
from homecall.simulator.tls_c2 import (
    CDN_DECOYS,
    Cdn,
    cs_default_truth,
    plan_cdn,
    plan_cdn_decoy,
    plan_cert,
    plan_expired_site,
    plan_fronting,
)
from homecall.simulator.truth import (
    MAX_UIDS,
    AgentTruth,
    BenignWeb,
    CertTruth,
    FrontingTruth,
    HttpAnomalyTruth,
    ProxyTruth,
    UriCommandTruth,
    WebC2Truth,
)
from homecall.simulator.web_c2 import (
    AGENT_IMPLANTS,
    plan_agent,
    plan_burst,
    plan_http10,
    plan_long_connection,
    plan_proxy_beacon,
    plan_same_path,
)
from homecall.simulator.web_decoys import (
    plan_apps,
    plan_denied,
    plan_legacy_device,
    plan_monitor,
    plan_nightly_updates,
    plan_odd_ports,
    plan_servers,
)
from homecall.simulator.web_runs import DAY_US, WebContext, WebRun
from homecall.simulator.webshell import (
    plan_outbound_tokens,
    plan_portal,
    plan_tasking,
    plan_webshell,
)
from homecall.simulator.zeeklog import write_log

__all__ = [
    "MIN_HOSTS",
    "WebDay",
    "WebLogs",
    "WebTruths",
    "WebWorld",
    "collect_uids",
    "plan_web",
    "web_day",
    "web_truth",
]

MIN_HOSTS = 20  # smaller fleets get no proxy and no web technique
FULL_HOSTS = 100  # from this size every web technique runs; below, a share of them (in order)
PROXY_SHARE = 0.25  # workstations (of those running no other technique) behind the proxy
# Roles in the order hosts are handed out (fewer free hosts: the last go without)
_PROXIED_ROLES = (
    "proxy-beacon", "fronting-proxied", "linux-chrome", "odd-port", "go", "atari", "curl",
)  # fmt: skip
_DIRECT_ROLES = (
    "fronting-direct", "tasking", "cert-mismatch", "off-hours", "long-connection", "http-1.0",
    "python-requests", "same-path", "msie2", "powershell", "expired-cert",
)  # fmt: skip
_AGENT_ROLES = {implant.tool: implant for implant in AGENT_IMPLANTS}

Rng = Callable[[int], np.random.Generator]  # an independent generator per key


@dataclass(frozen=True, slots=True)
class WebWorld:
    """The web techniques drawn for the whole simulation."""

    proxied: npt.NDArray[np.uint32]  # addresses behind the proxy, sorted
    runs: tuple[WebRun, ...]
    names: AddressNames  # a name each server address serves (for unnamed CONNECTs)
    agents: Any  # default CONNECT agents: proxy.Agents
    certs: dict[str, Certificate]
    cs_default: CertTruth | None  # the `c2` instance serving Cobalt Strike's certificate
    cs_c2: int | None  # its index among the simulation's C2 instances

    @property
    def cs_tag(self) -> int:
        """The tag of that instance's connections (after the runs' own)."""
        return len(self.runs)


@dataclass(frozen=True, slots=True)
class WebDay:
    """A day's web flows as the sensor sees them, their tags, and the proxy's log."""

    flows: Flows
    tags: npt.NDArray[np.int64]  # per conn row: the run it belongs to, -1 for none
    log: AccessLog


def plan_web(
    rng: Rng,
    cat: Catalogue,
    fleet: Fleet,
    presence: Presence,
    *,
    start_us: int,
    days: int,
    busy: set[int],
    used_ips: set[int],
    taken: set[str],
    c2: Sequence[tuple[C2Plan, int, npt.NDArray[np.int64]]],
) -> WebWorld | None:
    """Place the proxy's hosts and every web technique (None under MIN_HOSTS hosts); `c2` are
    the simulation's implants (plan, host address, connection times)."""
    if fleet.size < MIN_HOSTS:
        return None
    free = [h for h in rng(0).permutation(fleet.size).tolist() if h not in busy]
    behind = free[: round(PROXY_SHARE * fleet.size)]
    direct = free[len(behind) :]
    proxied = frozenset({int(fleet.ips[h]) for h in behind} | {LINUX_SERVERS[0]})
    ctx = WebContext(cat, fleet, presence, start_us, days, proxied, used_ips, taken, {})
    share = min(1.0, fleet.size / FULL_HOSTS)
    roles = {
        **_assign(fleet, behind, _PROXIED_ROLES[: math.ceil(share * len(_PROXIED_ROLES))]),
        **_assign(fleet, direct, _DIRECT_ROLES[: math.ceil(share * len(_DIRECT_ROLES))]),
    }
    cdn = plan_cdn(rng(1), ctx)
    runs = _injected(rng, ctx, roles, cdn)
    runs += _decoys(rng, ctx, np.array(sorted(free), dtype=np.int64), behind, cdn)
    cs = [i for i, (plan, _, _) in enumerate(c2) if plan.implant.profile == "cs-https-default-cert"]
    cs_truth = cs_default_truth(ctx, c2[cs[0]][0], c2[cs[0]][1], c2[cs[0]][2]) if cs else None
    names: dict[int, str] = {}
    for d, name in enumerate(cat.names):
        for ip in cat.ips[cat.ip_start[d] : cat.ip_start[d] + cat.ip_count[d]]:
            names.setdefault(int(ip), name)
    servers = {LINUX_SERVERS[0]: SERVER_AGENTS["curl"]}
    return WebWorld(
        proxied=np.array(sorted(proxied), dtype=np.uint32),
        runs=tuple(runs),
        names=AddressNames.of(names),
        agents=fleet_agents(fleet, servers),
        certs=ctx.certs,
        cs_default=cs_truth,
        cs_c2=cs[0] if cs else None,
    )


def _assign(fleet: Fleet, hosts: list[int], roles: Sequence[str]) -> dict[str, int]:
    """Hand roles out, desktops with Chrome or Edge on Windows first (the agent roles need
    one: their usual agent must be a Windows browser)."""
    ranked = sorted(
        hosts,
        key=lambda h: (not is_windows_chromium(int(fleet.browser[h])), bool(fleet.is_laptop[h])),
    )
    found: dict[str, int] = {}
    for role, host in zip(roles, ranked, strict=False):
        if role in _AGENT_ROLES and not is_windows_chromium(int(fleet.browser[host])):
            continue
        found[role] = host
    return found


def _injected(rng: Rng, ctx: WebContext, roles: dict[str, int], cdn: Cdn) -> list[WebRun]:
    """The injected channels, each from its own random stream, and the web shell."""
    planners: dict[str, Callable[[np.random.Generator, int], WebRun]] = {
        "proxy-beacon": lambda g, h: plan_proxy_beacon(g, ctx, h),
        "odd-port": lambda g, h: plan_proxy_beacon(g, ctx, h, odd_port=True),
        "fronting-proxied": lambda g, h: plan_fronting(g, ctx, h, cdn, via_proxy=True),
        "fronting-direct": lambda g, h: plan_fronting(g, ctx, h, cdn, via_proxy=False),
        "tasking": lambda g, h: plan_tasking(g, ctx, h),
        "cert-mismatch": lambda g, h: plan_cert(g, ctx, h, expired=False),
        "expired-cert": lambda g, h: plan_cert(g, ctx, h, expired=True),
        "long-connection": lambda g, h: plan_long_connection(g, ctx, h),
        "off-hours": lambda g, h: plan_burst(g, ctx, h),
        "http-1.0": lambda g, h: plan_http10(g, ctx, h),
        "same-path": lambda g, h: plan_same_path(g, ctx, h),
    }
    for tool, implant in _AGENT_ROLES.items():
        planners[tool] = lambda g, h, implant=implant: plan_agent(g, ctx, h, implant)  # type: ignore[misc]
    order = (*_PROXIED_ROLES, *_DIRECT_ROLES)
    runs = [
        planners[role](rng(10 + k), roles[role]) for k, role in enumerate(order) if role in roles
    ]
    return [*runs, plan_webshell(rng(40), ctx)]


def _decoys(
    rng: Rng, ctx: WebContext, hosts: npt.NDArray[np.int64], behind: list[int], cdn: Cdn
) -> list[WebRun]:
    """The benign look-alikes, from hosts running no other technique (and servers)."""
    runs = plan_portal(rng(41), ctx)
    runs += plan_outbound_tokens(rng(42), ctx, hosts)
    runs.append(plan_denied(rng(43), ctx, np.array(sorted(behind), dtype=np.int64)))
    runs += plan_apps(rng(44), ctx, hosts)
    runs += plan_servers(rng(45), ctx)
    runs += plan_odd_ports(rng(46), ctx, hosts)
    runs.append(plan_nightly_updates(rng(47), ctx, hosts))
    runs.append(plan_monitor(rng(48), ctx))
    runs.append(plan_legacy_device(rng(49), ctx))
    runs += [plan_cdn_decoy(rng(50 + k), ctx, hosts, cdn, d) for k, d in enumerate(CDN_DECOYS)]
    visitors = rng(60).choice(hosts, size=min(5, hosts.size), replace=False)
    runs.append(plan_expired_site(rng(61), ctx, visitors.tolist()))
    return runs


def web_day(
    world: WebWorld, rng: Rng, day_start_us: int, base: Sequence[Flows], decoys: Flows
) -> WebDay:
    """The day's `base` traffic (browsing, office, periodic services) and web runs, with every
    proxied client's web connections rewritten through the proxy; the DNS `decoys` too, though
    their lookups stay as drawn (the DNS decoys' truth counts them)."""
    parts = list(base)
    tags = [np.full(row_count(p.conn), -1, dtype=np.int64) for p in base]
    agents = [pa.nulls(row_count(p.conn), pa.string()) for p in base]
    denied = [np.zeros(row_count(p.conn), dtype=np.bool_) for p in base]
    for i, run in enumerate(world.runs):
        ex = run.exchanges.between(day_start_us, day_start_us + DAY_US)
        if not len(ex):
            continue
        flows = exchange_flows(rng(i), ex, day_start_us)
        n, k = row_count(flows.conn), len(ex)  # the exchanges' conn rows come first
        parts.append(flows)
        tags.append(np.where(np.arange(n) < k, i, -1))
        agents.append(pa.concat_arrays([ex.user_agent, pa.nulls(n - k, pa.string())]))
        denied.append(np.concatenate([ex.denied, np.zeros(n - k, dtype=np.bool_)]))
    override = pa.concat_arrays(agents)

    def agent_of(rows: npt.NDArray[np.int64], clients: npt.NDArray[np.uint32], names: Any) -> Any:
        return pc.coalesce(override.take(pa.array(rows)), world.agents(rows, clients, names))

    proxied = through_proxy(
        rng(len(world.runs) + 1),
        concat(parts),
        proxied=world.proxied,
        names=world.names,
        agents=agent_of,
        denied=np.concatenate(denied),
    )
    lookups_kept = through_proxy(
        rng(len(world.runs) + 2),
        decoys,
        proxied=world.proxied,
        names=world.names,
        agents=world.agents,
        keep_lookups=True,
    )
    return WebDay(
        concat([proxied.flows, lookups_kept.flows]),
        np.concatenate(
            [np.concatenate(tags)[proxied.origin], np.full(lookups_kept.origin.size, -1)]
        ),
        AccessLog.stack([proxied.log, lookups_kept.log]),
    )


def collect_uids(
    found: dict[int, list[str]], conn: dict[str, Any], tags: npt.NDArray[np.int64]
) -> None:
    """Add a day's uids of each tag's client connections (not the proxy's own) to `found`,
    earliest first, up to MAX_UIDS a tag."""
    client = np.asarray(conn["id.orig_h"], dtype=np.uint32)
    rows = np.flatnonzero((tags >= 0) & (client != PROXY))
    ts = np.asarray(conn["ts"], dtype=np.int64)[rows]
    rows = rows[np.lexsort((ts, tags[rows]))]
    uids = conn["uid"].take(pa.array(rows)).to_pylist()
    for tag, uid in zip(tags[rows].tolist(), uids, strict=True):
        have = found.setdefault(tag, [])
        if len(have) < MAX_UIDS:
            have.append(uid)


@dataclass(frozen=True, slots=True)
class WebTruths:
    """The web truth, sorted into SimulationResult's fields."""

    proxy: ProxyTruth | None
    web_c2: tuple[WebC2Truth, ...]
    user_agents: tuple[AgentTruth, ...]
    uri_commands: tuple[UriCommandTruth, ...]
    domain_fronting: tuple[FrontingTruth, ...]
    tls_certs: tuple[CertTruth, ...]
    http_anomalies: tuple[HttpAnomalyTruth, ...]
    benign_web: tuple[BenignWeb, ...]


def web_truth(
    world: WebWorld | None, uids: dict[int, list[str]], requests: int, denied: int
) -> WebTruths:
    """Every run's truth with its uids; `requests`/`denied` count the access.log lines."""
    if world is None:
        return WebTruths(None, (), (), (), (), (), (), ())
    entries: list[Any] = []
    for i, run in enumerate(world.runs):
        truth = run.truth
        if not isinstance(truth, BenignWeb):
            truth = dataclasses.replace(truth, uids=tuple(uids.get(i, ())))
        entries.append(truth)
    if world.cs_default is not None:
        entries.append(
            dataclasses.replace(world.cs_default, uids=tuple(uids.get(world.cs_tag, ())))
        )
    proxy = ProxyTruth(
        address=int_to_ip(PROXY),
        port=PROXY_PORT,
        hosts=tuple(int_to_ip(int(ip)) for ip in world.proxied),
        access_log=ACCESS_LOG.as_posix(),
        requests=requests,
        denied=denied,
    )

    def of(kind: type) -> tuple[Any, ...]:
        return tuple(e for e in entries if isinstance(e, kind))

    return WebTruths(
        proxy, of(WebC2Truth), of(AgentTruth), of(UriCommandTruth), of(FrontingTruth),
        of(CertTruth), of(HttpAnomalyTruth), of(BenignWeb),
    )  # fmt: skip


@dataclass(slots=True)
class WebLogs:
    """Writes each day's x509.log and the proxy's access.log, and gathers the truth's uids."""

    world: WebWorld | None
    reference_s: int  # the simulation's start: certificates are dated from it
    paths: list[Path] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=lambda: {"x509": 0, "squid": 0})
    denied: int = 0
    uids: dict[int, list[str]] = field(default_factory=dict)

    def collect(self, conn: dict[str, Any], tags: npt.NDArray[np.int64]) -> None:
        """Take the uids of a day's tagged connections (finalized conn columns)."""
        collect_uids(self.uids, conn, tags)

    def write(
        self, folder: Path, ssl: dict[str, Any], access: AccessLog, opened: dt.datetime
    ) -> None:
        """FOLDER/x509.log of the day's handshakes, and FOLDER/squid/access.log (with a proxy)."""
        known = {CS_DEFAULT.fingerprint: CS_DEFAULT, **(self.world.certs if self.world else {})}
        closed = opened + dt.timedelta(days=1)
        x509 = x509_rows(ssl, known, self.reference_s)
        self.rows["x509"] += write_log(folder / "x509.log", "x509", x509, opened, closed)
        self.paths.append(folder / "x509.log")
        if self.world is not None:
            self.rows["squid"] += write_access_log(folder / ACCESS_LOG, access)
            self.denied += int(pc.sum(pc.equal(access.code, "TCP_DENIED")).as_py() or 0)
            self.paths.append(folder / ACCESS_LOG)

    def truth(self) -> WebTruths:
        """The web truth, with the uids gathered over the days."""
        return web_truth(self.world, self.uids, self.rows["squid"], self.denied)
