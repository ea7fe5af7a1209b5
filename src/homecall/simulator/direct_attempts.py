"""Direct connections from proxy-only hosts, which the gateway denies (its log) and the sensor
sees unanswered (conn.log S0): an implant with a hard-coded C2 address (truth kind
proxy-bypass), and the benign ones: applications that try their vendor directly before using
the proxy, Teams probing its media relays over UDP, and a workstation whose time client asks
a server the firewall does not allow (NTP goes only to the pool the fleet uses)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from homecall.simulator.addresses import draw_public_ips, ip_to_int
from homecall.simulator.dns import named_lookups
from homecall.simulator.flows import Flows, concat
from homecall.simulator.internet import PROVIDERS
from homecall.simulator.netrows import S0, day_times, tcp_attempts, udp_rows
from homecall.simulator.network_c2 import NetDay, NetRun, benign_entry, c2_entry
from homecall.simulator.truth import BenignNetwork
from homecall.simulator.web_runs import WebContext, beacon_times, working_times

__all__ = [
    "APPS",
    "BYPASS_JITTER",
    "BYPASS_SLEEP_S",
    "plan_apps",
    "plan_bypass",
    "plan_ntp",
    "plan_teams",
]

BYPASS_SLEEP_S = 300.0  # the implant retries its server every five minutes...
BYPASS_JITTER = 0.2  # ...give or take 20 %
# Applications that ignore the system proxy at first: (name, provider, port, tries a day)
APPS = (
    ("zoom-updater", "aws", 443, 2.0),
    ("adobe-creative-cloud", "akamai", 443, 3.0),
    ("dropbox", "aws", 443, 1.5),
)
TEAMS_RELAY_BLOCKS = ("52.112.0.0/14", "52.120.0.0/14")  # Microsoft Teams media relays
TEAMS_PORTS = (3478, 3479, 3480, 3481)
_STUN_BYTES = 108  # a binding request with ICE attributes
TIME_WINDOWS = "time.windows.com"  # Windows' default time server outside a domain
TIME_WINDOWS_ADDRESS = "168.61.215.74"
_TIME_WINDOWS_TTL_S = 300
_NTP_TRIES_PER_DAY = 6.0  # logons, resumes, "Sync now": irregular, not a timer


def plan_bypass(rng: np.random.Generator, ctx: WebContext, host: int) -> NetRun:
    """An implant on proxy-only `host` calling its server's address directly on port 443 every
    BYPASS_SLEEP_S; the gateway drops every attempt."""
    server = ctx.servers(rng, 1)[0]
    times = beacon_times(
        rng, ctx, host, sleep_s=BYPASS_SLEEP_S, jitter_ratio=BYPASS_JITTER, jitter_kind="symmetric"
    )
    src = ctx.host_ip(host)
    n = times.size
    draw = _attempts(np.full(n, src, np.uint32), times, np.full(n, server, np.uint32), 443)
    entry = c2_entry(
        "proxy-bypass", src, server, 443, proto="tcp", service=None, family="hard-coded-c2",
        period_s=BYPASS_SLEEP_S, jitter_ratio=BYPASS_JITTER,
    )  # fmt: skip
    return NetRun(entry, draw)


def plan_apps(rng: np.random.Generator, ctx: WebContext, hosts: list[int]) -> list[NetRun]:
    """Each of APPS on a few of the proxy-only `hosts`, trying its vendor's two addresses
    directly now and then while the user is in."""
    runs = []
    for name, provider, port, per_day in APPS:
        if not hosts:
            break
        size = min(len(hosts), 2 + int(rng.integers(3)))
        mine = np.sort(rng.choice(np.array(hosts), size=size, replace=False)).astype(np.int64)
        servers = np.array(draw_public_ips(rng, PROVIDERS[provider].blocks, 2, ctx.used_ips))
        who, when = working_times(rng, ctx, mine, per_day)
        dst = servers[(rng.random(when.size) < 0.2).astype(np.int64)]
        src = ctx.fleet.ips[who].astype(np.uint32)
        entry = _benign("app-direct", port, "tcp", f"{name} tries its vendor before the proxy")
        runs.append(NetRun(entry, _attempts(src, when, dst.astype(np.uint32), port)))
    return runs


def _attempts(
    src: npt.NDArray[np.uint32], when: npt.NDArray[np.int64], dst: npt.NDArray[np.uint32], port: int
) -> Callable[[np.random.Generator, int], NetDay]:
    """A day's rows of TCP attempts (src -> dst:port at `when`) that nobody answers."""

    def draw(g: np.random.Generator, day_start_us: int) -> NetDay:
        i = day_times(when, day_start_us)
        state = np.full(i.size, S0, dtype=np.int64)
        conn = tcp_attempts(
            g, ts_us=when[i], orig_h=src[i], resp_h=dst[i], resp_p=port, state=state
        )
        return NetDay(Flows(conn=conn))

    return draw


def plan_teams(rng: np.random.Generator, ctx: WebContext, hosts: list[int]) -> NetRun:
    """Teams calls from the proxy-only `hosts` (about one every other day each): the client
    first sends STUN to two media relays on UDP 3478-3481, unanswered, then falls back to TCP
    443 through the proxy (not drawn)."""
    relays = np.array(draw_public_ips(rng, TEAMS_RELAY_BLOCKS, 6, ctx.used_ips), dtype=np.uint32)
    who, when = working_times(rng, ctx, np.array(sorted(hosts), dtype=np.int64), 0.5)
    per_call = 2 * len(TEAMS_PORTS)
    src = np.repeat(ctx.fleet.ips[who].astype(np.uint32), per_call)
    pair = rng.choice(relays.size, size=(when.size, 2), replace=True)
    dst = np.repeat(relays[pair], len(TEAMS_PORTS), axis=1).ravel()
    port = np.tile(np.array(TEAMS_PORTS, dtype=np.int64), 2 * when.size)
    ts = np.repeat(when, per_call) + np.tile(np.arange(per_call) * 20_000, when.size)
    n = ts.size
    pkts = 4 + rng.poisson(3.0, size=n)
    duration = ((pkts - 1) * rng.uniform(0.8, 1.6, size=n) * 1e6).astype(np.int64)
    client_port = 50_000 + rng.integers(0, 20, size=n)  # Teams audio ports 50000-50019

    def draw(g: np.random.Generator, day_start_us: int) -> NetDay:
        i = day_times(ts, day_start_us)
        conn = udp_rows(
            g, ts_us=ts[i], orig_h=src[i], resp_h=dst[i], resp_p=port[i], orig_pkts=pkts[i],
            payload=np.full(i.size, _STUN_BYTES), answer=np.zeros(i.size, dtype=np.int64),
            duration_us=duration[i], orig_p=client_port[i],
        )  # fmt: skip
        return NetDay(Flows(conn=conn))

    return NetRun(
        _benign("teams-media", None, "udp", "STUN to Teams media relays, dropped, before TCP"),
        draw,
    )


def plan_ntp(rng: np.random.Generator, ctx: WebContext, host: int) -> NetRun:
    """A proxy-only workstation set up outside the domain: Windows' own time client keeps
    asking time.windows.com (looked up through the internal resolver) whenever it tries to
    sync, a few times a day at irregular moments, and the gateway drops every request."""
    src = ctx.host_ip(host)
    _, when = working_times(rng, ctx, np.array([host], dtype=np.int64), _NTP_TRIES_PER_DAY)
    server = ip_to_int(TIME_WINDOWS_ADDRESS)

    def draw(g: np.random.Generator, day_start_us: int) -> NetDay:
        ts = when[day_times(when, day_start_us)]
        n = ts.size
        pkts = g.integers(2, 5, size=n)  # the request and its retries, 2 s apart
        conn = udp_rows(
            g, ts_us=ts, orig_h=np.full(n, src, np.uint32), resp_h=np.full(n, server, np.uint32),
            resp_p=np.full(n, 123, np.int64), orig_pkts=pkts, payload=np.full(n, 48, np.int64),
            answer=np.zeros(n, dtype=np.int64), duration_us=(pkts - 1) * 2_000_000,
            orig_p=np.full(n, 123, np.int64), service="ntp",
        )  # fmt: skip
        dns = named_lookups(
            g, np.full(n, src, np.uint32), ts, query=TIME_WINDOWS, answers=TIME_WINDOWS_ADDRESS,
            ttl_s=_TIME_WINDOWS_TTL_S, answered_by=day_start_us,
        )  # fmt: skip
        return NetDay(concat([Flows(conn=conn), dns]))

    entry = _benign("ntp-direct", 123, "udp", "w32time asks time.windows.com", TIME_WINDOWS)
    return NetRun(entry, draw)


def _benign(
    kind: str, port: int | None, proto: str, detail: str, dst: str | None = None
) -> BenignNetwork:
    return benign_entry(kind, "proxy-bypass", dst=dst, port=port, proto=proto, detail=detail)
