"""The network side of a simulation: C2 that only flow records and a firewall log show (a direct
C2 the gateway denies, IRC bots, a P2P bot, a spam bot), their benign look-alikes, the day's
smtp.log and the gateway's firewall/kern.log, and their truth (docs/simulator.md).

Every run is drawn once for the whole simulation; its rows are drawn per day from its own random
stream, appended after the rest of the day's traffic, and tagged, so that the truth's counts and
uids are measured on the rows as written.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from homecall.simulator.addresses import RESOLVER, int_to_ip, is_internal
from homecall.simulator.firewall_log import (
    ALLOWED_DIRECT,
    DEVICE,
    INBOUND_OPEN,
    INSIDE,
    KERN_LOG,
    OUTSIDE,
    PUBLIC_ADDRESS,
    Packets,
    denied_outbound,
    internet_scans,
    write_kern_log,
)
from homecall.simulator.flows import Columns, Flows, concat, row_count, stack_columns
from homecall.simulator.internet import BROWSERS
from homecall.simulator.truth import (
    MAX_UIDS,
    BenignNetwork,
    FirewallTruth,
    NetworkC2Truth,
    iso_utc,
)
from homecall.simulator.web_runs import WebContext
from homecall.simulator.zeeklog import write_log

__all__ = [
    "FAILED_STATES",
    "SMTP_LOG",
    "NetDay",
    "NetRun",
    "NetworkDay",
    "NetworkLogs",
    "NetworkWorld",
    "benign_entry",
    "c2_entry",
    "join_days",
    "network_day",
]

SMTP_LOG = Path("smtp.log")
NTP_POOL = "pool.ntp.org"  # the name every machine's NTP agent syncs with (periodic.py)
FAILED_STATES = ("S0", "REJ")  # attempts nobody answered or the server refused
DAY_US = 86_400 * 1_000_000
NetEntry = NetworkC2Truth | BenignNetwork
Rng = Callable[[int], np.random.Generator]


def c2_entry(
    kind: str,
    src: int,
    dst: int | None,
    port: int | None,
    *,
    proto: str,
    service: str | None,
    family: str,
    period_s: float = 0.0,
    jitter_ratio: float = 0.0,
) -> NetworkC2Truth:
    """An injected channel's truth before its rows are measured."""
    return NetworkC2Truth(
        kind=kind, src=int_to_ip(src), dst=int_to_ip(dst) if dst is not None else None,
        port=port, proto=proto, service=service, family=family, connections=0, failed=0,
        peers=0, firewall_lines=0, period_s=period_s, jitter_ratio=jitter_ratio, longest_s=0.0,
        messages=0, senders=0, recipients=0, first_seen="-", last_seen="-", uids=(),
    )  # fmt: skip


def benign_entry(
    kind: str,
    detector: str,
    *,
    dst: str | None,
    port: int | None,
    proto: str,
    detail: str,
    expected: str = "below-medium",
    src: int | None = None,
) -> BenignNetwork:
    """A look-alike's truth before its rows are measured (hosts and counts come later; src
    too, when one internal host made all its rows)."""
    return BenignNetwork(
        kind=kind, detector=detector, expected=expected,
        src=int_to_ip(src) if src is not None else None, hosts=0, dst=dst, port=port,
        proto=proto, connections=0, firewall_lines=0, peers=0, detail=detail,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class NetDay:
    """A run's rows of one day: flows, and smtp.log rows whose `conn` indexes flows.conn."""

    flows: Flows
    smtp: Columns = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NetRun:
    """One injected channel or look-alike: its truth (the measured fields are filled in from
    the written rows) and how a day of it is drawn: (rng, day_start_us) -> rows."""

    entry: NetEntry
    draw: Callable[[np.random.Generator, int], NetDay]


@dataclass(frozen=True, slots=True)
class NetworkWorld:
    """The network runs and the firewall's view of the hosts."""

    runs: tuple[NetRun, ...]
    proxy_only: npt.NDArray[np.uint32]  # sorted: hosts the firewall lets out only via the proxy
    windows: npt.NDArray[np.uint32]  # sorted: Windows machines (their packets' initial TTL)
    ntp_servers: npt.NDArray[np.uint32]  # sorted: where proxy-only hosts may send NTP

    @staticmethod
    def of(runs: Sequence[NetRun], ctx: WebContext) -> NetworkWorld:
        """The world of `runs` in the web world's context (its proxied hosts, and the NTP pool
        the fleet syncs with)."""
        is_windows = np.array(["Windows" in BROWSERS[b][0] for b in ctx.fleet.browser])
        cat = ctx.cat
        pool = cat.ids[NTP_POOL]
        ntp = cat.ips[cat.ip_start[pool] : cat.ip_start[pool] + cat.ip_count[pool]]
        return NetworkWorld(
            runs=tuple(runs),
            proxy_only=np.array(sorted(ctx.proxied), dtype=np.uint32),
            windows=np.sort(ctx.fleet.ips[is_windows]).astype(np.uint32),
            ntp_servers=np.sort(ntp).astype(np.uint32),
        )


@dataclass(frozen=True, slots=True)
class NetworkDay:
    """A day of every network run: rows, the run of each conn row, and smtp.log rows."""

    flows: Flows
    tags: npt.NDArray[np.int64]
    smtp: Columns  # `conn` indexes flows.conn


def network_day(world: NetworkWorld | None, rng: Rng, day_start_us: int) -> NetworkDay:
    """Every run's rows of the day starting at day_start_us, each from its own stream."""
    if world is None:
        return NetworkDay(Flows(), np.zeros(0, dtype=np.int64), {})
    days = [run.draw(rng(i), day_start_us) for i, run in enumerate(world.runs)]
    counts = [row_count(d.flows.conn) for d in days]
    joined = join_days(days)
    tags = np.repeat(np.arange(len(days), dtype=np.int64), counts)
    return NetworkDay(joined.flows, tags, joined.smtp)


def join_days(parts: Sequence[NetDay]) -> NetDay:
    """The parts' rows one after another (smtp rows still point at their conn rows)."""
    offsets = np.cumsum([0] + [row_count(p.flows.conn) for p in parts])
    smtp = [
        {**p.smtp, "conn": np.asarray(p.smtp["conn"], dtype=np.int64) + offsets[i]}
        for i, p in enumerate(parts)
        if row_count(p.smtp)
    ]
    return NetDay(concat([p.flows for p in parts]), stack_columns(smtp))


@dataclass(slots=True)
class _Tally:
    """What a run's written rows add up to, over the days."""

    connections: int = 0
    failed: int = 0
    firewall_lines: int = 0
    longest_us: int = 0
    first_us: int | None = None
    last_us: int | None = None
    peers: set[int] = field(default_factory=set)
    hosts: set[int] = field(default_factory=set)
    uids: list[tuple[int, str]] = field(default_factory=list)
    messages: int = 0
    senders: set[str] = field(default_factory=set)
    recipients: set[str] = field(default_factory=set)


@dataclass(slots=True)
class NetworkLogs:
    """Writes each day's smtp.log and firewall/kern.log and measures the runs' truth."""

    world: NetworkWorld | None
    start_us: int  # the simulation's first midnight
    paths: list[Path] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=lambda: {"smtp": 0, "firewall": 0})
    outbound_lines: int = 0
    inbound_lines: int = 0
    scanners: set[int] = field(default_factory=set)
    tallies: dict[int, _Tally] = field(default_factory=dict)

    def write(
        self,
        folder: Path,
        conn: Columns,
        day: NetworkDay,
        opened: dt.datetime,
        rng: np.random.Generator,
    ) -> None:
        """FOLDER/smtp.log and FOLDER/firewall/kern.log of a day; `conn` is the day's finalized
        conn columns, whose last rows are `day`'s."""
        offset = row_count(conn) - row_count(day.flows.conn)
        closed = opened + dt.timedelta(days=1)
        smtp = _finalized_smtp(day.smtp, conn, offset)
        self.rows["smtp"] += write_log(folder / SMTP_LOG, "smtp", smtp, opened, closed)
        self.paths.append(folder / SMTP_LOG)
        day_start_us = int(opened.timestamp()) * 1_000_000
        used = {int(ip) for ip in np.asarray(conn["id.resp_h"], dtype=np.uint32)[offset:]}
        scans = internet_scans(rng, day_start_us, used)
        denied = Packets.empty()
        if self.world is not None:
            world = self.world
            denied = denied_outbound(rng, conn, world.proxy_only, world.windows, world.ntp_servers)
        lines = write_kern_log(
            folder / KERN_LOG, Packets.stack([denied, scans]), day_start_us + DAY_US, self.start_us
        )
        self.rows["firewall"] += lines
        self.paths.append(folder / KERN_LOG)
        self.outbound_lines += len(denied)
        self.inbound_lines += len(scans)
        self.scanners |= set(np.unique(scans.src).tolist())
        self._tally(conn, day, offset, denied, smtp)

    def _tally(
        self, conn: Columns, day: NetworkDay, offset: int, denied: Packets, smtp: Columns
    ) -> None:
        n = row_count(day.flows.conn)
        if n == 0:
            return
        ts = np.asarray(conn["ts"], dtype=np.int64)[offset:]
        src = np.asarray(conn["id.orig_h"], dtype=np.uint32)[offset:]
        dst = np.asarray(conn["id.resp_h"], dtype=np.uint32)[offset:]
        state = conn["conn_state"]
        if isinstance(state, str):
            failed = np.full(n, state in FAILED_STATES)
        else:
            mine = pc.is_in(state.slice(offset), pa.array(FAILED_STATES))
            failed = mine.to_numpy(zero_copy_only=False)
        duration = np.asarray(conn["duration"], dtype=np.int64)[offset:]
        uids = conn["uid"].slice(offset).to_pylist()
        lines = np.bincount(denied.origin[denied.origin >= offset] - offset, minlength=n)
        port = np.asarray(conn["id.resp_p"], dtype=np.int64)[offset:]
        lookup = (dst == RESOLVER) & (port == 53)  # a run's own lookups are not its connections
        for tag in np.unique(day.tags).tolist():
            rows = np.flatnonzero((day.tags == tag) & ~lookup)
            if rows.size == 0:
                continue
            t = self.tallies.setdefault(tag, _Tally())
            t.connections += rows.size
            t.failed += int(failed[rows].sum())
            t.firewall_lines += int(lines[rows].sum())
            t.longest_us = max(t.longest_us, int(duration[rows].max()))
            low, high = int(ts[rows].min()), int(ts[rows].max())
            t.first_us = low if t.first_us is None else min(t.first_us, low)
            t.last_us = high if t.last_us is None else max(t.last_us, high)
            inside = is_internal(src[rows])
            t.hosts |= set(src[rows][inside].tolist()) | set(dst[rows][~inside].tolist())
            outside = ~is_internal(dst[rows])
            t.peers |= set(dst[rows][outside & inside].tolist())
            mine = rows[inside]  # connections the run's internal hosts opened
            t.uids += [(int(ts[r]), uids[r]) for r in mine[np.argsort(ts[mine])][:MAX_UIDS]]
        if row_count(smtp):
            index = np.asarray(day.smtp["conn"], dtype=np.int64)
            tags = day.tags[index]
            senders = day.smtp["mailfrom"].to_pylist()
            recipients = day.smtp["rcptto"].to_pylist()
            for tag, sender, rcpt in zip(tags.tolist(), senders, recipients, strict=True):
                t = self.tallies.setdefault(tag, _Tally())
                t.messages += 1
                if sender and sender != "-":
                    t.senders.add(sender)
                if rcpt and rcpt != "-":
                    t.recipients |= set(rcpt.split(","))

    def truth(
        self, proxy_hosts: tuple[str, ...]
    ) -> tuple[FirewallTruth, tuple[NetworkC2Truth, ...], tuple[BenignNetwork, ...]]:
        """The firewall, the injected channels and the look-alikes, measured on the rows."""
        servers = () if self.world is None else tuple(self.world.ntp_servers.tolist())
        entries = [] if self.world is None else [
            _measured(run.entry, self.tallies.get(i, _Tally()))
            for i, run in enumerate(self.world.runs)
        ]  # fmt: skip
        scans = BenignNetwork(
            kind="internet-scan", detector="proxy-bypass", expected="below-medium", src=None,
            hosts=0, dst=int_to_ip(PUBLIC_ADDRESS), port=None, proto="tcp+udp", connections=0,
            firewall_lines=self.inbound_lines, peers=len(self.scanners),
            detail="the Internet's scans of the public address, dropped at the outside interface",
        )  # fmt: skip
        firewall = FirewallTruth(
            device=DEVICE,
            log=KERN_LOG.as_posix(),
            public_address=int_to_ip(PUBLIC_ADDRESS),
            inside_interface=INSIDE,
            outside_interface=OUTSIDE,
            proxy_only=proxy_hosts,
            allowed_direct=tuple(
                f"{proto}/{port} {int_to_ip(ip)}"
                for proto, port in ALLOWED_DIRECT
                for ip in servers
            ),
            inbound_open=tuple(f"{int_to_ip(ip)} {p}/{port}" for ip, p, port in INBOUND_OPEN),
            sensor="inside",
            lines=self.rows["firewall"],
            denied_outbound=self.outbound_lines,
            denied_inbound=self.inbound_lines,
        )
        c2 = tuple(e for e in entries if isinstance(e, NetworkC2Truth))
        benign = tuple(e for e in entries if isinstance(e, BenignNetwork))
        return firewall, c2, (*benign, scans)


def _measured(entry: NetEntry, t: _Tally) -> NetEntry:
    """The entry with its counts from the written rows."""
    if isinstance(entry, BenignNetwork):
        inside = sorted(ip for ip in t.hosts if is_internal(np.array([ip], np.uint32))[0])
        return dataclasses.replace(
            entry,
            src=entry.src or (int_to_ip(inside[0]) if len(inside) == 1 else None),
            hosts=len(inside),
            connections=t.connections,
            firewall_lines=t.firewall_lines,
            peers=len(t.peers),
        )
    uids = tuple(uid for _, uid in sorted(t.uids)[:MAX_UIDS])
    return dataclasses.replace(
        entry,
        connections=t.connections,
        failed=t.failed,
        peers=len(t.peers),
        firewall_lines=t.firewall_lines,
        longest_s=round(t.longest_us / 1e6, 6),
        messages=t.messages,
        senders=len(t.senders),
        recipients=len(t.recipients),
        first_seen=iso_utc(t.first_us) if t.first_us is not None else "-",
        last_seen=iso_utc(t.last_us) if t.last_us is not None else "-",
        uids=uids,
    )


def _finalized_smtp(smtp: Columns, conn: Columns, offset: int) -> Columns:
    """smtp.log columns: uid and endpoints from the conn row each row points at."""
    if not row_count(smtp):
        return {}
    rows = dict(smtp)
    index = np.asarray(rows.pop("conn"), dtype=np.int64) + offset
    rows["uid"] = conn["uid"].take(pa.array(index))
    for name in ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p"):
        rows[name] = np.asarray(conn[name])[index]
    return rows
