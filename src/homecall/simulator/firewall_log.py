"""The gateway firewall and its netfilter log: the packets its policy drops, as the kernel's LOG
target prints them through syslog (`firewall/kern.log` in each day folder).

The gateway `gw` (Ubuntu, UFW) routes between the inside (eth1) and the Internet (eth0). Its
policy: the proxy-only hosts (the proxy's clients, truth `proxy.hosts`) may send nothing out
directly except NTP to the pool servers (an ipset refreshed from pool.ntp.org's DNS); everything
else inside may; from the Internet only the forwarded services (the portal's port 80, the mail
relay's port 25) come in. Every dropped packet is logged with
UFW's `[UFW BLOCK]` prefix (without UFW's default rate limit: no line is lost). The sensor sits
inside, so the conn rows of denied outbound attempts are in conn.log (S0: SYNs or datagrams
without an answer) and each of their packets is a line here; the Internet's packets to the
public address never reach the sensor and are lines here only. Lines are in UTC with RFC 3164
stamps (no year: the file's mtime is set to the day's end, as a reader infers the year from it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from homecall.simulator.addresses import (
    MAIL_GATEWAY,
    WEB_SERVER,
    ip_texts,
    ip_to_int,
    is_internal,
)
from homecall.simulator.flows import Columns, row_count
from homecall.simulator.netrows import draw_addresses

__all__ = [
    "ALLOWED_DIRECT",
    "DEVICE",
    "INBOUND_OPEN",
    "INSIDE",
    "KERN_LOG",
    "OUTSIDE",
    "PREFIX",
    "PUBLIC_ADDRESS",
    "SCANNER_BLOCKS",
    "Packets",
    "denied_outbound",
    "internet_scans",
    "write_kern_log",
]

KERN_LOG = Path("firewall") / "kern.log"  # inside each day folder
DEVICE = "gw"
INSIDE, OUTSIDE = "eth1", "eth0"
PREFIX = "[UFW BLOCK]"
PUBLIC_ADDRESS = ip_to_int("62.153.71.2")  # the gateway's outside address (a business line)
ALLOWED_DIRECT = (("udp", 123),)  # NTP, to the pool's servers: every machine syncs with them
INBOUND_OPEN = ((WEB_SERVER, "tcp", 80), (MAIL_GATEWAY, "tcp", 25))
# Networks known for Internet-wide scanning: research scanners (Censys, Shodan, Shadowserver)
# and VPS ranges that scan for exposed RDP, SSH and SMB.
SCANNER_BLOCKS = (
    "162.142.125.0/24", "167.94.138.0/24", "167.94.146.0/24", "71.6.135.0/24",
    "71.6.146.0/24", "66.240.205.0/24", "198.20.69.0/24", "184.105.139.0/24",
    "65.49.20.0/24", "74.82.47.0/24", "45.148.10.0/24", "80.94.95.0/24", "185.224.128.0/24",
    "194.26.29.0/24", "79.124.62.0/24", "193.163.125.0/24",
)  # fmt: skip
# Home routers and DVRs infected by Mirai-like worms: consumer broadband, mostly Asia.
BOT_BLOCKS = (
    "27.16.0.0/12", "36.96.0.0/11", "39.64.0.0/11", "42.48.0.0/13", "49.64.0.0/11",
    "58.16.0.0/13", "59.32.0.0/11", "60.160.0.0/11", "61.128.0.0/10", "113.64.0.0/10",
    "117.136.0.0/13", "122.160.0.0/12", "177.32.0.0/12", "179.96.0.0/11", "186.208.0.0/12",
    "95.24.0.0/13", "5.16.0.0/14", "78.160.0.0/11", "88.224.0.0/11", "14.160.0.0/11",
)  # fmt: skip
_BOOT_S = 61 * 86_400 + 4 * 3_600 + 1_234  # the gateway was booted this long before day one
_MAC = {  # the interface's own address, the next hop's, IPv4
    True: "00:16:3e:4a:10:00:a4:4c:11:f2:9e:01:08:00",  # eth0: the ISP's router
    False: "00:16:3e:4a:10:01:00:16:3e:0c:22:31:08:00",  # eth1: the core switch
}
_WINDOWS_SYN_BYTES = 52  # IP + TCP + MSS, NOP, WS, NOP, NOP, SACK_PERM
_LINUX_SYN_BYTES = 60  # ... and the timestamp option
_SYN_WINDOW = 64240
_UDP_HEADER_BYTES = 28
# Inbound noise per day: (kind, sources, packets per source (Poisson mean), ports, TCP?)
_SCANS = (
    ("research", 24, 18.0, (21, 22, 23, 25, 80, 110, 143, 443, 445, 993, 1433, 3306, 3389,
                            5432, 5900, 6379, 8080, 8443, 9200, 27017), True),
    ("telnet", 420, 1.5, (23, 2323, 23, 23), True),
    ("brute", 70, 6.0, (3389, 22, 445, 3389), True),
    ("udp", 60, 2.0, (161, 1900, 5060, 123, 11211, 53), False),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Packets:
    """Dropped packets, one log line each; `origin` is the conn row a packet belongs to (-1
    for the Internet's packets, which the sensor never sees)."""

    ts_us: npt.NDArray[np.int64]
    src: npt.NDArray[np.uint32]
    dst: npt.NDArray[np.uint32]
    is_tcp: npt.NDArray[np.bool_]
    spt: npt.NDArray[np.int64]
    dpt: npt.NDArray[np.int64]
    length: npt.NDArray[np.int64]  # IP total length
    ttl: npt.NDArray[np.int64]
    ip_id: npt.NDArray[np.int64]
    df: npt.NDArray[np.bool_]
    window: npt.NDArray[np.int64]
    inbound: npt.NDArray[np.bool_]  # arrived on the outside interface
    origin: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.ts_us)

    @staticmethod
    def empty() -> Packets:
        """No packets."""
        ints = np.zeros(0, dtype=np.int64)
        ips = np.zeros(0, dtype=np.uint32)
        no = np.zeros(0, dtype=np.bool_)
        return Packets(ints, ips, ips, no, ints, ints, ints, ints, ints, no, ints, no, ints)

    @staticmethod
    def stack(parts: list[Packets]) -> Packets:
        """All parts' packets in one (unsorted)."""
        return Packets(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Packets)}
        )


def denied_outbound(
    rng: np.random.Generator,
    conn: Columns,
    proxy_only: npt.NDArray[np.uint32],
    windows: npt.NDArray[np.uint32],
    allowed_servers: npt.NDArray[np.uint32],
) -> Packets:
    """The packets of the finalized conn rows the policy denies (a proxy-only host sending to an
    outside address, except ALLOWED_DIRECT to the sorted `allowed_servers`): each SYN of a TCP
    attempt, each datagram of UDP. `windows` are the sorted addresses of Windows machines
    (initial TTL 128, else 64)."""
    n = row_count(conn)
    if n == 0 or proxy_only.size == 0:
        return Packets.empty()
    src = np.asarray(conn["id.orig_h"], dtype=np.uint32)
    dst = np.asarray(conn["id.resp_h"], dtype=np.uint32)
    rows = np.flatnonzero(_member(src, proxy_only) & ~is_internal(dst))
    proto = _texts(conn["proto"], rows)
    port = np.asarray(conn["id.resp_p"], dtype=np.int64)
    allowed = ~np.isin(proto, ("tcp", "udp"))
    to_pool = _member(dst[rows], allowed_servers)
    for name, number in ALLOWED_DIRECT:
        allowed |= (proto == name) & (port[rows] == number) & to_pool
    rows = rows[~allowed]
    proto = proto[~allowed]
    count = np.maximum(np.asarray(conn["orig_pkts"], dtype=np.int64)[rows], 1)
    row = np.repeat(rows, count)
    k = np.arange(row.size) - np.repeat(np.cumsum(count) - count, count)  # packet number
    last = np.repeat(count - 1, count)
    duration = np.maximum(np.asarray(conn["duration"], dtype=np.int64)[row], 0)
    is_tcp = np.repeat(proto == "tcp", count)
    # TCP retransmits its SYN after 1 s, then 2 s more; the last one ends the attempt
    offset = np.where(k == last, duration, (2**k - 1) * 1_000_000)
    offset = np.where(is_tcp, offset, duration * k // np.maximum(last, 1))
    is_windows = _member(src[row], windows)
    payload = np.asarray(conn["orig_bytes"], dtype=np.int64)[row] // np.repeat(count, count)
    syn = np.where(is_windows, _WINDOWS_SYN_BYTES, _LINUX_SYN_BYTES)
    return Packets(
        ts_us=np.asarray(conn["ts"], dtype=np.int64)[row] + offset,
        src=src[row],
        dst=dst[row],
        is_tcp=is_tcp,
        spt=np.asarray(conn["id.orig_p"], dtype=np.int64)[row],
        dpt=port[row],
        length=np.where(is_tcp, syn, _UDP_HEADER_BYTES + np.maximum(payload, 0)),
        ttl=np.where(is_windows, 127, 63),  # one hop: the gateway has decremented it
        ip_id=rng.integers(0, 65536, size=row.size),
        df=np.ones(row.size, dtype=np.bool_),
        window=np.full(row.size, _SYN_WINDOW, dtype=np.int64),
        inbound=np.zeros(row.size, dtype=np.bool_),
        origin=row.astype(np.int64),
    )


def internet_scans(rng: np.random.Generator, day_start_us: int, used: set[int]) -> Packets:
    """A day of the Internet knocking on the public address: research scanners, telnet worms,
    RDP/SSH/SMB brute-forcers and UDP amplification probes (masscan and zmap signatures)."""
    parts = []
    for kind, sources, mean, ports, tcp in _SCANS:
        blocks = BOT_BLOCKS if kind == "telnet" else SCANNER_BLOCKS
        origins = draw_addresses(rng, blocks, sources, set(used))
        count = 1 + rng.poisson(mean - 1, size=sources)
        src = np.repeat(origins, count)
        n = src.size
        first = rng.uniform(0, 86_000, size=sources)
        spread = rng.exponential(900 if kind != "research" else 4_000, size=n)
        t_s = np.minimum(np.repeat(first, count) + spread, 86_399.9)
        zmap = rng.random(sources) < 0.3  # the rest send masscan's packets
        is_zmap = np.repeat(zmap, count)
        parts.append(
            Packets(
                ts_us=day_start_us + (t_s * 1e6).astype(np.int64),
                src=src,
                dst=np.full(n, PUBLIC_ADDRESS, dtype=np.uint32),
                is_tcp=np.full(n, tcp),
                spt=np.where(is_zmap, rng.integers(32768, 61000, n), rng.integers(1024, 65536, n)),
                dpt=np.asarray(ports, dtype=np.int64)[rng.integers(0, len(ports), n)],
                length=np.where(tcp, np.where(is_zmap, 40, 44), _UDP_HEADER_BYTES + 36),
                ttl=np.repeat(rng.integers(38, 250, size=sources), count),
                ip_id=np.where(is_zmap, 54321, rng.integers(0, 65536, n)),
                df=np.zeros(n, dtype=np.bool_),
                window=np.where(is_zmap, 65535, 1024),
                inbound=np.ones(n, dtype=np.bool_),
                origin=np.full(n, -1, dtype=np.int64),
            )
        )
    return Packets.stack(parts)


def write_kern_log(path: Path, packets: Packets, day_end_us: int, start_us: int) -> int:
    """Write the lines in time order (ties keep their order) and date the file at the day's
    end; `start_us` is the simulation's start (kernel uptimes count from a boot before it).
    Returns the number of lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    order = np.argsort(packets.ts_us, kind="stable")
    lines = _lines(packets, order, start_us - _BOOT_S * 1_000_000)
    with path.open("wb") as out:
        if len(lines):
            out.write(("\n".join(lines.to_pylist()) + "\n").encode())
    moment = (day_end_us - 1_000_000) / 1e6
    os.utime(path, (moment, moment))
    return len(lines)


def _lines(p: Packets, order: npt.NDArray[np.intp], boot_us: int) -> Any:
    ts = p.ts_us[order]
    seconds = pa.array(ts // 1_000_000, pa.timestamp("s", tz="UTC"))
    uptime = ts - boot_us
    clock = pc.binary_join_element_wise(  # printk's "[%5lu.%06lu]"
        _number(uptime // 1_000_000, 5, " "), _number(uptime % 1_000_000, 6), "."
    )
    inbound = p.inbound[order]
    interfaces = pc.if_else(pa.array(inbound), f"IN={OUTSIDE} OUT=", f"IN={INSIDE} OUT={OUTSIDE}")
    tcp = p.is_tcp[order]
    head = [
        pc.strftime(seconds, format="%b %e %H:%M:%S"),
        DEVICE,
        "kernel:",
        pc.binary_join_element_wise("[", clock, "]", ""),
        PREFIX,
        interfaces,
        pc.if_else(pa.array(inbound), f"MAC={_MAC[True]}", f"MAC={_MAC[False]}"),
        _field("SRC", ip_texts(p.src[order])),
        _field("DST", ip_texts(p.dst[order])),
        _field("LEN", _number(p.length[order])),
        "TOS=0x00 PREC=0x00",
        _field("TTL", _number(p.ttl[order])),
        pc.binary_join_element_wise(
            _field("ID", _number(p.ip_id[order])),
            pc.if_else(pa.array(p.df[order]), " DF", ""),
            "",
        ),
        pc.if_else(pa.array(tcp), "PROTO=TCP", "PROTO=UDP"),
        _field("SPT", _number(p.spt[order])),
        _field("DPT", _number(p.dpt[order])),
    ]
    tail = pc.if_else(
        pa.array(tcp),
        pc.binary_join_element_wise(
            _field("WINDOW", _number(p.window[order])), "RES=0x00 SYN URGP=0", " "
        ),
        _field("LEN", _number(p.length[order] - 20)),
    )
    return pc.binary_join_element_wise(*head, tail, " ")


def _field(key: str, text: Any) -> Any:
    return pc.binary_join_element_wise(f"{key}=", text, "")


def _number(values: npt.NDArray[np.int64], width: int = 0, fill: str = "0") -> Any:
    text = pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string())
    return pc.utf8_lpad(text, width, fill) if width else text


def _texts(column: Any, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.str_]:
    """The text of a string column (or a str for every row) at rows."""
    if isinstance(column, str):
        return np.full(rows.size, column)
    return np.asarray(column.take(pa.array(rows)).to_pylist(), dtype=str)


def _member(values: npt.NDArray[np.uint32], sorted_set: npt.NDArray[np.uint32]) -> Any:
    if sorted_set.size == 0:
        return np.zeros(values.shape, dtype=np.bool_)
    at = np.minimum(np.searchsorted(sorted_set, values), sorted_set.size - 1)
    return sorted_set[at] == values
