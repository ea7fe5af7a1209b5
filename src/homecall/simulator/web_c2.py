"""Injected web C2 found by its timing, its agent or its HTTP (truth.WebC2Truth, AgentTruth,
HttpAnomalyTruth): a beacon through the proxy, a CONNECT to an odd port, a 03:00 burst, one
connection held for hours, tool and malformed agents, an agent claiming the wrong OS, HTTP/1.0
without Host, and one path asked of many domains (Simda's `/login.php`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from homecall.simulator.addresses import int_to_ip
from homecall.simulator.agents import LINUX_CHROME, MALFORMED_AGENTS, TOOL_AGENTS
from homecall.simulator.c2 import c2_domain
from homecall.simulator.certs import LETS_ENCRYPT, chain
from homecall.simulator.exchanges import Exchanges, exchanges, lookup_mask
from homecall.simulator.internet import BROWSERS, RARE_WORDS
from homecall.simulator.truth import AgentTruth, HttpAnomalyTruth, WebC2Truth
from homecall.simulator.web_runs import (
    DAY_US,
    WebContext,
    WebRun,
    beacon_times,
    durations,
    span,
)

__all__ = [
    "AGENT_IMPLANTS",
    "AgentImplant",
    "plan_agent",
    "plan_burst",
    "plan_http10",
    "plan_long_connection",
    "plan_proxy_beacon",
    "plan_same_path",
]

# Cobalt Strike's default agents are old Internet Explorer strings; WinINet sends it on CONNECT.
CS_AGENT = "Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.2; WOW64; Trident/6.0)"
ODD_PORT = 4444  # Metasploit's default; a CONNECT to 443 or 8443 is ordinary
BURST_HOUR_UTC = 3  # the simulated office keeps UTC, so 03:00 local
SAME_PATH = "/login.php"
SAME_PATH_NAMES = 40
_TTL_S = 300


@dataclass(frozen=True, slots=True)
class AgentImplant:
    """An implant known by its agent: which, over what, through the proxy or not."""

    kind: str  # tool-agent, malformed-agent, os-mismatch
    tool: str
    user_agent: str
    protocol: str
    via_proxy: bool
    named: bool  # False: the implant calls its server's address
    uri: str  # {h}: a hex id per request, {n}: a number
    sleep_s: float
    jitter_ratio: float


AGENT_IMPLANTS = (
    AgentImplant("tool-agent", "python-requests", TOOL_AGENTS["python-requests"], "http", False,
                 True, "/api/v2/beacon?uid={h}", 120, 0.5),
    AgentImplant("os-mismatch", "linux-chrome", LINUX_CHROME, "https", True, True, "-", 240, 0.4),
    AgentImplant("tool-agent", "go", TOOL_AGENTS["go"], "https", True, True, "-", 120, 0.2),
    AgentImplant("malformed-agent", "msie2", MALFORMED_AGENTS["msie2"], "http", False, True,
                 "/index.php?id={n}", 600, 0.5),
    AgentImplant("malformed-agent", "atari", MALFORMED_AGENTS["atari"], "https", True, True, "-",
                 300, 0.5),
    AgentImplant("tool-agent", "curl", TOOL_AGENTS["curl"], "http", True, False, "/s", 120, 0.1),
    AgentImplant("tool-agent", "powershell", TOOL_AGENTS["powershell"], "http", False, True,
                 "/news.php", 60, 0.3),
)  # fmt: skip


def _tls_c2(
    rng: np.random.Generator,
    ctx: WebContext,
    host: int,
    ts: npt.NDArray[np.int64],
    *,
    name: str | None,
    server: int,
    port: int,
    user_agent: str,
    via_proxy: bool,
    median_s: float = 0.3,
) -> tuple[npt.NDArray[np.int64], Exchanges]:
    """HTTPS check-ins at ts: durations and the exchanges (a Let's Encrypt certificate)."""
    n = ts.size
    duration = durations(rng, n, median_s)
    src = np.full(n, ctx.host_ip(host), dtype=np.uint32)
    tasked = rng.random(n) < 0.03
    ex = exchanges(
        ts,
        src=src,
        server=server,
        port=port,
        tls=True,
        duration_us=duration,
        sni=name or "-",
        user_agent=user_agent,
        cert_fps=chain(name or int_to_ip(server), LETS_ENCRYPT),
        resumed=rng.random(n) < 0.8,
        request_body=np.where(tasked, rng.integers(2_000, 40_000, n), rng.integers(80, 120, n)),
        response_body=np.where(tasked, rng.integers(20_000, 90_000, n), rng.integers(60, 90, n)),
        resolve=None if via_proxy or name is None else lookup_mask(src, [name] * n, ts, _TTL_S),
        ttl_s=_TTL_S,
    )
    return duration, ex


def plan_proxy_beacon(
    rng: np.random.Generator, ctx: WebContext, host: int, *, odd_port: bool = False
) -> WebRun:
    """A jittered HTTPS beacon through the proxy: to 443 (Cobalt Strike defaults), or to
    ODD_PORT with the host's own browser agent."""
    name = c2_domain(rng, ctx.taken)
    server = ctx.servers(rng, 1)[0]
    sleep_s, jitter, kind = (300.0, 0.2, "symmetric") if odd_port else (90.0, 0.3, "one-sided")
    ts = beacon_times(rng, ctx, host, sleep_s=sleep_s, jitter_ratio=jitter, jitter_kind=kind)
    agent = BROWSERS[int(ctx.fleet.browser[host])][0] if odd_port else CS_AGENT
    port = ODD_PORT if odd_port else 443
    duration, ex = _tls_c2(
        rng, ctx, host, ts, name=name, server=server, port=port, user_agent=agent, via_proxy=True
    )
    requests, first, last = span(ex)
    truth = WebC2Truth(
        kind="odd-port" if odd_port else "proxy-beacon",
        src=int_to_ip(ctx.host_ip(host)),
        host=name,
        server=int_to_ip(server),
        port=port,
        protocol="https",
        via_proxy=True,
        user_agent=agent,
        sleep_s=sleep_s,
        jitter_ratio=jitter,
        jitter_kind=kind,
        hours_utc=(),
        longest_s=float(duration.max(initial=0)) / 1e6,
        requests=requests,
        first_seen=first,
        last_seen=last,
        uids=(),
    )
    return WebRun(ex, truth)


def plan_burst(rng: np.random.Generator, ctx: WebContext, host: int) -> WebRun:
    """An implant asleep all day but for a burst of check-ins at 03:00 (UTC, the office's time)."""
    times = []
    for day in range(ctx.days):
        start = ctx.start_us + day * DAY_US + BURST_HOUR_UTC * 3_600_000_000
        gaps = rng.uniform(3, 15, size=int(rng.integers(20, 31)))
        times.append(start + int(rng.uniform(0, 240) * 1e6) + (np.cumsum(gaps) * 1e6).astype(int))
    ts = np.concatenate(times).astype(np.int64)
    name = c2_domain(rng, ctx.taken)
    server = ctx.servers(rng, 1)[0]
    duration, ex = _tls_c2(
        rng, ctx, host, ts, name=name, server=server, port=443, user_agent="-", via_proxy=False
    )
    requests, first, last = span(ex)
    truth = WebC2Truth(
        kind="off-hours",
        src=int_to_ip(ctx.host_ip(host)),
        host=name,
        server=int_to_ip(server),
        port=443,
        protocol="https",
        via_proxy=False,
        user_agent=None,
        sleep_s=9.0,
        jitter_ratio=0.67,
        jitter_kind="-",
        hours_utc=(BURST_HOUR_UTC,),
        longest_s=float(duration.max(initial=0)) / 1e6,
        requests=requests,
        first_seen=first,
        last_seen=last,
        uids=(),
    )
    return WebRun(ex, truth)


def plan_long_connection(rng: np.random.Generator, ctx: WebContext, host: int) -> WebRun:
    """One TLS connection held for hours on the first day (an interactive tunnel to the C2)."""
    start = ctx.start_us + int(rng.uniform(9, 11) * 3_600) * 1_000_000
    duration_us = int(rng.uniform(5.5, 7.0) * 3_600) * 1_000_000
    server = ctx.servers(rng, 1)[0]
    src = np.full(1, ctx.host_ip(host), dtype=np.uint32)
    ex = exchanges(
        np.array([start], dtype=np.int64),
        src=src,
        server=server,
        port=443,
        tls=True,
        duration_us=np.array([duration_us]),
        cert_fps=chain(int_to_ip(server), ""),
        validation="self signed certificate",
        request_body=int(rng.integers(2_000_000, 6_000_000)),
        response_body=int(rng.integers(8_000_000, 30_000_000)),
    )
    requests, first, last = span(ex)
    truth = WebC2Truth(
        kind="long-connection",
        src=int_to_ip(ctx.host_ip(host)),
        host=None,
        server=int_to_ip(server),
        port=443,
        protocol="https",
        via_proxy=False,
        user_agent=None,
        sleep_s=0.0,
        jitter_ratio=0.0,
        jitter_kind="-",
        hours_utc=(),
        longest_s=duration_us / 1e6,
        requests=requests,
        first_seen=first,
        last_seen=last,
        uids=(),
    )
    return WebRun(ex, truth)


def _fill(rng: np.random.Generator, template: str, n: int) -> list[str]:
    ids = rng.integers(1 << 32, size=n)
    numbers = rng.integers(1000, 99_999, size=n)
    return [template.format(h=f"{i:08x}", n=k) for i, k in zip(ids, numbers, strict=True)]


def plan_agent(
    rng: np.random.Generator, ctx: WebContext, host: int, implant: AgentImplant
) -> WebRun:
    """An implant on a Windows Chrome/Edge workstation calling home with another agent."""
    server = ctx.servers(rng, 1)[0]
    name = c2_domain(rng, ctx.taken) if implant.named else None
    if implant.tool == "atari":  # the RITA sample's beacon: an innocent-looking www name
        a, b = rng.choice(len(RARE_WORDS), size=2, replace=False)
        name = f"www.{RARE_WORDS[a]}{RARE_WORDS[b]}.com"
        ctx.taken.add(name)
    ts = beacon_times(rng, ctx, host, sleep_s=implant.sleep_s, jitter_ratio=implant.jitter_ratio)
    n = ts.size
    src = np.full(n, ctx.host_ip(host), dtype=np.uint32)
    if implant.protocol == "https":
        _, ex = _tls_c2(
            rng, ctx, host, ts, name=name, server=server, port=443,
            user_agent=implant.user_agent, via_proxy=implant.via_proxy,
        )  # fmt: skip
    else:
        host_header = name or int_to_ip(server)
        posts = rng.random(n) < (0.05 if implant.tool == "powershell" else 0.0)
        ex = exchanges(
            ts,
            src=src,
            server=server,
            port=80,
            tls=False,
            duration_us=durations(rng, n, 0.15),
            host=host_header,
            uri=_fill(rng, implant.uri, n),
            method=np.where(posts, "POST", "GET").tolist(),
            user_agent=implant.user_agent,
            mime="text/plain",
            request_body=np.where(posts, rng.integers(200, 4_000, n), 0),
            response_body=rng.integers(20, 400, n),
            resolve=(
                lookup_mask(src, [host_header] * n, ts, _TTL_S)
                if implant.named and not implant.via_proxy
                else None
            ),
            ttl_s=_TTL_S,
        )
    requests, first, last = span(ex)
    truth = AgentTruth(
        kind=implant.kind,
        src=int_to_ip(ctx.host_ip(host)),
        host=name,
        server=int_to_ip(server),
        port=443 if implant.protocol == "https" else 80,
        protocol=implant.protocol,
        via_proxy=implant.via_proxy,
        user_agent=implant.user_agent,
        usual_user_agent=BROWSERS[int(ctx.fleet.browser[host])][0],
        tool=implant.tool,
        requests=requests,
        first_seen=first,
        last_seen=last,
        uids=(),
    )
    return WebRun(ex, truth)


def plan_http10(rng: np.random.Generator, ctx: WebContext, host: int) -> WebRun:
    """An implant speaking HTTP/1.0 to its server's address, with no Host header."""
    server = ctx.servers(rng, 1)[0]
    ts = beacon_times(rng, ctx, host, sleep_s=180, jitter_ratio=0.2)
    n = ts.size
    agent = "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.1)"
    ex = exchanges(
        ts,
        src=ctx.host_ip(host),
        server=server,
        port=80,
        tls=False,
        duration_us=durations(rng, n, 0.2),
        uri=_fill(rng, "/index.asp?id={n}", n),
        version="1.0",
        user_agent=agent,
        response_body=rng.integers(100, 600, n),
    )
    requests, first, last = span(ex)
    truth = HttpAnomalyTruth(
        kind="http-1.0",
        src=int_to_ip(ctx.host_ip(host)),
        hosts=(),
        servers=(int_to_ip(server),),
        port=80,
        version="1.0",
        path="/index.asp",
        user_agent=agent,
        requests=requests,
        first_seen=first,
        last_seen=last,
        uids=(),
    )
    return WebRun(ex, truth)


def plan_same_path(rng: np.random.Generator, ctx: WebContext, host: int) -> WebRun:
    """Simda-style: every ~20 minutes the bot tries a few of the 40 (compromised) sites on its
    list, spread over three servers, with the same `GET /login.php`."""
    names = _site_names(rng, SAME_PATH_NAMES, ctx.taken)
    servers = np.array(ctx.servers(rng, 3), dtype=np.uint32)
    cycles = beacon_times(rng, ctx, host, sleep_s=1_200, jitter_ratio=0.3)
    tries = rng.integers(2, 5, size=cycles.size)
    ts = np.repeat(cycles, tries) + (rng.uniform(0, 20, tries.sum()) * 1e6).astype(np.int64)
    ts.sort()
    pick = rng.integers(0, len(names), size=ts.size)
    name_of = [names[i] for i in pick]
    src = np.full(ts.size, ctx.host_ip(host), dtype=np.uint32)
    agent = "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0)"
    ex = exchanges(
        ts,
        src=src,
        server=servers[pick % servers.size],
        port=80,
        tls=False,
        duration_us=durations(rng, ts.size, 0.4),
        host=name_of,
        uri=SAME_PATH,
        user_agent=agent,
        response_body=rng.integers(200, 2_000, ts.size),
        resolve=lookup_mask(src, name_of, ts, _TTL_S),
        ttl_s=_TTL_S,
    )
    requests, first, last = span(ex)
    truth = HttpAnomalyTruth(
        kind="same-path",
        src=int_to_ip(ctx.host_ip(host)),
        hosts=tuple(sorted(set(name_of))),
        servers=tuple(sorted({int_to_ip(int(s)) for s in ex.server})),
        port=80,
        version="1.1",
        path=SAME_PATH,
        user_agent=agent,
        requests=requests,
        first_seen=first,
        last_seen=last,
        uids=(),
    )
    return WebRun(ex, truth)


def _site_names(rng: np.random.Generator, n: int, taken: set[str]) -> list[str]:
    """n distinct small-business names (the compromised sites the bot's list points at)."""
    names: list[str] = []
    while len(names) < n:
        a, b = rng.choice(len(RARE_WORDS), size=2, replace=False)
        name = f"{RARE_WORDS[a]}{RARE_WORDS[b]}{int(rng.integers(2, 99))}.com"
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names
