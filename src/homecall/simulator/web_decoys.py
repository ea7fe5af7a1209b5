"""Benign web traffic that looks like a web technique (truth.BenignWeb): requests the proxy
refuses, desktop apps with their own agents and all-day websockets, Linux build servers and
package managers whose normal clients are tools, vendor portals on 8443/8080, Windows Update's
03:00 maintenance, a monitor asking one path of many hosts, and a device still on HTTP/1.0."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from homecall.simulator.addresses import (
    LINUX_SERVERS,
    MONITORING_SERVER,
    draw_public_ips,
    int_to_ip,
    ip_to_int,
)
from homecall.simulator.agents import APP_AGENTS, SERVER_AGENTS
from homecall.simulator.catalogue import Catalogue
from homecall.simulator.certs import LETS_ENCRYPT, chain
from homecall.simulator.exchanges import Exchanges, exchanges, lookup_mask
from homecall.simulator.internet import BROWSERS, HOSTING, PROVIDERS, RARE_WORDS
from homecall.simulator.truth import BenignWeb
from homecall.simulator.web_runs import (
    DAY_US,
    WebContext,
    WebRun,
    benign,
    durations,
    working_times,
)

__all__ = [
    "BLOCKED",
    "LEGACY_DEVICE",
    "plan_apps",
    "plan_denied",
    "plan_legacy_device",
    "plan_monitor",
    "plan_nightly_updates",
    "plan_odd_ports",
    "plan_servers",
]

BLOCKED = (  # (name, port): gambling, piracy, file sharing, social video
    ("www.bet365.com", 443), ("thepiratebay.org", 443), ("www.tiktok.com", 443),
    ("mega.nz", 443), ("www.pokerstars.eu", 443), ("free-movies-hd.net", 80),
)  # fmt: skip
LEGACY_DEVICE = ip_to_int("10.0.3.20")  # a UPS management card checking for firmware
_PORTALS = (("remote.acme-partner.com", 8443, True), ("crm.vendor-apps.com", 8080, False))
_ERROR_PAGE_BYTES = (3_400, 4_100)
_UPDATE_AGENT = "Microsoft-Delivery-Optimization/10.0"


def _ips(rng: np.random.Generator, ctx: WebContext, blocks: tuple[str, ...], n: int) -> list[int]:
    return draw_public_ips(rng, blocks, n, ctx.used_ips)


def _browsers(ctx: WebContext, who: npt.NDArray[np.int64]) -> list[str]:
    return [BROWSERS[int(ctx.fleet.browser[h])][0] for h in who]


def plan_denied(rng: np.random.Generator, ctx: WebContext, hosts: npt.NDArray[np.int64]) -> WebRun:
    """Users of proxied hosts now and then opening a site the proxy's policy blocks."""
    who, ts = working_times(rng, ctx, hosts, 1.2)
    n = ts.size
    pick = rng.integers(0, len(BLOCKED), n)
    servers = np.array(_ips(rng, ctx, HOSTING.blocks, len(BLOCKED)), dtype=np.uint32)
    names = [BLOCKED[i][0] for i in pick]
    port = np.array([BLOCKED[i][1] for i in pick], dtype=np.int64)
    parts = []
    for p in (80, 443):
        rows = np.flatnonzero(port == p)
        asked = [names[i] for i in rows]
        parts.append(
            exchanges(
                ts[rows],
                src=ctx.fleet.ips[who[rows]],
                server=servers[pick[rows]],
                port=p,
                tls=p == 443,
                duration_us=durations(rng, rows.size, 0.05),
                sni=asked if p == 443 else "-",
                host=asked,
                uri="/",
                user_agent=_browsers(ctx, who[rows]),
                status=403,
                response_body=rng.integers(*_ERROR_PAGE_BYTES, rows.size),
                denied=True,
            )
        )
    ex = Exchanges.stack(parts)
    return WebRun(ex, benign(ctx, ex, "proxy-denied", None, "TCP_DENIED/403 (policy)"))


def plan_apps(
    rng: np.random.Generator, ctx: WebContext, hosts: npt.NDArray[np.int64]
) -> list[WebRun]:
    """Teams and Zoom clients calling their services with their own agents, and Slack's
    websocket held open the whole working day."""
    runs = []
    for app, name, share, per_day in (
        ("teams", "teams.microsoft.com", 0.8, 24.0),
        ("zoom", "zoom.us", 0.5, 3.0),
    ):
        users = hosts[rng.random(hosts.size) < share]
        who, ts = working_times(rng, ctx, users, per_day)
        runs.append(_app_run(rng, ctx, who, ts, name, APP_AGENTS[app], 0.4, "app-agent"))
    users = hosts[rng.random(hosts.size) < 0.4]
    socket_hosts, opened, held = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], []
    for day in range(ctx.days):
        arrive = ctx.presence.arrive_s[day, users]
        leave = ctx.presence.leave_s[day, users]
        present = ~np.isnan(arrive)
        socket_hosts.append(users[present])
        start = arrive[present] + rng.uniform(60, 600, int(present.sum()))
        opened.append(ctx.start_us + day * DAY_US + (start * 1e6).astype(np.int64))
        held.append(((leave[present] - start).clip(600) * 1e6).astype(np.int64))
    ts = np.concatenate(opened)
    order = np.argsort(ts, kind="stable")
    hold = np.concatenate([np.zeros(0, np.int64), *held])[order]
    who = np.concatenate(socket_hosts)[order]
    agent = APP_AGENTS["slack"]
    name = "wss-primary.slack.com"
    runs.append(_app_run(rng, ctx, who, ts[order], name, agent, 0.0, "long-connection", hold))
    return runs


def _app_run(
    rng: np.random.Generator,
    ctx: WebContext,
    who: npt.NDArray[np.int64],
    ts: npt.NDArray[np.int64],
    name: str,
    agent: str,
    median_s: float,
    kind: str,
    hold_us: npt.NDArray[np.int64] | None = None,
) -> WebRun:
    """TLS calls of a desktop app to its service, with the app's own agent (seen on CONNECTs);
    `hold_us` keeps each connection open that long (a websocket)."""
    cat = ctx.cat
    domain = cat.ids[name]
    n = ts.size
    src = ctx.fleet.ips[who]
    ex = exchanges(
        ts,
        src=src,
        server=cat.pick_ips(rng, np.full(n, domain)),
        port=443,
        tls=True,
        duration_us=durations(rng, n, median_s) if hold_us is None else hold_us,
        sni=name,
        user_agent=agent,
        cert_fps=cat.cert_fps.take([domain])[0].as_py(),
        tls13=bool(cat.is_tls13[domain]),
        request_body=rng.integers(400, 3_000, n) * (1 if hold_us is None else 200),
        response_body=rng.integers(1_000, 20_000, n) * (1 if hold_us is None else 100),
        resolve=lookup_mask(src, [name] * n, ts, int(cat.ttl_s[domain])),
        ttl_s=int(cat.ttl_s[domain]),
    )
    return WebRun(ex, benign(ctx, ex, kind, name, agent))


def plan_servers(rng: np.random.Generator, ctx: WebContext) -> list[WebRun]:
    """A CI runner (through the proxy) fetching code and packages with git, pip, Go and curl
    round the clock, and a server updating Debian packages with apt (directly)."""
    cat = ctx.cat
    debian = _ips(rng, ctx, PROVIDERS["fastly"].blocks, 2)
    golang = _ips(rng, ctx, PROVIDERS["google"].blocks, 1)[0]
    outside = {"deb.debian.org": debian[0], "security.debian.org": debian[1],
               "proxy.golang.org": golang}  # fmt: skip
    jobs = (  # (name, agent, port, uri)
        ("github.com", SERVER_AGENTS["git"], 443, "-"),
        ("pypi.org", SERVER_AGENTS["pip"], 443, "-"),
        ("files.pythonhosted.org", SERVER_AGENTS["pip"], 443, "-"),
        ("proxy.golang.org", SERVER_AGENTS["go"], 443, "-"),
        ("objects.githubusercontent.com", SERVER_AGENTS["curl"], 443, "-"),
        ("api.github.com", SERVER_AGENTS["python-requests"], 443, "-"),
        ("deb.debian.org", SERVER_AGENTS["apt"], 80, "/debian/dists/bookworm/InRelease"),
    )
    runs = []
    for server_ip, per_hour, picks, kind in (
        (LINUX_SERVERS[0], 2.0, jobs, "server-tool"),
        (LINUX_SERVERS[1], 0.25, (jobs[6], ("security.debian.org", SERVER_AGENTS["apt"], 80,
                                            "/debian-security/dists/bookworm-security/InRelease")),
         "package-manager"),
    ):  # fmt: skip
        count = rng.poisson(per_hour * 24 * ctx.days)
        job_ts = np.sort(ctx.start_us + rng.integers(0, ctx.days * DAY_US, count))
        parts = []
        for name, agent, port, uri in picks:
            ts = job_ts + rng.integers(1_000_000, 90_000_000, count)
            server = outside.get(name) or int(cat.pick_ips(rng, np.array([cat.ids[name]]))[0])
            src = np.full(count, server_ip, dtype=np.uint32)
            parts.append(exchanges(
                ts, src=src, server=server, port=port, tls=port == 443,
                duration_us=durations(rng, count, 1.5), sni=name if port == 443 else "-",
                host=name, uri=uri, user_agent=agent, mime="application/octet-stream",
                cert_fps=_chain_of(cat, name), response_body=rng.integers(2_000, 900_000, count),
                resolve=lookup_mask(src, [name] * count, ts, 300), ttl_s=300,
            ))  # fmt: skip
        ex = Exchanges.stack(parts)
        detail = ", ".join(sorted({agent for _, agent, _, _ in picks}))
        truth = benign(ctx, ex, kind, None if kind == "server-tool" else "deb.debian.org", detail)
        runs.append(WebRun(ex, truth))
    return runs


def _chain_of(cat: Catalogue, name: str) -> str:
    """The catalogue's certificate chain for a name, or a Let's Encrypt one for another."""
    if name in cat.ids:
        text: str = cat.cert_fps.take([cat.ids[name]])[0].as_py()
        return text
    return chain(name, LETS_ENCRYPT)


def plan_odd_ports(
    rng: np.random.Generator, ctx: WebContext, hosts: npt.NDArray[np.int64]
) -> list[WebRun]:
    """A partner's remote-access portal on 8443 and a vendor's CRM on 8080, used by a few."""
    runs = []
    for name, port, tls in _PORTALS:
        server = _ips(rng, ctx, HOSTING.blocks, 1)[0]
        users = hosts[rng.random(hosts.size) < 0.1]
        who, ts = working_times(rng, ctx, users, 2.0)
        n = ts.size
        src = ctx.fleet.ips[who]
        ex = exchanges(
            ts,
            src=src,
            server=server,
            port=port,
            tls=tls,
            duration_us=durations(rng, n, 2.0),
            sni=name if tls else "-",
            host=name,
            uri="/crm/dashboard",
            user_agent=_browsers(ctx, who),
            cert_fps=chain(name, LETS_ENCRYPT) if tls else "-",
            response_body=rng.integers(5_000, 80_000, n),
            resolve=lookup_mask(src, [name] * n, ts, 3_600),
            ttl_s=3_600,
        )
        runs.append(WebRun(ex, benign(ctx, ex, "odd-port", name, f"port {port}")))
    return runs


def plan_nightly_updates(
    rng: np.random.Generator, ctx: WebContext, hosts: npt.NDArray[np.int64]
) -> WebRun:
    """Desktops' automatic maintenance at 03:00: Windows Update downloads."""
    cat = ctx.cat
    name = "download.windowsupdate.com"
    domain = cat.ids[name]
    desktops = hosts[~ctx.fleet.is_laptop[hosts]]
    who_parts, ts_parts = [], []
    for day in range(ctx.days):
        count = rng.integers(1, 4, desktops.size)
        who_parts.append(np.repeat(desktops, count))
        at = rng.uniform(3 * 3_600, 3.75 * 3_600, int(count.sum()))
        ts_parts.append(ctx.start_us + day * DAY_US + (at * 1e6).astype(np.int64))
    ts = np.concatenate([np.zeros(0, np.int64), *ts_parts])
    order = np.argsort(ts, kind="stable")
    who = np.concatenate([np.zeros(0, np.int64), *who_parts])[order]
    ts = ts[order]
    n = ts.size
    src = ctx.fleet.ips[who]
    numbers = rng.integers(10_000, 99_999, n)
    ex = exchanges(
        ts,
        src=src,
        server=cat.pick_ips(rng, np.full(n, domain)),
        port=80,
        tls=False,
        duration_us=durations(rng, n, 8.0),
        host=name,
        uri=[f"/c/msdownload/update/others/2026/11/{k}_{rng.bytes(20).hex()}.cab" for k in numbers],
        user_agent=_UPDATE_AGENT,
        mime="application/vnd.ms-cab-compressed",
        response_body=rng.integers(200_000, 30_000_000, n),
        resolve=lookup_mask(src, [name] * n, ts, int(cat.ttl_s[domain])),
        ttl_s=int(cat.ttl_s[domain]),
    )
    return WebRun(ex, benign(ctx, ex, "off-hours", name, "automatic maintenance at 03:00"))


def plan_monitor(rng: np.random.Generator, ctx: WebContext) -> WebRun:
    """The monitoring server's ad-hoc checks (a few rounds a day, when an operator or an alert
    asks): `/status` of each of twelve vendor services, one after another."""
    names = []
    for _ in range(12):
        a, b = rng.choice(len(RARE_WORDS), size=2, replace=False)
        names.append(f"api.{RARE_WORDS[a]}{RARE_WORDS[b]}.com")
        ctx.taken.add(names[-1])
    servers = np.array(_ips(rng, ctx, HOSTING.blocks, len(names)), dtype=np.uint32)
    rounds = np.sort(ctx.start_us + rng.integers(0, ctx.days * DAY_US, rng.poisson(6 * ctx.days)))
    steps = np.cumsum(rng.integers(100_000, 2_000_000, (rounds.size, len(names))), axis=1)
    ts = (rounds[:, None] + steps).ravel()
    which = np.tile(np.arange(len(names)), rounds.size)
    src = np.full(ts.size, MONITORING_SERVER, dtype=np.uint32)
    name_of = [names[i] for i in which]
    ex = exchanges(
        ts,
        src=src,
        server=servers[which],
        port=80,
        tls=False,
        duration_us=durations(rng, ts.size, 0.1),
        host=name_of,
        uri="/status",
        user_agent="Uptime-Kuma/1.23.16",
        mime="application/json",
        response_body=rng.integers(40, 200, ts.size),
        resolve=lookup_mask(src, name_of, ts, 3_600),
        ttl_s=3_600,
    ).sorted()
    return WebRun(ex, benign(ctx, ex, "same-path", None, "/status on 12 hosts"))


def plan_legacy_device(rng: np.random.Generator, ctx: WebContext) -> WebRun:
    """A UPS management card asking its vendor for firmware news (after its own events, a few
    times a day), in HTTP/1.0."""
    name = "updates.ups-vendor.com"
    ctx.taken.add(name)
    server = _ips(rng, ctx, HOSTING.blocks, 1)[0]
    ts = np.sort(ctx.start_us + rng.integers(0, ctx.days * DAY_US, rng.poisson(5 * ctx.days)))
    src = np.full(ts.size, LEGACY_DEVICE, dtype=np.uint32)
    ex = exchanges(
        ts,
        src=src,
        server=server,
        port=80,
        tls=False,
        duration_us=durations(rng, ts.size, 0.3),
        host=name,
        uri="/fw/ap9631/latest.txt",
        version="1.0",
        user_agent="-",
        mime="text/plain",
        response_body=rng.integers(60, 90, ts.size),
        resolve=lookup_mask(src, [name] * ts.size, ts, 3_600),
        ttl_s=3_600,
    )
    truth = BenignWeb("http-1.0", int_to_ip(LEGACY_DEVICE), 1, name, 80, False, len(ex),
                      "HTTP/1.0 (with Host) from an embedded device")  # fmt: skip
    return WebRun(ex, truth)
