"""pfSense and OPNsense filterlog -> the firewall table.

filterlog writes one CSV record per logged packet inside a syslog line, BSD (``Sep 28 10:38:09
pfSense filterlog[123]: CSV``) or RFC 5424 (``<134>1 2022-09-06T18:37:34+02:00 opnsense
filterlog 69805 - [meta ...] CSV``). The CSV is rule number, sub-rule, anchor, tracker,
interface, reason, action, direction, IP version; for IPv4 TOS, ECN, TTL, id, offset, flags,
protocol id, protocol name, length; for IPv6 class, flow label, hop limit, protocol name,
protocol id, payload length; then source and destination; then for TCP source port, destination
port, data length, flags, sequence, ack, window, urg, options, for UDP (and SCTP) the ports and
length, for ICMP a type word and its details (Netgate, "Raw Filter Log Format"; pfSense's
sysutils/filterlog/files/filterlog.c and print-*.c). Lines of other programs are skipped; a
filterlog record without addresses, or whose fields do not fit the format, is reported with its
line number.

Parsing is line by line in Python (a split on commas), which keeps every bad record's line
number: DuckDB over chunks of lines was slower (indexing a split record cost about a
microsecond per field and row), and its read_csv, faster, cannot number the lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from homecall.sources.firewall_logs import (
    Row,
    Stamps,
    number_of,
    port_of,
    protocol_name,
    read_lines,
    syslog_parts,
)
from homecall.sources.options import DEFAULT_OPTIONS, ReadOptions
from homecall.sources.problems import Problems

__all__ = ["FORMAT", "read", "sniff"]

FORMAT = "pfsense"
SNIFF_LINES = 50

_RECORD = re.compile(r"^\d+,[^,]*,[^,]*,[^,]*,[^,]*,[^,]*,[^,]*,[^,]*,[46],")
_ADDRESS = re.compile(r"^(?:\d{1,3}\.){3}\d{1,3}$|^[0-9A-Fa-f]*:[0-9A-Fa-f:.]*$")
_WITH_PORTS = frozenset({"tcp", "udp", "sctp"})
_IPV6_HEADER = 40  # bytes; filterlog logs an IPv6 packet's payload length
# filterlog's action words (pf_actions in filterlog.c); nat, rdr, binat and scrub say nothing
# about whether the packet passed
_ACTIONS = {"pass": "allow", "block": "deny", "reject": "deny", "synproxy-drop": "deny"}


def sniff(head: bytes) -> bool:
    """True when one of the first syslog lines is filterlog's, with a CSV record."""
    lines = [line for line in head.decode("utf-8", "replace").splitlines() if line.strip()]
    for line in lines[:SNIFF_LINES]:
        parts = syslog_parts(line)
        if parts is not None and parts.program == "filterlog":
            return _RECORD.match(parts.message) is not None
    return False


def read(
    path: Path, problems: Problems, options: ReadOptions = DEFAULT_OPTIONS
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Yield ("firewall", batch) for one filterlog file; bad records go to `problems`."""
    return read_lines(path, problems, options, _parse)


def _parse(line: str, stamps: Stamps) -> Row | None:
    """The row of one line; None for another program's line; ValueError for a bad one."""
    parts = syslog_parts(line)
    if parts is None:
        raise ValueError("not a syslog line")
    if parts.program != "filterlog":
        return None
    v = parts.message.split(",")
    version = v[8] if len(v) > 8 else ""
    if version == "4" and len(v) >= 20:
        protocol_id, protocol_text, length, source, target = v[15], v[16], v[17], v[18], v[19]
        rest = v[20:]
    elif version == "6" and len(v) >= 17:
        protocol_text, protocol_id, length, source, target = v[12], v[13], v[14], v[15], v[16]
        rest = v[17:]
    else:
        raise ValueError("filterlog record without an IPv4 or IPv6 header")
    if _ADDRESS.match(source) is None or _ADDRESS.match(target) is None:
        raise ValueError("filterlog record without source and destination addresses")
    proto = protocol_name(protocol_id if protocol_id.isdigit() else protocol_text)
    source_port = target_port = flags = None
    if proto in _WITH_PORTS:
        if len(rest) < 2 or not rest[0] or not rest[1]:
            raise ValueError(f"filterlog {proto} record without ports")
        source_port, target_port = port_of(rest[0]), port_of(rest[1])
        if proto == "tcp" and len(rest) > 3:
            flags = rest[3] or None
    action_word, direction, interface = v[6], v[7], v[4] or None
    reason = action_word if v[5] in ("match", "") else f"{action_word} ({v[5]})"
    packet_length = number_of(length)
    if packet_length is not None and version == "6":
        packet_length += _IPV6_HEADER
    return (
        stamps.micros(parts.stamp), None, source, source_port, target, target_port, proto,
        _ACTIONS.get(action_word), reason, v[3] or v[0] or None,
        direction if direction in ("in", "out") else None,
        interface if direction != "out" else None, interface if direction == "out" else None,
        parts.host, None, packet_length, number_of(v[11]), flags,
        None, None,
    )  # fmt: skip
