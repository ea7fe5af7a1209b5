"""Flows of a capture as Zeek keeps connections: endpoints, timeouts, conn_state, the conn row.

A `Flow` is one bidirectional 5-tuple between its first and last packet; `orig` is the side
that opened it (the SYN sender for TCP). TCP updates are in pcap_tcp; `conn_state` is Zeek's
function of the endpoint states (base/protocols/conn/main.zeek), and byte counts come from
sequence numbers as Zeek's do. See docs/schema.md, "Packet captures".
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "ACK",
    "CLOSE_LINGER_US",
    "LIKELY_SERVER_PORTS",
    "TIMEOUT_US",
    "Endpoint",
    "Flow",
    "conn_row",
    "conn_state",
    "seq_delta",
]

# Zeek's defaults: tcp_inactivity_timeout 5 min, udp/icmp_inactivity_timeout 1 min,
# tcp_close_delay and tcp_reset_delay 5 s, tcp_attempt_delay 5 s.
TIMEOUT_US = {"tcp": 300_000_000, "udp": 60_000_000, "icmp": 60_000_000}
OTHER_TIMEOUT_US = 60_000_000
CLOSE_LINGER_US = 5_000_000
ATTEMPT_US = 5_000_000
# Ports a server listens on: a flow first seen from one of them to another port is flipped, as
# Zeek flips with likely_server_ports (the ports its analyzers register).
LIKELY_SERVER_PORTS = frozenset(
    (21, 22, 23, 25, 53, 67, 69, 80, 81, 88, 110, 123, 137, 138, 139, 143, 161, 389, 443, 445,
     465, 502, 514, 563, 587, 631, 636, 853, 989, 990, 992, 993, 995, 1080, 1194, 1433, 1812,
     3128, 3306, 3389, 5060, 5222, 5223, 5353, 5355, 5432, 6379, 6666, 6667, 6668, 6669, 8000,
     8080, 8443, 8888)
)  # fmt: skip

INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
TOO_LARGE_SEQ_DELTA = 1_048_576
_RSTOS0 = re.compile(r"^\^?S[^HAFGIQ]*R.*")


def seq_delta(a: int, b: int) -> int:
    """a - b in 32-bit sequence space (signed)."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


class Endpoint:
    """One side of a flow: packets and IP bytes, and for TCP its sequence space and state."""

    __slots__ = (
        "ack_abs",
        "acked",
        "did_close",
        "fin_count",
        "hist_fin",
        "hist_rst",
        "hist_syn",
        "holes",
        "ip_bytes",
        "isn",
        "payload",
        "pkts",
        "prev_state",
        "rxmit",
        "state",
        "top",
        "top_abs",
        "zero_windows",
    )

    def __init__(self) -> None:
        self.pkts = self.ip_bytes = self.payload = 0
        self.state = self.prev_state = INACTIVE
        self.isn = self.top_abs = self.ack_abs = 0
        self.top = self.acked = 0  # relative to isn, unwrapped
        self.hist_syn = self.hist_fin = self.hist_rst = -1
        self.fin_count = self.rxmit = self.zero_windows = 0
        self.did_close = False
        self.holes: list[list[int]] | None = None  # [start, end) relative, never seen

    def set_state(self, state: int) -> None:
        """Zeek's SetState: remember the previous state."""
        self.prev_state, self.state = self.state, state

    def init_seq(self, start: int, last: int) -> None:
        """Start the sequence space at `start` (the ISN) with `last` the end seen so far."""
        self.isn = self.ack_abs = start & 0xFFFFFFFF
        self.top_abs = last & 0xFFFFFFFF
        self.top = seq_delta(self.top_abs, self.isn)
        self.acked = 0

    def size(self) -> int:
        """Payload bytes from the sequence space, as Zeek's TCP_Endpoint::Size."""
        size = max(self.top, self.acked)
        if size > 0:
            size -= 1  # the SYN's octet
        if self.fin_count and size > 0:
            size -= 1
        return size

    def missed(self) -> int:
        """Bytes of this side's stream that were never captured."""
        gaps = sum(end - start for start, end in self.holes) if self.holes else 0
        unseen = self.acked - self.top
        return gaps + (unseen if 0 < unseen < TOO_LARGE_SEQ_DELTA else 0)


class Flow:
    """One connection: its endpoints, addresses, history and application-layer state."""

    __slots__ = (
        "app",
        "attempt",
        "closed",
        "first_us",
        "hist_seen",
        "history",
        "key",
        "last_us",
        "orig",
        "orig_ip",
        "orig_port",
        "parser",
        "proto",
        "resp",
        "resp_ip",
        "resp_port",
        "rkey",
        "service",
        "slot",
        "slot_gen",
        "timeout_us",
        "uid",
    )

    def __init__(
        self,
        proto: str,
        orig: tuple[str, int],
        resp: tuple[str, int],
        keys: tuple[bytes, bytes],
        ts_us: int,
        uid: str,
    ) -> None:
        self.proto = proto
        self.orig_ip, self.orig_port = orig
        self.resp_ip, self.resp_port = resp
        self.key, self.rkey = keys
        self.first_us = self.last_us = ts_us
        self.uid = uid
        self.orig = Endpoint()
        self.resp = Endpoint()
        self.history: list[str] = []
        self.hist_seen: set[str] = set()
        self.service: str | None = None
        self.app: Any = None  # the application analyzer, False once there is nothing to parse
        self.parser: Any = None  # a parser done reading; its rows are written at the end
        self.closed = False
        self.attempt = False  # an unanswered SYN: Zeek's attempt timer runs from the first one
        self.timeout_us = TIMEOUT_US.get(proto, OTHER_TIMEOUT_US)
        self.slot = -1
        self.slot_gen = -1

    def once(self, letter: str) -> bool:
        """Zeek's CheckHistory: record `letter` the first time; True when seen before."""
        if letter in self.hist_seen:
            return True
        self.hist_seen.add(letter)
        self.history.append(letter)
        return False

    def expired(self, now_us: int) -> bool:
        """True when a packet at `now_us` belongs to a new connection of the same 5-tuple.

        Zeek's timers: an unanswered SYN's attempt ends 5 s after the first SYN, a closed or
        reset connection 5 s after its last packet, an idle one after its inactivity timeout.
        """
        if self.attempt:
            return now_us - self.first_us > ATTEMPT_US
        return now_us - self.last_us > self.timeout_us


def conn_state(flow: Flow, history: str) -> str:
    """Zeek's conn_state for the flow's final endpoint states."""
    o, r = flow.orig, flow.resp
    if flow.proto == "udp":
        if o.pkts:
            return "SF" if r.pkts else "S0"
        return "SHR" if r.pkts else "OTH"
    if flow.proto != "tcp":
        return "OTH"
    os, rs = o.state, r.state
    o_inactive = os in (INACTIVE, PARTIAL)
    r_inactive = rs in (INACTIVE, PARTIAL)
    if rs == RESET:
        if os in (SYN_SENT, SYN_ACK_SENT) or (os == RESET and o.size() == 0 and r.size() == 0):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if os == RESET:
        if r_inactive:
            return "RSTOS0" if _RSTOS0.match(history) else "OTH"
        return "RSTO"
    if rs == CLOSED and os == CLOSED:
        return "SF"
    if os == CLOSED:
        return "SH" if r_inactive else "S2"
    if rs == CLOSED:
        return "SHR" if o_inactive else "S3"
    if os == SYN_SENT and rs == INACTIVE:
        return "S0"
    if os == ESTABLISHED and rs == ESTABLISHED:
        return "S1"
    return "OTH"


def conn_row(flow: Flow) -> tuple[Any, ...]:
    """The conn row of a finished flow, in the order of `CONN_COLUMNS` (pcap_tables)."""
    o, r = flow.orig, flow.resp
    missed = 0
    if flow.proto == "tcp":
        orig_bytes, resp_bytes = o.size(), r.size()
        orig_missed, resp_missed = o.missed(), r.missed()
        missed = orig_missed + resp_missed
        if orig_missed:
            flow.once("G")
        if resp_missed:
            flow.once("g")
    else:
        orig_bytes, resp_bytes = o.payload, r.payload
    history = "".join(flow.history) if flow.proto in ("tcp", "udp") else ""
    duration_us = flow.last_us - flow.first_us
    has_duration = duration_us > 0
    return (
        flow.first_us,
        flow.uid,
        flow.orig_ip,
        flow.orig_port,
        flow.resp_ip,
        flow.resp_port,
        flow.proto,
        flow.service,
        duration_us / 1e6 if has_duration else None,
        orig_bytes if has_duration else None,
        resp_bytes if has_duration else None,
        conn_state(flow, history),
        history or None,
        o.pkts,
        r.pkts,
        o.ip_bytes,
        r.ip_bytes,
        missed,
    )
