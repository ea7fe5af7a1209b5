"""Hand-built captures for the pcap reader tests: frames made with dpkt, files written with struct
from the format specifications (libpcap's file format, the pcapng draft), never with the reader
under test. Also the DER certificates of a small test PKI, made with OpenSSL 3.0 (values
printed by `openssl x509 -nameopt RFC2253` are quoted in the tests)."""

from __future__ import annotations

import base64
import socket
import struct
from pathlib import Path

import dpkt
import pyarrow as pa

from homecall.sources import pcap
from homecall.sources.problems import Problems

T0_US = 1_764_288_000 * 1_000_000  # 2025-11-28 00:00 UTC
CLIENT, SERVER = "10.0.0.5", "192.0.2.80"
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

# openssl req -x509 (EC P-256, CA:TRUE), then an RSA 2048 leaf signed by it with
# subjectAltName DNS:c2.example.test, DNS:*.cdn.example.test, IP:192.0.2.7, IP:2001:db8::7
LEAF_DER = base64.b64decode(
    "MIIDATCCAqigAwIBAgIGChssPU5fMAoGCCqGSM49BAMCMEYxCzAJBgNVBAYTAkRFMRwwGgYDVQQKDBNIb21lY2FsbCBU"
    "ZXN0LCBJbmMuMRkwFwYDVQQDDBBIb21lY2FsbCBUZXN0IENBMB4XDTI2MTEyODE1MTA0NVoXDTI5MDMwMjE1MTA0NVow"
    "ZjELMAkGA1UEBhMCREUxEDAOBgNVBAgMB1rDvHJpY2gxIDAeBgNVBAoMF0MyIE9wcyArIEZyaWVuZHM7ICJSZWQiMSMw"
    "CQYDVQQFEwI0MjAWBgNVBAMMD2MyLmV4YW1wbGUudGVzdDCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEBAJpz"
    "hA+o8pBMDcbDUYnaLj+b0aDGkSfne/GuCZXEX366ZWe8qGwOrsuW/v7NRWPkghdj1sIF/yu+JSW618cOcnPymW2qLRQd"
    "E/SpiD2LOeDL+pY1sck6wfEU6VhdZ+YE255RB/4uj1JzKbuWdBSmhSMNrdfmjocnDNwlQeuP+44VS2u7LmORQFRBM4kD"
    "sQcIl5E/MFy9pZBQltXQG78eEGZml70tpnCampxmkgwtKpW97xdq6gC9bb2q7oHtAFj+8yth8spOxddJxmk2HUprFkE5"
    "C5iR5MJxOkapIVYHRAywF8JsNzm+L8y8QjJk3JCvGEhmHRsxyM0P78SsbJVOm58CAwEAAaOBljCBkzAJBgNVHRMEAjAA"
    "MEYGA1UdEQQ/MD2CD2MyLmV4YW1wbGUudGVzdIISKi5jZG4uZXhhbXBsZS50ZXN0hwTAAAIHhxAgAQ24AAAAAAAAAAAA"
    "AAAHMB0GA1UdDgQWBBSxyjzGe/CBiGV3b1niz2ZqkfhI9jAfBgNVHSMEGDAWgBSiipa8SjH9qRsdIkPDnJuZBnBpkTAK"
    "BggqhkjOPQQDAgNHADBEAiAsnJzeDJrJvT5qMIxQMtfnRj1TCT2FgMgm9+PgArNcwgIgTmWVzGPjdjC47nRp2QaLBuwT"
    "LWWylQCJbrwPdQBRUB0="
)
CA_DER = base64.b64decode(
    "MIIB4DCCAYegAwIBAgIEAMD/7jAKBggqhkjOPQQDAjBGMQswCQYDVQQGEwJERTEcMBoGA1UECgwTSG9tZWNhbGwgVGVz"
    "dCwgSW5jLjEZMBcGA1UEAwwQSG9tZWNhbGwgVGVzdCBDQTAeFw0yNjExMjgxNTEwMzlaFw0zNjExMjUxNTEwMzlaMEYx"
    "CzAJBgNVBAYTAkRFMRwwGgYDVQQKDBNIb21lY2FsbCBUZXN0LCBJbmMuMRkwFwYDVQQDDBBIb21lY2FsbCBUZXN0IENB"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEMxPTl0WiLBFwlxU22WMOAigf8mVMa82smfNME76DDv9RSIRHo8yCQVj1"
    "0RzIVeq54CNyKzNENUCGec1pJ4hOpaNjMGEwHQYDVR0OBBYEFKKKlrxKMf2pGx0iQ8Ocm5kGcGmRMB8GA1UdIwQYMBaA"
    "FKKKlrxKMf2pGx0iQ8Ocm5kGcGmRMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgEGMAoGCCqGSM49BAMCA0cA"
    "MEQCIDaEhBqpkZ725/4jTmuOC6iXG4m5P4hd3N94qRZeoqEJAiAXLEEjcuMXnAEHKu2F0Kt5QzZ66fCOfGMzJXL45K4o"
    "mQ=="
)


# Made with the `cryptography` package (tests/sources/test_pcap_tls.py quotes what
# `openssl x509 -nameopt RFC2253` prints for them): a self-signed brainpoolP256r1 certificate
# whose names hold a T61String, a NumericString, an OID OpenSSL has no name for and a BMPString
# in a two-valued RDN; and one whose T61Strings hold a Latin-1 byte (0xfc), which OpenSSL prints
# and `cryptography` refuses.
ODD_DER = base64.b64decode(
    "MIIB1DCCAXugAwIBAgICAP8wCgYIKoZIzj0EAwMwczELMAkGA1UEBhMCQ0gxEDAOBgNVBAcUB1rDvHJpY2gxDTALBgNV"
    "BBESBDgwMDExJzAQBgkrBgEEAYOyAwEMA29kZDATBgNVBAoeDABPAHAAcwAgACMAMTEaMBgGA1UEAwwRIGMyLmV4YW1w"
    "bGUudGVzdCAwHhcNOTkwMTAyMDMwNDA1WhcNNDkxMjMxMjM1OTU5WjBzMQswCQYDVQQGEwJDSDEQMA4GA1UEBxQHWsO8"
    "cmljaDENMAsGA1UEERIEODAwMTEnMBAGCSsGAQQBg7IDAQwDb2RkMBMGA1UECh4MAE8AcABzACAAIwAxMRowGAYDVQQD"
    "DBEgYzIuZXhhbXBsZS50ZXN0IDBaMBQGByqGSM49AgEGCSskAwMCCAEBBwNCAAQydfJdzuLG1IlctSCL3p4+zD8yHWNc"
    "8O39Xpi0Ld+Rqwb1KEONduC6gFhIU1M/d1qdz1AWrVxsCz7v6dnczPG8MAoGCCqGSM49BAMDA0cAMEQCIEMJ8Sk4qwH5"
    "QrR8GI4YEg74xZmkfOmULL0n3DwA+SHlAiAEZXVt1FsDIeEt2doRp8GyokDF4rB94in7kzDPXfUZCw=="
)
LATIN1_DER = base64.b64decode(
    "MIIBSjCB8aADAgECAgEHMAoGCCqGSM49BAMCMC8xDzANBgNVBAcUBlr8cmljaDEcMBoGA1UEAwwTbGF0aW4xLmV4YW1w"
    "bGUudGVzdDAeFw0yMDAxMDEwMDAwMDBaFw00OTEyMzEyMzU5NTlaMC8xDzANBgNVBAcUBlr8cmljaDEcMBoGA1UEAwwT"
    "bGF0aW4xLmV4YW1wbGUudGVzdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABCcV2vnaxy+fMKo7r0cgfKhcDVn2lYwI"
    "/LCcUyDlc0/BWLSbd/K6pW2RrBW0uM0FiqBLWl0MQ83vQjL0aCkxCo4wCgYIKoZIzj0EAwIDSAAwRQIhAJzmMKI5llZC"
    "4Dw2suYAvpTv9pCReg6RslbbZKOBEMb+AiA18TLdyBBQZAmY6zjgnMzAb5bQU2wBLjRMBGLUbkK6pQ=="
)


def ip4(text: str) -> bytes:
    return socket.inet_aton(text)


def tcp_packet(
    src: str, sport: int, dst: str, dport: int, flags: int, seq: int, ack: int, data: bytes = b""
) -> dpkt.ip.IP:
    segment = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, data=data)
    return dpkt.ip.IP(src=ip4(src), dst=ip4(dst), p=dpkt.ip.IP_PROTO_TCP, ttl=64, data=segment)


def udp_packet(src: str, sport: int, dst: str, dport: int, data: bytes) -> dpkt.ip.IP:
    datagram = dpkt.udp.UDP(sport=sport, dport=dport, ulen=8 + len(data), data=data)
    return dpkt.ip.IP(src=ip4(src), dst=ip4(dst), p=dpkt.ip.IP_PROTO_UDP, ttl=64, data=datagram)


def ethernet(ip: dpkt.Packet, vlans: tuple[int, ...] = ()) -> bytes:
    """An Ethernet frame, with 802.1Q (first 0x88a8 when two: QinQ) tags in front of the IP."""
    kind = 0x86DD if isinstance(ip, dpkt.ip6.IP6) else 0x0800
    tags = b""
    for i, vid in enumerate(vlans):
        tpid = 0x88A8 if len(vlans) > 1 and i == 0 else 0x8100
        tags += struct.pack("!HH", tpid, vid)
    first = struct.unpack("!H", tags[:2])[0] if tags else kind
    rest = tags[2:] + struct.pack("!H", kind) if tags else b""
    return b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", first) + rest + bytes(ip)


def session(
    messages: list[tuple[bool, bytes]],
    *,
    cport: int = 40000,
    sport: int = 8080,
    t0_us: int = T0_US,
    close: bool = True,
) -> list[tuple[int, bytes]]:
    """(ts_us, Ethernet frame) of a TCP session: handshake, each message in one segment with
    its ACK, and FIN/FIN/ACK when `close`; 1 ms between packets."""
    c_seq, s_seq = 1000, 5000
    frames: list[tuple[int, dpkt.ip.IP]] = []

    def add(from_client: bool, flags: int, data: bytes = b"") -> None:
        nonlocal c_seq, s_seq
        if from_client:
            ip = tcp_packet(CLIENT, cport, SERVER, sport, flags, c_seq, s_seq, data)
            c_seq += len(data) + (1 if flags & (SYN | FIN) else 0)
        else:
            ip = tcp_packet(SERVER, sport, CLIENT, cport, flags, s_seq, c_seq, data)
            s_seq += len(data) + (1 if flags & (SYN | FIN) else 0)
        frames.append((t0_us + 1000 * len(frames), ip))

    add(True, SYN)
    add(False, SYN | ACK)
    add(True, ACK)
    for from_client, data in messages:
        add(from_client, PSH | ACK, data)
        add(not from_client, ACK)
    if close:
        add(True, FIN | ACK)
        add(False, FIN | ACK)
        add(True, ACK)
    return [(ts, ethernet(ip)) for ts, ip in frames]


def write_pcap(
    path: Path,
    frames: list[tuple[int, bytes]],
    link_type: int = 1,
    *,
    nanoseconds: bool = False,
    big_endian: bool = False,
    snaplen: int = 65535,
) -> list[int]:
    """A classic pcap (libpcap file format); returns each record's byte offset."""
    order = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, link_type)]
    offsets, at = [], 24
    for ts_us, frame in frames:
        seconds, micros = divmod(ts_us, 1_000_000)
        fraction = micros * 1000 if nanoseconds else micros
        data = frame[:snaplen]
        offsets.append(at)
        out.append(struct.pack(order + "IIII", seconds, fraction, len(data), len(frame)) + data)
        at += 16 + len(data)
    path.write_bytes(b"".join(out))
    return offsets


def _block(kind: int, body: bytes, order: str) -> bytes:
    body += b"\0" * (-len(body) % 4)
    size = 12 + len(body)
    return struct.pack(order + "II", kind, size) + body + struct.pack(order + "I", size)


def pcapng_section(
    frames: list[tuple[int, bytes, int]],
    interfaces: list[tuple[int, int]],
    big_endian: bool = False,
) -> tuple[bytes, list[int]]:
    """One pcapng section: `interfaces` are (link type, if_tsresol exponent of ten), `frames`
    (ts_us, frame, interface); its bytes and each Enhanced Packet Block's offset in them."""
    order = ">" if big_endian else "<"
    blocks = [_block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1), order)]
    for link_type, exponent in interfaces:
        options = struct.pack(order + "HHB3x", 9, 1, exponent) + struct.pack(order + "HH", 0, 0)
        blocks.append(_block(1, struct.pack(order + "HHI", link_type, 0, 0) + options, order))
    offsets = []
    at = sum(len(b) for b in blocks)
    for ts_us, frame, interface in frames:
        ticks = ts_us * 10 ** interfaces[interface][1] // 1_000_000
        body = struct.pack(
            order + "IIIII", interface, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame)
        )
        block = _block(6, body + frame, order)
        offsets.append(at)
        blocks.append(block)
        at += len(block)
    return b"".join(blocks), offsets


def write_pcapng(
    path: Path, frames: list[tuple[int, bytes, int]], interfaces: list[tuple[int, int]]
) -> list[int]:
    """A pcapng file of one little-endian section; returns each Enhanced Packet Block's offset."""
    data, offsets = pcapng_section(frames, interfaces)
    path.write_bytes(data)
    return offsets


def read(path: Path) -> tuple[dict[str, list[dict[str, object]]], Problems]:
    """Every table the reader yields for `path`, as row dicts, and its problems."""
    problems = Problems()
    batches: dict[str, list[pa.RecordBatch]] = {}
    for table, batch in pcap.read(path, problems):
        assert isinstance(batch, pa.RecordBatch)
        batches.setdefault(table, []).append(batch)
    tables = {t: pa.Table.from_batches(b).to_pylist() for t, b in batches.items()}
    return tables, problems
