"""DNS messages seen in a capture -> dns rows, one per transaction, as Zeek's dns.log.

A query and its response are joined by flow and transaction id; a query never answered keeps
null response fields, a response whose query was not captured makes a row of its own. Messages
are parsed here rather than with dpkt.dns, which rejects a whole message for one resource
record type it does not know (HTTPS, SVCB, RRSIG, ...: UnpackError "RR type 65 is not
supported"), and whose name reader (`unpack_name`, so its questions too) raises
UnicodeDecodeError on a label that is not UTF-8, as DNS tunnels send; TXT strings likewise
(tests/sources/test_pcap_apps.py).
"""

from __future__ import annotations

import socket
import struct
from collections import deque
from typing import Any

from homecall.sources.dns_records import QTYPES, RCODES, normalize_name

__all__ = ["DnsMessage", "DnsTransactions", "looks_like_dns", "parse_message"]

MAX_PENDING = 1_000  # unanswered queries kept per flow; older ones are written unanswered
_HEADER = struct.Struct("!HHHHHH").unpack_from
_RR = struct.Struct("!HHIH").unpack_from
_QTYPE_NAMES = {number: name for name, number in QTYPES.items()}
_RCODE_NAMES = {number: name for name, number in RCODES.items()}
# Zeek's DNS::classes; other classes are named "qclass-N" as Zeek names them.
_CLASS_NAMES = {1: "C_INTERNET", 2: "C_CSNET", 3: "C_CHAOS", 4: "C_HESIOD", 254: "C_NONE",
                255: "C_ANY"}  # fmt: skip
_NAME_TYPES = (2, 5, 12, 39)  # NS, CNAME, PTR, DNAME: the answer is a name


class DnsMessage:
    """The parts of a DNS message a dns row needs."""

    __slots__ = ("answers", "flags", "ident", "qclass", "qname", "qtype", "rejected", "ttls")

    def __init__(self, ident: int, flags: int) -> None:
        self.ident = ident
        self.flags = flags
        self.qname: str | None = None
        self.qtype: int | None = None
        self.qclass: int | None = None
        self.answers: list[str] = []
        self.ttls: list[float] = []
        self.rejected = False

    @property
    def is_response(self) -> bool:
        """True for a response (QR set)."""
        return bool(self.flags & 0x8000)


def _name(buf: bytes, pos: int) -> tuple[str, int]:
    """A (possibly compressed) domain name at `pos`: (name, offset after it). ValueError when
    the name runs off the message or loops."""
    labels: list[str] = []
    after = -1
    hops = 0
    while True:
        if pos >= len(buf):
            raise ValueError("name runs off the message")
        size = buf[pos]
        if size == 0:
            pos += 1
            break
        if size >= 0xC0:
            if pos + 1 >= len(buf) or hops > 32:
                raise ValueError("bad compression pointer")
            if after < 0:
                after = pos + 2
            pos = (size & 0x3F) << 8 | buf[pos + 1]
            hops += 1
            continue
        if size > 63 or pos + 1 + size > len(buf):
            raise ValueError("bad label")
        labels.append(buf[pos + 1 : pos + 1 + size].decode("ascii", "backslashreplace"))
        pos += 1 + size
    return ".".join(labels), after if after >= 0 else pos


def parse_message(buf: bytes) -> DnsMessage:
    """The header, first question and answers of a DNS message; ValueError when it is not one."""
    if len(buf) < 12:
        raise ValueError("shorter than a DNS header")
    ident, flags, qdcount, ancount, nscount, arcount = _HEADER(buf, 0)
    if (flags >> 11) & 0xF not in (0, 1, 2, 4, 5) or qdcount > 16 or ancount > 512:
        raise ValueError("not a DNS header")
    msg = DnsMessage(ident, flags)
    pos = 12
    for i in range(qdcount):
        name, pos = _name(buf, pos)
        if pos + 4 > len(buf):
            raise ValueError("question cut short")
        if i == 0:
            msg.qname = name
            msg.qtype, msg.qclass = struct.unpack_from("!HH", buf, pos)
        pos += 4
    for _ in range(ancount):
        _owner, pos = _name(buf, pos)
        if pos + 10 > len(buf):
            raise ValueError("answer cut short")
        kind, _cls, ttl, size = _RR(buf, pos)
        pos += 10
        if pos + size > len(buf):
            raise ValueError("answer data cut short")
        msg.answers.append(_rdata(buf, pos, size, kind))
        msg.ttls.append(float(ttl))
        pos += size
    msg.rejected = bool(flags & 0x8000) and ancount == nscount == arcount == 0
    return msg


def _rdata(buf: bytes, pos: int, size: int, kind: int) -> str:
    """An answer as Zeek logs it: address, name, "TXT <len> <text>", or "<unknown type=N>"."""
    data = buf[pos : pos + size]
    if kind == 1 and size == 4:
        return socket.inet_ntoa(data)
    if kind == 28 and size == 16:
        return socket.inet_ntop(socket.AF_INET6, data)
    if kind in _NAME_TYPES:
        return _name(buf, pos)[0]
    if kind == 15 and size > 2:  # MX: preference, exchange
        return _name(buf, pos + 2)[0]
    if kind == 33 and size > 6:  # SRV: priority, weight, port, target
        return _name(buf, pos + 6)[0]
    if kind == 6:  # SOA: the primary name server
        return _name(buf, pos)[0]
    if kind == 16:
        parts, at = [], 0
        while at < size:
            n = data[at]
            text = data[at + 1 : at + 1 + n].decode("utf-8", "backslashreplace")
            parts.append(f"TXT {n} {text}")
            at += 1 + n
        return " ".join(parts)
    return f"<unknown type={kind}>"


def looks_like_dns(payload: bytes) -> bool:
    """True when `payload` parses as a DNS message with a question (service detection)."""
    try:
        msg = parse_message(payload)
    except (ValueError, UnicodeDecodeError):
        return False
    return msg.qname is not None


class DnsTransactions:
    """The DNS transactions of one flow: queries waiting for their responses, rows written."""

    __slots__ = ("base", "out", "pending", "proto")

    def __init__(self, base: dict[str, Any], proto: str, out: list[dict[str, Any]]) -> None:
        self.base = base  # uid and endpoints, shared by every row of the flow
        self.proto = proto
        self.out = out
        self.pending: dict[int, deque[dict[str, Any]]] = {}

    def message(self, payload: bytes, ts_us: int, first: bool = False) -> bool:
        """Add one DNS message; False when it is not DNS (nor, when it is the `first` of a
        flow and decides its service, a message with a question)."""
        try:
            msg = parse_message(payload)
        except (ValueError, UnicodeDecodeError):
            return False
        if first and msg.qname is None:
            return False
        if not msg.is_response:
            row = self._row(msg, ts_us)
            row["rd"] = bool(msg.flags & 0x0100)
            self.pending.setdefault(msg.ident, deque()).append(row)
            if sum(len(q) for q in self.pending.values()) > MAX_PENDING:
                self._flush_oldest()
            return True
        waiting = self.pending.get(msg.ident)
        if waiting:
            row = waiting.popleft()
            if not waiting:
                del self.pending[msg.ident]
            row["rtt_s"] = (ts_us - row["ts"]) / 1e6
        else:
            row = self._row(msg, ts_us)
        rcode = msg.flags & 0xF
        row.update(
            rcode=rcode,
            rcode_name=_RCODE_NAMES.get(rcode, f"unknown-{rcode}"),
            aa=bool(msg.flags & 0x0400),
            tc=bool(msg.flags & 0x0200),
            rd=bool(msg.flags & 0x0100),
            ra=bool(msg.flags & 0x0080),
            answers=msg.answers or None,
            ttls_s=msg.ttls or None,
            rejected=msg.rejected,
        )
        self.out.append(row)
        return True

    def _row(self, msg: DnsMessage, ts_us: int) -> dict[str, Any]:
        qtype, qclass = msg.qtype, msg.qclass
        return {
            **self.base,
            "ts": ts_us,
            "proto": self.proto,
            "trans_id": msg.ident,
            "query": normalize_name(msg.qname) if msg.qname else None,
            "qtype": qtype,
            "qtype_name": None if qtype is None else _QTYPE_NAMES.get(qtype, f"query-{qtype}"),
            "qclass": qclass,
            "qclass_name": None if qclass is None else _CLASS_NAMES.get(qclass, f"qclass-{qclass}"),
            "aa": False,
            "tc": False,
            "ra": False,
            "rejected": False,
        }

    def _flush_oldest(self) -> None:
        ident = next(iter(self.pending))
        self.out.append(self.pending[ident].popleft())
        if not self.pending[ident]:
            del self.pending[ident]

    def finish(self) -> None:
        """Write the queries that were never answered."""
        for waiting in self.pending.values():
            self.out.extend(waiting)
        self.pending.clear()
