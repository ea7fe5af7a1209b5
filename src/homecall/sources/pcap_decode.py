"""Packet headers on the hot path: link layer, IPv4/IPv6 and TCP/UDP/ICMP, with struct only.

`decode` reads one frame into a flat tuple (`Packet`) of the header fields the flows and the
packets table need, and the flow key of its 5-tuple. Untagged Ethernet + IPv4 without options,
the bulk of most captures, takes a short path; everything else goes through the general one.
A packet cut short by the capture's snap length is read as far as its headers go.
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = ["LINK_TYPES", "PROTO_NAMES", "Packet", "decode", "tcp_options", "unsupported_link"]

# Link types read (https://www.tcpdump.org/linktypes.html) and their names for messages.
LINK_TYPES = {
    0: "NULL (BSD loopback)",
    1: "ETHERNET",
    12: "RAW (OpenBSD)",
    14: "RAW (BSD/OS)",
    101: "RAW",
    108: "LOOP (OpenBSD loopback)",
    113: "LINUX_SLL",
    228: "IPV4",
    229: "IPV6",
    276: "LINUX_SLL2",
}
_OTHER_LINK_TYPES = {9: "PPP", 50: "PPP_HDLC", 104: "C_HDLC", 105: "IEEE802_11",
                     119: "PRISM_HEADER", 127: "IEEE802_11_RADIOTAP", 147: "USER0",
                     187: "BLUETOOTH_HCI_H4", 195: "IEEE802_15_4", 220: "USB_LINUX_MMAPPED",
                     249: "NETLINK", 263: "BLUETOOTH_LE_LL"}  # fmt: skip
PROTO_NAMES = {1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 51: "ah",
               58: "icmp", 89: "ospf", 103: "pim", 112: "vrrp", 132: "sctp"}  # fmt: skip
# ICMP request type -> reply type: a request and its reply are one flow, as in Zeek.
ICMP_PAIRS = {1: {8: 0, 13: 14, 15: 16, 17: 18, 10: 9},
              58: {128: 129, 133: 134, 135: 136, 130: 131}}  # fmt: skip
_ICMP_REPLIES = {proto: {v: k for k, v in pairs.items()} for proto, pairs in ICMP_PAIRS.items()}

# A decoded packet: (ip_version, ip_len, ttl, ip_id, ip_flags, tos, proto, src, dst, fragment,
# frag_id, key, is_reply, sport, dport, seq, ack, tcp_flags, tcp_reserved, tcp_window,
# urgent_ptr, tcp_options, payload_len, payload_start, payload_end). `fragment` is 0 (a whole
# datagram), 1 (a first fragment) or 2 (a later one: no transport header, key None); `key` is
# source + destination + ports + protocol, for an ICMP reply that of its request. Fields a
# packet does not have are -1 (numbers) or None.
Packet = tuple[Any, ...]

_IPV4 = struct.Struct("!BBHHHBB2x4s4s").unpack_from
_IPV4_FAST = struct.Struct("!HHHBB2x").unpack_from
_IPV6 = struct.Struct("!IHBB16s16s").unpack_from
_U16 = struct.Struct("!H").unpack_from
_TCP = struct.Struct("!HHIIBBH2xH").unpack_from
_UDP = struct.Struct("!HHH").unpack_from
_PORTS = struct.Struct("!HH").pack
_VLAN_TYPES = (0x8100, 0x88A8, 0x9100)
_IPV6_EXTENSIONS = (0, 43, 60, 135, 139, 140, 253, 254)
_NULL_INET6 = (10, 24, 28, 30)  # AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD, macOS
_PROTO_BYTES = [bytes((p,)) for p in range(256)]


def unsupported_link(link_type: int) -> str:
    """The message for a capture of a link type that is not read."""
    name = _OTHER_LINK_TYPES.get(link_type, "unknown")
    readable = ", ".join(f"{number} {text}" for number, text in LINK_TYPES.items())
    return f"unsupported link type {link_type} ({name}); readable: {readable}"


def decode(link_type: int, data: bytes) -> Packet | str | None:
    """The headers of one frame; None for a frame without IP (ARP, LLDP, ...), a reason when
    a header is cut short or invalid."""
    if link_type == 1 and data[12:15] == b"\x08\x00\x45" and len(data) >= 54:
        total, ip_id, frag, ttl, proto = _IPV4_FAST(data, 16)
        available = len(data) - 14
        if total == 0:  # segmentation offload: the length is not filled in
            total = available
        if total >= 40 and not frag & 0x3FFF:
            end = 14 + (total if total < available else available)
            if proto == 6:  # the bulk: TCP in untagged Ethernet + IPv4 without options
                sport, dport, seq, ack, offset_byte, flag_byte, window, urgent = _TCP(data, 34)
                hlen = (offset_byte >> 4) * 4
                if hlen <= 20:
                    options = ""
                elif hlen == 32 and data[54:58] == b"\x01\x01\x08\x0a":
                    options = "1,1,8"
                else:
                    options = tcp_options(data, 54, min(34 + hlen, end))
                return (4, total, ttl, ip_id, frag >> 13, data[15], 6, data[26:30], data[30:34],
                        0, 0, data[26:38] + b"\x06", False, sport, dport, seq, ack,
                        flag_byte | (offset_byte & 1) << 8, (offset_byte >> 1) & 7, window,
                        urgent, options, total - 20 - hlen if total > 20 + hlen else 0,
                        34 + hlen, end)  # fmt: skip
            ip = (4, total, ttl, ip_id, frag >> 13, data[15], proto, data[26:30], data[30:34])
            return _transport(ip, data, 0, 0, 34, total - 20, end)
    off = _network_offset(link_type, data)
    if off is None:
        return None
    if off >= len(data):
        return "frame without IP header"
    version = data[off] >> 4
    if version == 4:
        return _ipv4(data, off)
    if version == 6:
        return _ipv6(data, off)
    return None if link_type == 1 else f"IP version {version}"


def _network_offset(link_type: int, data: bytes) -> int | None:
    """Where the IP packet starts in the frame, or None when it carries no IP."""
    if link_type == 1:
        if len(data) < 14:
            return None
        kind = _U16(data, 12)[0]
        off = 14
        while kind in _VLAN_TYPES and off + 4 <= len(data):
            kind = _U16(data, off + 2)[0]
            off += 4
        return _after_ethertype(data, kind, off)
    if link_type in (101, 228, 229, 12, 14):
        return 0
    if link_type == 113:
        return _after_ethertype(data, _U16(data, 14)[0], 16) if len(data) >= 16 else None
    if link_type == 276:
        return _after_ethertype(data, _U16(data, 0)[0], 20) if len(data) >= 20 else None
    if link_type in (0, 108):
        if len(data) < 4:
            return None
        family = int.from_bytes(data[:4], "big" if link_type == 108 else "little")
        if family > 0xFFFF:
            family = int.from_bytes(data[:4], "big")
        return 4 if family == 2 or family in _NULL_INET6 else None
    raise ValueError(f"link type {link_type} is not read")


def _after_ethertype(data: bytes, kind: int, off: int) -> int | None:
    if kind in (0x0800, 0x86DD):
        return off
    if kind in (0x8847, 0x8848):  # MPLS: skip labels to the bottom of the stack
        while off + 4 <= len(data):
            off += 4
            if data[off - 2] & 1:
                return off
        return None
    if kind == 0x8864 and off + 8 <= len(data):  # PPPoE session: PPP protocol IPv4 or IPv6
        return off + 8 if _U16(data, off + 6)[0] in (0x0021, 0x0057) else None
    return None


def _ipv4(data: bytes, off: int) -> Packet | str:
    if off + 20 > len(data):
        return "truncated IPv4 header"
    ver_ihl, tos, total, ip_id, frag, ttl, proto, src, dst = _IPV4(data, off)
    ihl = (ver_ihl & 0x0F) * 4
    if ihl < 20:
        return f"IPv4 header length {ihl}"
    available = len(data) - off
    if total == 0:
        total = available
    if total < ihl:
        return f"IPv4 total length {total} below its header length {ihl}"
    fragment = 2 if frag & 0x1FFF else 1 if frag & 0x2000 else 0
    ip = (4, total, ttl, ip_id, frag >> 13, tos, proto, src, dst)
    return _transport(
        ip, data, fragment, ip_id, off + ihl, total - ihl, off + min(total, available)
    )


def _ipv6(data: bytes, off: int) -> Packet | str:
    if off + 40 > len(data):
        return "truncated IPv6 header"
    first, payload, nxt, hops, src, dst = _IPV6(data, off)
    total = 40 + payload
    end = off + min(total, len(data) - off)
    pos = off + 40
    fragment, frag_id = 0, 0
    while nxt in _IPV6_EXTENSIONS or nxt == 44 or nxt == 51:
        if pos + 8 > end:
            break
        if nxt == 44:
            offset_flags = _U16(data, pos + 2)[0]
            frag_id = int.from_bytes(data[pos + 4 : pos + 8], "big")
            fragment = 2 if offset_flags >> 3 else 1 if offset_flags & 1 else 0
            nxt, pos = data[pos], pos + 8
            if fragment == 2:
                break
        elif nxt == 51:  # AH: length in 4-byte units, minus 2
            nxt, pos = data[pos], pos + (data[pos + 1] + 2) * 4
        else:
            nxt, pos = data[pos], pos + (data[pos + 1] + 1) * 8
    ip = (6, total, hops, -1, -1, (first >> 20) & 0xFF, nxt, src, dst)
    return _transport(ip, data, fragment, frag_id, pos, total - (pos - off), end)


def _transport(
    ip: tuple[Any, ...], data: bytes, fragment: int, frag_id: int, l4: int, l4_len: int, end: int
) -> Packet | str:
    """The transport header at `l4` (`l4_len` bytes by the IP length, captured up to `end`)."""
    proto, src, dst = ip[6], ip[7], ip[8]
    if fragment == 2:
        return (*ip, 2, frag_id, None, False, 0, 0, 0, 0, -1, -1, -1, -1, None, l4_len, end, end)
    if proto == 6:
        if l4 + 20 > len(data):
            return "truncated TCP header"
        sport, dport, seq, ack, offset_byte, flag_byte, window, urgent = _TCP(data, l4)
        hlen = (offset_byte >> 4) * 4
        options = "" if hlen <= 20 else tcp_options(data, l4 + 20, min(l4 + hlen, end))
        payload = l4_len - hlen if l4_len > hlen else 0
        key = src + dst + data[l4 : l4 + 4] + b"\x06"
        return (*ip, fragment, frag_id, key, False, sport, dport, seq, ack,
                flag_byte | (offset_byte & 1) << 8, (offset_byte >> 1) & 7, window, urgent,
                options, payload, l4 + hlen, end)  # fmt: skip
    if proto == 17:
        if l4 + 8 > len(data):
            return "truncated UDP header"
        sport, dport, size = _UDP(data, l4)
        payload = size - 8 if size >= 8 else max(0, l4_len - 8)
        key = src + dst + data[l4 : l4 + 4] + b"\x11"
        return (*ip, fragment, frag_id, key, False, sport, dport, 0, 0, -1, -1, -1, -1, None,
                payload, l4 + 8, end)  # fmt: skip
    if proto in (1, 58):
        if l4 + 2 > len(data):
            return "truncated ICMP header"
        kind, code = data[l4], data[l4 + 1]
        reply_type = ICMP_PAIRS[proto].get(kind)
        is_reply = False
        if reply_type is not None:
            sport, dport = kind, reply_type
        elif kind in _ICMP_REPLIES[proto]:
            sport, dport, is_reply = _ICMP_REPLIES[proto][kind], kind, True
            src, dst = dst, src
        else:
            sport, dport = kind, code
        key = src + dst + _PORTS(sport, dport) + _PROTO_BYTES[proto]
        return (*ip, fragment, frag_id, key, is_reply, sport, dport, 0, 0, -1, -1, -1, -1, None,
                max(0, l4_len - 8), l4 + 8, end)  # fmt: skip
    key = src + dst + b"\x00\x00\x00\x00" + _PROTO_BYTES[proto]
    return (*ip, fragment, frag_id, key, False, 0, 0, 0, 0, -1, -1, -1, -1, None, l4_len, l4, end)


def tcp_options(data: bytes, start: int, end: int) -> str:
    """The option kinds of a TCP header, in order and comma-separated ("2,4,8,1,3")."""
    if end - start == 12 and data[start : start + 4] == b"\x01\x01\x08\x0a":
        return "1,1,8"  # the usual options of a segment: NOP, NOP, timestamps
    kinds = []
    pos = start
    while pos < end:
        kind = data[pos]
        kinds.append(str(kind))
        if kind == 0:
            break
        if kind == 1:
            pos += 1
            continue
        if pos + 1 >= end or data[pos + 1] < 2:
            break
        pos += data[pos + 1]
    return ",".join(kinds)
