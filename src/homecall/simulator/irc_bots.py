"""IRC: bots idling in their botnet's channel (truth kind irc), one on IRC's own port and one
speaking plain IRC on the HTTPS port, and a developer on Libera.Chat over TLS (the look-alike).

A bot holds one TCP session for hours, answering the server's PINGs; when the server drops it
(a ping timeout, a restart) it reconnects after its timer, sometimes to a refused port first.
Zeek logs a connection when it ends, with its start as ts; the simulation puts a session in the
log of the day it started (every day's rows start at its midnight), and one still open when
the simulation ends in no log.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from homecall.simulator.addresses import int_to_ip
from homecall.simulator.c2 import c2_domain
from homecall.simulator.certs import LETS_ENCRYPT, chain
from homecall.simulator.dns import named_lookups, resolve_times
from homecall.simulator.flows import STATES, Columns, Flows, concat, constant, tcp_conns
from homecall.simulator.netrows import REJ, S0, day_times
from homecall.simulator.network_c2 import NetDay, NetRun, benign_entry, c2_entry
from homecall.simulator.web import tls_rows
from homecall.simulator.web_runs import WebContext

__all__ = ["IRC_PORT", "LIBERA", "OFF_PORT", "Sessions", "bot_sessions", "plan_bot", "plan_user"]

IRC_PORT = 6667
OFF_PORT = 443  # the second bot speaks plain IRC on the HTTPS port
LIBERA = "irc.libera.chat"
LIBERA_PORT = 6697  # IRC over TLS (RFC 7194)
_PING_S = 120.0  # servers PING idle clients every two minutes (UnrealIRCd, InspIRCd)
_RECONNECT_S = 30.0  # the bot's reconnect timer, plus up to 15 s
_SESSION_S = 2.5 * 3600  # median session before a ping timeout or a server restart
_REFUSED_RATIO = 0.15  # reconnects that first meet a server that is down
_MOTD_BYTES = 2_600  # the server's welcome, MOTD and the channel's topic and names
_LOGIN_BYTES = 120  # NICK, USER, JOIN
_PING_BYTES = 24  # "PING :irc.example.net" and its PONG
_TTL_S = 300
_SF, _RSTO, _RSTR = (STATES.index(s) for s in ("SF", "RSTO", "RSTR"))


@dataclass(frozen=True, slots=True)
class Sessions:
    """Connection attempts: start and end (us), and whether the server took them."""

    start_us: npt.NDArray[np.int64]
    end_us: npt.NDArray[np.int64]
    up: npt.NDArray[np.bool_]


def bot_sessions(rng: np.random.Generator, start_us: int, end_us: int) -> Sessions:
    """A bot's sessions from shortly after start_us until end_us, reconnecting on its timer."""
    starts: list[int] = []
    ends: list[int] = []
    up: list[bool] = []
    t = start_us + int(rng.uniform(0, 1_800) * 1e6)
    while t < end_us:
        if starts and rng.random() < _REFUSED_RATIO:  # the server is down: retry on the timer
            for _ in range(1 + int(rng.integers(3))):
                starts.append(t)
                ends.append(t + int(rng.uniform(0.001, 0.05) * 1e6))
                up.append(False)
                t += int((_RECONNECT_S + rng.uniform(0, 15)) * 1e6)
        length = float(np.clip(rng.lognormal(np.log(_SESSION_S), 0.7), 120, 20 * 3600))
        starts.append(t)
        ends.append(t + int(length * 1e6))
        up.append(True)
        t = ends[-1] + int((_RECONNECT_S + rng.uniform(0, 15)) * 1e6)
    return Sessions(np.array(starts, np.int64), np.array(ends, np.int64), np.array(up, bool))


def plan_bot(rng: np.random.Generator, ctx: WebContext, host: int, port: int) -> NetRun:
    """A bot on `host` in a channel of its own server: on IRC_PORT by address, on any other
    port by a name it looks up (Zeek's protocol detection names the service irc either way)."""
    server = ctx.servers(rng, 1)[0]
    name = c2_domain(rng, ctx.taken) if port != IRC_PORT else None
    src = ctx.host_ip(host)
    end_us = ctx.start_us + ctx.days * 86_400_000_000
    sessions = bot_sessions(rng, ctx.start_us, end_us)

    def draw(g: np.random.Generator, day_start_us: int) -> NetDay:
        i = day_times(sessions.start_us, day_start_us)
        i = i[sessions.end_us[i] < end_us]  # still open when the logs stop: never logged
        conn = _irc_conns(g, sessions, i, src, server, port)
        flows = Flows(conn=conn)
        if name is not None:
            ts = sessions.start_us[i]
            fresh = resolve_times(ts, _TTL_S)
            answer = int_to_ip(server)
            dns = named_lookups(
                g, np.full(int(fresh.sum()), src, np.uint32), ts[fresh], query=name,
                answers=answer, ttl_s=_TTL_S, answered_by=day_start_us,
            )  # fmt: skip
            flows = concat([flows, dns])
        return NetDay(flows)

    family = "irc-bot" if port == IRC_PORT else "irc-bot-off-port"
    entry = c2_entry("irc", src, server, port, proto="tcp", service="irc", family=family)
    return NetRun(entry, draw)


def _irc_conns(
    rng: np.random.Generator,
    sessions: Sessions,
    rows: npt.NDArray[np.intp],
    src: int,
    server: int,
    port: int,
) -> Columns:
    """The sessions' conn rows: a quiet bot sends PONGs and, now and then, a command's output."""
    n = rows.size
    up = sessions.up[rows]
    duration = sessions.end_us[rows] - sessions.start_us[rows]
    pings = (duration / 1e6 / _PING_S).astype(np.int64)
    commands = rng.poisson(duration / 1e6 / (3 * 3600))  # the herder's orders, every few hours
    orig = _LOGIN_BYTES + _PING_BYTES * pings + commands * rng.integers(150, 600, size=n)
    resp = _MOTD_BYTES + (_PING_BYTES + 2) * pings + commands * 90
    ended = rng.choice([_SF, _RSTR, _RSTO], p=[0.5, 0.3, 0.2], size=n)
    state = np.where(up, ended, np.where(rng.random(n) < 0.7, REJ, S0))
    conn = tcp_conns(
        rng, ts_us=sessions.start_us[rows], orig_h=np.full(n, src, np.uint32),
        resp_h=np.full(n, server, np.uint32), resp_p=port, service="irc",
        orig_bytes=orig, resp_bytes=resp, duration_us=duration, state=state,
    )  # fmt: skip
    return _with_keepalives(conn, up, pings + commands)


def _with_keepalives(
    conn: Columns, up: npt.NDArray[np.bool_], exchanges: npt.NDArray[np.int64]
) -> Columns:
    """A long idle session's packets are its PINGs and PONGs, not its bytes / MTU."""
    orig_pkts = np.where(up, np.asarray(conn["orig_pkts"]) + exchanges, conn["orig_pkts"])
    resp_pkts = np.where(up, np.asarray(conn["resp_pkts"]) + exchanges, conn["resp_pkts"])
    orig_bytes = np.maximum(np.asarray(conn["orig_bytes"]), 0)
    resp_bytes = np.maximum(np.asarray(conn["resp_bytes"]), 0)
    return {
        **conn,
        "orig_pkts": orig_pkts,
        "orig_ip_bytes": np.where(up, orig_bytes + 52 * orig_pkts, conn["orig_ip_bytes"]),
        "resp_pkts": resp_pkts,
        "resp_ip_bytes": np.where(up, resp_bytes + 52 * resp_pkts, conn["resp_ip_bytes"]),
    }


def plan_user(rng: np.random.Generator, ctx: WebContext, host: int) -> NetRun:
    """A developer on `host` connected to Libera.Chat over TLS from arrival to departure,
    reconnecting once on some days."""
    servers = np.array(ctx.servers(rng, 3), dtype=np.uint32)
    src = ctx.host_ip(host)
    starts, ends = [], []
    for day in range(ctx.days):
        arrive, leave = ctx.presence.arrive_s[day, host], ctx.presence.leave_s[day, host]
        if np.isnan(arrive):
            continue
        first = arrive + rng.uniform(300, 1_800)
        last = max(first + 600, leave - rng.uniform(0, 600))
        cuts = [first, last]
        if rng.random() < 0.3:  # the Wi-Fi dropped: a new connection a minute later
            cut = rng.uniform(first + 300, last - 300) if last - first > 900 else first + 300
            cuts = [first, cut, cut + rng.uniform(20, 120), last]
        base = ctx.start_us + day * 86_400_000_000
        for a, b in zip(cuts[::2], cuts[1::2], strict=True):
            starts.append(base + int(a * 1e6))
            ends.append(base + int(b * 1e6))
    start_us = np.array(starts, dtype=np.int64)
    end_us = np.array(ends, dtype=np.int64)
    answer = ",".join(int_to_ip(int(ip)) for ip in servers)

    def draw(g: np.random.Generator, day_start_us: int) -> NetDay:
        i = day_times(start_us, day_start_us)
        n = i.size
        ts, duration = start_us[i], end_us[i] - start_us[i]
        hours = duration / 3.6e9
        dst = servers[g.integers(0, servers.size, size=n)]
        conn = tcp_conns(
            g, ts_us=ts, orig_h=np.full(n, src, np.uint32), resp_h=dst, resp_p=LIBERA_PORT,
            service="ssl", orig_bytes=(4_000 * hours + 3_000).astype(np.int64),
            resp_bytes=(g.lognormal(np.log(150_000), 0.5, n) * hours + 6_000).astype(np.int64),
            duration_us=duration, state=np.zeros(n, dtype=np.int64),
        )  # fmt: skip
        conn = _with_keepalives(conn, np.ones(n, bool), (duration / 1e6 / _PING_S).astype(np.int64))
        ssl = tls_rows(
            g, conn=np.arange(n, dtype=np.int64), ts_us=ts, duration_us=duration,
            server_name=constant(LIBERA, n), server=dst.astype(np.int64),
            tls13=np.ones(n, dtype=np.bool_), resumed=np.zeros(n, dtype=np.bool_),
            cert_fps=constant(chain(LIBERA, LETS_ENCRYPT), n), alpn="-",
        )  # fmt: skip
        dns = named_lookups(
            g, np.full(n, src, np.uint32), ts, query=LIBERA, answers=answer, ttl_s=_TTL_S,
            answered_by=day_start_us,
        )  # fmt: skip
        return NetDay(concat([Flows(conn=conn, ssl=ssl), dns]))

    entry = benign_entry(
        "irc-tls", "irc", dst=LIBERA, port=LIBERA_PORT, proto="tcp",
        detail="a developer in Libera.Chat channels over TLS during working hours",
    )  # fmt: skip
    return NetRun(entry, draw)
