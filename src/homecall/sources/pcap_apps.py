"""Application layer of a capture: service detection by payload, TCP reassembly, dispatch.

A flow's service is decided from the first payload of each side, by signature, on any port:
"ssl" (a TLS handshake record), "http" (a request line, or a status line first), "ssh" (an
identification string), "smtp" and "ftp" (a 220 greeting answered by EHLO/HELO or USER),
"irc" (NICK/USER/JOIN/PRIVMSG/PING... command lines) and "dns" (a DNS message, over UDP or
with TCP's length prefix). http, ssl and dns flows are then parsed into rows; each TCP
direction is put in order by sequence number first (`Stream`).
"""

from __future__ import annotations

import re
from typing import Any

from homecall.sources.pcap_dns import DnsTransactions, looks_like_dns
from homecall.sources.pcap_flows import Flow, seq_delta
from homecall.sources.pcap_http import HttpSession, is_http_request
from homecall.sources.pcap_tables import Collector
from homecall.sources.pcap_tls import TlsSession

__all__ = ["Stream", "finish", "payload"]

MAX_PENDING = 1 << 16  # out-of-order bytes held per direction before a gap is assumed
_IRC_LINE = re.compile(
    rb"^(?:NICK \S+|USER \S+ \S+ \S+ .+|JOIN [#&!+]\S*|PRIVMSG \S+ :|PING :?\S+|PASS \S+|"
    rb"CAP (?:LS|REQ|END))",
    re.MULTILINE,
)
_IRC_SERVER = re.compile(rb"^:\S+ (?:NOTICE|\d\d\d) ", re.MULTILINE)
_FTP_COMMANDS = (b"USER ", b"AUTH ", b"FEAT", b"SYST", b"OPTS ")
_COMMAND_START = re.compile(rb"[A-Za-z][A-Za-z-]* ?[ -~]*\Z")  # a text line begun
MAX_WAITING_BYTES = 4096  # payload of a side looked at before a service is decided
_UNDECIDED = object()


class Stream:
    """One direction of a TCP flow put in order: in-order bytes are passed on at once, later
    ones wait (up to MAX_PENDING bytes), retransmitted ones are trimmed."""

    __slots__ = ("next_seq", "pending", "pending_bytes")

    def __init__(self, start: int) -> None:
        self.next_seq = start & 0xFFFFFFFF
        self.pending: dict[int, bytes] = {}
        self.pending_bytes = 0

    def add(self, seq: int, data: bytes) -> list[bytes | int]:
        """The bytes now in order (an int is a count of bytes never captured)."""
        ahead = seq_delta(seq, self.next_seq)
        if ahead > 0:
            if len(self.pending.get(seq, b"")) < len(data):
                self.pending_bytes += len(data) - len(self.pending.get(seq, b""))
                self.pending[seq] = data
            return self._skip() if self.pending_bytes > MAX_PENDING else []
        if ahead < 0:
            if -ahead >= len(data):
                return []  # a retransmission of bytes already passed on
            data = data[-ahead:]
        self.next_seq = (self.next_seq + len(data)) & 0xFFFFFFFF
        out: list[bytes | int] = [data]
        if self.pending:
            out.extend(self._drain())
        return out

    def _drain(self) -> list[bytes | int]:
        out: list[bytes | int] = []
        while self.pending:
            seq = min(self.pending, key=lambda s: seq_delta(s, self.next_seq))
            ahead = seq_delta(seq, self.next_seq)
            if ahead > 0:
                break
            data = self.pending.pop(seq)
            self.pending_bytes -= len(data)
            if -ahead < len(data):
                out.append(data[-ahead:])
                self.next_seq = (self.next_seq + len(data) + ahead) & 0xFFFFFFFF
        return out

    def _skip(self) -> list[bytes | int]:
        """Give up on the missing bytes before the earliest waiting segment."""
        seq = min(self.pending, key=lambda s: seq_delta(s, self.next_seq))
        missing = seq_delta(seq, self.next_seq)
        self.next_seq = seq
        return [missing, *self._drain()]

    def skip_to(self, ack: int) -> list[bytes | int]:
        """Give up on the holes the peer acknowledged (`ack`): those bytes were sent, and the
        capture missed them."""
        out: list[bytes | int] = []
        while self.pending:
            first = min(self.pending, key=lambda s: seq_delta(s, self.next_seq))
            if seq_delta(first, ack) > 0:
                break
            out.extend(self._skip())
        return out

    def flush(self) -> list[bytes | int]:
        """What is still waiting, with its gaps (the flow ended)."""
        out: list[bytes | int] = []
        while self.pending:
            out.extend(self._skip())
        return out


def _stream_start(flow: Flow, from_orig: bool, seq: int) -> int:
    """Where a side's stream starts: after its SYN when that was seen, else at `seq`."""
    ep = flow.orig if from_orig else flow.resp
    return ep.isn + 1 if ep.hist_syn >= 0 else seq


class _TcpApp:
    """A parser of one TCP flow's streams (HttpSession, TlsSession, or length-prefixed DNS).
    When the parser is done, it moves to `flow.parser` and the flow's `app` becomes False."""

    __slots__ = ("parser", "streams")

    def __init__(self, parser: Any) -> None:
        self.parser = parser
        self.streams: list[Stream | None] = [None, None]

    def feed(
        self, flow: Flow, from_orig: bool, seq: int, ack: int, data: bytes, ts_us: int
    ) -> None:
        index = 0 if from_orig else 1
        stream = self.streams[index]
        if stream is None:
            stream = self.streams[index] = Stream(_stream_start(flow, from_orig, seq))
        other = self.streams[1 - index]
        if other is not None and other.pending and ack >= 0:
            # the peer acknowledged bytes of the other side that were never captured
            self._pass(not from_orig, other.skip_to(ack), ts_us)
        self._pass(from_orig, stream.add(seq, data), ts_us)
        if self.parser.done:  # nothing more to read: the flow's packets skip the application layer
            flow.parser = self.parser
            flow.app = False

    def _pass(self, from_orig: bool, items: list[bytes | int], ts_us: int) -> None:
        for item in items:
            if isinstance(item, int):
                self.parser.gap(from_orig, item)
            else:
                self.parser.deliver(from_orig, item, ts_us)

    def finish(self, ts_us: int) -> None:
        for index, stream in enumerate(self.streams):
            if stream is not None:
                self._pass(index == 0, stream.flush(), ts_us)
        self.parser.finish()


class _TcpDns:
    """DNS over TCP: two-byte length-prefixed messages."""

    __slots__ = ("buffers", "dns", "done")

    def __init__(self, base: dict[str, Any], out: Collector) -> None:
        self.dns = DnsTransactions(base, "tcp", out.rows["dns"])
        self.buffers = (bytearray(), bytearray())
        self.done = False

    def deliver(self, from_orig: bool, data: bytes, ts_us: int) -> None:
        buf = self.buffers[0 if from_orig else 1]
        buf += data
        while len(buf) >= 2 and len(buf) >= 2 + (size := int.from_bytes(buf[:2], "big")):
            self.dns.message(bytes(buf[2 : 2 + size]), ts_us)
            del buf[: 2 + size]

    def gap(self, from_orig: bool, missing: int) -> None:
        del missing
        self.buffers[0 if from_orig else 1].clear()

    def finish(self) -> None:
        self.dns.finish()


class _Waiting:
    """A TCP flow whose service is not decided yet: its first segments, kept (up to
    MAX_WAITING_BYTES a side) until the payload so far is enough to tell."""

    __slots__ = ("orig", "resp", "segments", "streams")

    def __init__(self) -> None:
        self.segments: list[tuple[bool, int, int, bytes, int]] = []
        self.streams: list[Stream | None] = [None, None]
        self.orig = b""  # each side's first bytes, in sequence order
        self.resp = b""

    def add(self, flow: Flow, from_orig: bool, seq: int, ack: int, data: bytes, ts: int) -> None:
        self.segments.append((from_orig, seq, ack, data, ts))
        index = 0 if from_orig else 1
        stream = self.streams[index]
        if stream is None:
            stream = self.streams[index] = Stream(_stream_start(flow, from_orig, seq))
        ordered = b"".join(item for item in stream.add(seq, data) if isinstance(item, bytes))
        if from_orig:
            self.orig += ordered
        else:
            self.resp += ordered

    @property
    def full(self) -> bool:
        """True when the service must be decided with what is here."""
        return max(len(self.orig), len(self.resp)) >= MAX_WAITING_BYTES

    def finish(self, ts_us: int) -> None:
        del ts_us


def _base(flow: Flow) -> dict[str, Any]:
    return {"uid": flow.uid, "orig_ip": flow.orig_ip, "orig_port": flow.orig_port,
            "resp_ip": flow.resp_ip, "resp_port": flow.resp_port}  # fmt: skip


def _is_tls(data: bytes, handshake: int) -> bool:
    return len(data) >= 6 and data[0] == 22 and data[1] == 3 and data[5] == handshake


def _incomplete(orig: bytes) -> bool:
    """True while the originator's bytes may still become a recognisable first line."""
    return len(orig) < 6 or (b"\n" not in orig and _COMMAND_START.match(orig) is not None)


def _service(orig: bytes, resp: bytes, final: bool) -> Any:
    """The service from the first payloads (`_UNDECIDED` while more bytes may decide it)."""
    if not orig or (_incomplete(orig) and not final):
        if resp.startswith(b"SSH-"):
            return "ssh"
        if resp.startswith(b"HTTP/1."):
            return "http"
        if _is_tls(resp, 2):
            return "ssl"
        if _IRC_SERVER.match(resp):
            return "irc"
        return None if final else _UNDECIDED
    upper = orig[:5].upper()
    if _is_tls(orig, 1):
        return "ssl"
    if is_http_request(orig):
        return "http"
    if orig.startswith(b"SSH-") or resp.startswith(b"SSH-"):
        return "ssh"
    if upper.startswith((b"EHLO ", b"HELO ")):
        return "smtp"
    if resp.startswith(b"220") and upper.startswith(_FTP_COMMANDS):
        return "ftp"
    if _IRC_LINE.search(orig[:4096]):
        return "irc"
    prefixed = len(orig) >= 14 and int.from_bytes(orig[:2], "big") == len(orig) - 2
    if prefixed and looks_like_dns(orig[2:]):
        return "dns"
    return None


def _parser(service: str, flow: Flow, out: Collector) -> Any:
    if service == "http":
        return HttpSession(_base(flow), out)
    if service == "ssl":
        return TlsSession(_base(flow), out)
    if service == "dns":
        return _TcpDns(_base(flow), out)
    return None


def payload(
    flow: Flow, from_orig: bool, seq: int, ack: int, data: bytes, ts_us: int, out: Collector
) -> None:
    """One packet's payload of a flow still being analysed (`flow.app` is not False); `seq` is
    where the payload starts, `ack` the packet's acknowledgment (-1 without ACK), for TCP."""
    app = flow.app
    if isinstance(app, _TcpApp):
        app.feed(flow, from_orig, seq, ack, data, ts_us)
        return
    if isinstance(app, DnsTransactions):
        app.message(data, ts_us)
        return
    if flow.proto != "tcp":
        flow.app = False
        if flow.proto == "udp" and app is None:
            dns = DnsTransactions(_base(flow), "udp", out.rows["dns"])
            if dns.message(data, ts_us, first=True):
                flow.service = "dns"
                flow.app = dns
        return
    waiting = app if isinstance(app, _Waiting) else _Waiting()
    waiting.add(flow, from_orig, seq, ack, data, ts_us)
    service = _service(waiting.orig, waiting.resp, waiting.full)
    if service is _UNDECIDED:
        flow.app = waiting
        return
    flow.service = service
    parser = _parser(service, flow, out) if service else None
    if parser is None:
        flow.app = False
        return
    tcp_app = flow.app = _TcpApp(parser)
    for segment in waiting.segments:
        tcp_app.feed(flow, *segment)


def finish(flow: Flow) -> None:
    """The flow ended: let its parser write what it still holds."""
    app = flow.app
    if isinstance(app, DnsTransactions):
        app.finish()
    elif app:
        app.finish(flow.last_us)
    if flow.parser is not None:
        flow.parser.finish()
