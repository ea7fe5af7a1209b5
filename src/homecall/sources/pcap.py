"""Packet captures (pcap, pcapng) -> the conn, dns, http, tls, x509 and packets tables.

Packets are grouped into flows as Zeek groups them into connections (pcap_flows), the
application layer is read from the first payloads on (pcap_apps: service detection, DNS, HTTP,
TLS with JA3/JA4 and certificates), and every IP packet becomes a `packets` row that records
where its record sits in the file. `source_file` is the capture's absolute path in every table,
for `homecall pcap search`. A bad record is reported with its packet number as the line; see
docs/schema.md, "Packet captures".
"""

from __future__ import annotations

import hashlib
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from homecall.errors import MalformedInputError
from homecall.sources import pcap_apps
from homecall.sources.options import DEFAULT_OPTIONS, ReadOptions
from homecall.sources.pcap_decode import (
    LINK_TYPES,
    PROTO_NAMES,
    Packet,
    decode,
    unsupported_link,
)
from homecall.sources.pcap_file import MAGICS, records
from homecall.sources.pcap_flows import LIKELY_SERVER_PORTS, Flow, conn_row
from homecall.sources.pcap_tables import (
    PACKET_BATCH,
    PACKET_STRUCT,
    ROW_BATCH,
    Collector,
    PacketColumns,
    conn_batch,
)
from homecall.sources.pcap_tcp import tcp_packet
from homecall.sources.problems import Problems

__all__ = ["FORMAT", "read", "sniff"]

FORMAT = "pcap"
MAX_FRAGMENTS = 10_000  # first fragments remembered for the ports of the later ones
# What a parser of hostile payloads may raise; the flow's payloads are then no longer parsed.
_PARSE_ERRORS = (ValueError, IndexError, KeyError, struct.error, UnicodeError)
app_payload = pcap_apps.payload


def sniff(head: bytes) -> bool:
    """True for a classic pcap (micro- or nanosecond, either byte order) or a pcapng file."""
    if head[:4] in MAGICS:
        return len(head) >= 24
    return head[:4] == b"\x0a\x0d\x0d\x0a" and head[8:12] in (
        b"\x4d\x3c\x2b\x1a",
        b"\x1a\x2b\x3c\x4d",
    )


def read(
    path: Path, problems: Problems, options: ReadOptions = DEFAULT_OPTIONS
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Yield (table, batch) for one capture; bad records go to `problems` with their packet
    number; a file that is not a capture, or of an unsupported link type, raises
    MalformedInputError."""
    del options  # capture times are UTC
    yield from _Capture(path, problems).run()


def _server_side(sport: int, dport: int) -> bool:
    return sport in LIKELY_SERVER_PORTS and dport not in LIKELY_SERVER_PORTS


def _address(raw: bytes) -> str:
    return socket.inet_ntoa(raw) if len(raw) == 4 else socket.inet_ntop(socket.AF_INET6, raw)


class _Capture:
    """The state of reading one capture: flows by 5-tuple, rows waiting for their batch."""

    def __init__(self, path: Path, problems: Problems) -> None:
        self.path = path
        self.absolute = path.resolve()
        self.source = str(self.absolute)
        self.problems = problems
        self.flows: dict[bytes, tuple[Flow, bool]] = {}
        self.fragments: dict[tuple[bytes, bytes, int, int], tuple[int, int]] = {}
        self.packets = PacketColumns()
        self.out = Collector(self.source)
        self.conn_rows: list[tuple[object, ...]] = []

    def run(self) -> Iterator[tuple[str, pa.RecordBatch]]:
        # The loop over packets, kept in one function: at a million packets a second every
        # call and attribute lookup shows (docs/performance.md, "Packet captures").
        packets, flows, option_index = self.packets, self.flows, self.packets.option_index
        pack = PACKET_STRUCT.pack
        number = ts = 0
        for offset, ts, _wire, link, data in records(self.path, self.problems):
            number += 1
            if link not in LINK_TYPES:
                raise MalformedInputError(self.path, number, unsupported_link(link))
            decoded = decode(link, data)
            if decoded is None:
                continue
            if isinstance(decoded, str):
                self.problems.add(self.path, number, decoded)
                continue
            (version, ip_len, ttl, ip_id, ip_flags, tos, proto, src, dst, fragment, frag_id, key,
             is_reply, sport, dport, seq, ack, flags, reserved, window, urgent, options,
             payload_len, start, end) = decoded  # fmt: skip
            option = -1 if options is None else option_index.get(options)
            if option is None:
                option = packets.option(options)
            if fragment:
                key = self._fragment(src, dst, proto, frag_id, fragment, key, sport, dport)
            if key is None:  # a later fragment whose first fragment was not seen
                slot, from_orig = len(packets.flows), True
                name = PROTO_NAMES.get(proto, str(proto))
                packets.flows.append((None, _address(src), None, _address(dst), None, name))
            else:
                entry = flows.get(key)
                if entry is not None:
                    flow, from_orig = entry
                    if (
                        (flow.attempt or ts - flow.last_us > flow.timeout_us) and flow.expired(ts)
                    ) or (
                        flags & 0x12 == 0x02 and flow.closed and self._reused(flow, from_orig, seq)
                    ):
                        self._end(flow)
                        entry = None
                if entry is None:
                    flow, from_orig = self._new(decoded, ts)
                elif is_reply:
                    from_orig = not from_orig
                ep = flow.orig if from_orig else flow.resp
                ep.pkts += 1
                ep.ip_bytes += ip_len
                if proto == 6:
                    tcp_packet(flow, from_orig, flags, seq, ack, window, payload_len, ts)
                else:  # a later fragment's bytes are in the first one's UDP length already
                    flow.last_us = ts
                    ep.payload += payload_len if fragment != 2 else 0
                    if proto == 17 and not ep.pkts > 1:
                        flow.once("D" if from_orig else "d")
                if payload_len and flow.app is not False and start < end and fragment != 2:
                    if proto == 6:  # the first byte after a SYN; a RST's payload is no data
                        seq = -1 if flags & 0x04 else seq + 1 if flags & 0x02 else seq
                    try:
                        if seq >= 0:
                            app_payload(flow, from_orig, seq, ack if flags & 0x10 else -1,
                                        data[start:end], ts, self.out)  # fmt: skip
                    except _PARSE_ERRORS as exc:
                        what = flow.service or "payload"
                        self.problems.add(self.path, number, f"{what} not parsed: {exc}")
                        flow.app = False
                if flow.slot_gen != packets.gen:
                    flow.slot_gen = packets.gen
                    flow.slot = len(packets.flows)
                    packets.flows.append((flow.uid, flow.orig_ip, flow.orig_port, flow.resp_ip,
                                          flow.resp_port, flow.proto))  # fmt: skip
                slot = flow.slot
            packets.buffer += pack(
                ts, slot, from_orig, version, ip_len, payload_len, ttl, ip_id, ip_flags, tos,
                flags, reserved, window, urgent, option, offset, len(data),
            )  # fmt: skip
            packets.count += 1
            if packets.count >= PACKET_BATCH:
                yield "packets", packets.batch(self.source)
                self._sweep(ts)
                yield from self._full()
        for flow, first in list(flows.values()):
            if first:
                self._end(flow)
        if packets.count:
            yield "packets", packets.batch(self.source)
        yield from self._full(everything=True)

    def _fragment(
        self,
        src: bytes,
        dst: bytes,
        proto: int,
        ident: int,
        fragment: int,
        key: bytes | None,
        sport: int,
        dport: int,
    ) -> bytes | None:
        """The flow key of a fragment: a first fragment's ports are remembered for the later
        fragments of its datagram, which carry none."""
        if fragment == 1:
            if len(self.fragments) >= MAX_FRAGMENTS:
                self.fragments.clear()
            self.fragments[(src, dst, proto, ident)] = (sport, dport)
            return key
        ports = self.fragments.get((src, dst, proto, ident))
        if ports is None:
            return None
        return src + dst + struct.pack("!HH", *ports) + bytes((proto,))

    def _reused(self, flow: Flow, from_orig: bool, seq: int) -> bool:
        """A new SYN on a closed connection, with a new sequence number, starts a new one
        (Zeek's IsReuse)."""
        return seq != (flow.orig if from_orig else flow.resp).isn

    def _new(self, decoded: Packet, ts: int) -> tuple[Flow, bool]:
        """A flow for a packet of an unknown 5-tuple; (flow, from_orig). The originator is the
        sender of the first packet, except: an ICMP reply's receiver; for a SYN-ACK its
        receiver; and, as Zeek guesses, the side on a likely server port when the first packet
        is not a SYN (TCP) or of UDP."""
        proto, src_raw, dst_raw, key, is_reply, sport, dport, flags = (
            decoded[6], decoded[7], decoded[8], decoded[11], decoded[12], decoded[13],
            decoded[14], decoded[17],
        )  # fmt: skip
        src, dst = _address(src_raw), _address(dst_raw)
        flip = False
        if proto == 6:
            flip = flags & 0x12 == 0x12 or (not flags & 0x02 and _server_side(sport, dport))
        elif proto == 17:
            flip = _server_side(sport, dport)
        elif is_reply:
            src, dst = dst, src
        name = PROTO_NAMES.get(proto, str(proto))
        orig, resp = ((dst, dport), (src, sport)) if flip else ((src, sport), (dst, dport))
        size = len(src_raw)  # the key: source, destination, source port, destination port, proto
        reverse = key[size : 2 * size] + key[:size] + key[-3:-1] + key[-5:-3] + key[-1:]
        text = f"{self.source}\0{ts}\0{name}\0{orig[0]}\0{orig[1]}\0{resp[0]}\0{resp[1]}"
        uid = "C" + hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
        keys = (reverse, key) if flip else (key, reverse)
        flow = Flow(name, orig, resp, keys, ts, uid)
        if flip:
            flow.history.append("^")
        self.flows[flow.key] = (flow, True)
        self.flows[flow.rkey] = (flow, False)
        return flow, not flip and not is_reply

    def _end(self, flow: Flow) -> None:
        """Write a finished flow's conn row and its application rows; forget it."""
        pcap_apps.finish(flow)
        self.conn_rows.append(conn_row(flow))
        for key in (flow.key, flow.rkey):
            entry = self.flows.get(key)
            if entry is not None and entry[0] is flow:
                del self.flows[key]

    def _sweep(self, now: int) -> None:
        """End the flows idle past their timeout (bounds the memory of long captures)."""
        for flow, first in list(self.flows.values()):
            if first and flow.expired(now):
                self._end(flow)

    def _full(self, everything: bool = False) -> Iterator[tuple[str, pa.RecordBatch]]:
        if self.conn_rows and (everything or len(self.conn_rows) >= ROW_BATCH):
            yield "conn", conn_batch(self.conn_rows, self.source)
            self.conn_rows = []
        for table in list(self.out.rows) if everything else self.out.full():
            batch = self.out.take(table)
            if batch is not None:
                yield table, batch
