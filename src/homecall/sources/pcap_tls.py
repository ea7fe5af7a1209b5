"""TLS handshakes in a capture -> tls rows (one per session) and x509 rows for the certificates.

The records of each direction are read from the reassembled stream until both sides encrypt.
dpkt.ssl.TLSCertificate splits Certificate messages into certificates. The rest is read here:
records and handshake messages, because dpkt.ssl.tls_multi_factory drops the records before a
non-TLS one and checks no content type, and TLSHandshake raises on a message continued in the
next record (NeedData) and on types it does not know, such as the CertificateStatus of an
OCSP-stapled TLS 1.2 handshake (tests/sources/test_pcap_tls.py); the hellos, because
TLSClientHello makes a CipherSuite object for every cipher offered and reads a hello 2 to 3
times slower, and parse_extensions (its extension list) up to 1.7 times slower, than this
module (docs/schema.md, "Packet captures"); dpkt keeps extension contents as bytes anyway.
Fingerprints: JA3 and JA3S as Salesforce's reference (github.com/salesforce/ja3: decimal
values, GREASE dropped, MD5), JA4 and JA4S as FoxIO's technical details
(github.com/FoxIO-LLC/ja4, technical_details/JA4.md and JA4S.md). `established` is set as
Zeek sets it: a record after both sides switched to encryption (ChangeCipherSpec, or
application data for TLS 1.3 without the compatibility ChangeCipherSpec).
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
from dataclasses import dataclass, field
from typing import Any

import dpkt

from homecall.sources.pcap_tables import Collector
from homecall.sources.pcap_tls_names import ALERTS, CIPHERS, GROUPS, named
from homecall.sources.pcap_x509 import certificate, fingerprint
from homecall.sources.suricata_web import tls_version

__all__ = ["Hello", "TlsSession", "ja3", "ja3s", "ja4", "ja4s", "parse_hello"]

MAX_HANDSHAKE = 1 << 16  # bytes of each direction read before giving up (certificate chains)
_U16 = struct.Struct("!H").unpack_from
_HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
_JA4_VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3",
                 0x0002: "s2", 0xFEFF: "d1", 0xFEFD: "d2", 0xFEFC: "d3"}  # fmt: skip


def is_grease(value: int) -> bool:
    """True for the GREASE values of RFC 8701 (0x0a0a, 0x1a1a, ..., 0xfafa)."""
    return value & 0x0F0F == 0x0A0A and value >> 8 == value & 0xFF


@dataclass(slots=True)
class Hello:
    """A ClientHello or ServerHello: what the fingerprints and the tls row need."""

    version: int
    random: bytes = b""
    session_id: bytes = b""
    ciphers: list[int] = field(default_factory=list)  # one, the chosen one, for a ServerHello
    extensions: list[int] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    point_formats: list[int] = field(default_factory=list)
    signature_algorithms: list[int] = field(default_factory=list)
    alpn: list[bytes] = field(default_factory=list)
    supported_versions: list[int] = field(default_factory=list)
    server_name: str | None = None
    key_share: int | None = None  # ServerHello: the group of the key share

    @property
    def best_version(self) -> int:
        """The highest supported_versions entry without GREASE, else the hello's version."""
        versions = [v for v in self.supported_versions if not is_grease(v)]
        return max(versions) if versions else self.version


def _u16_list(data: bytes, start: int, end: int) -> list[int]:
    """The 16-bit values in data[start:end]; a length that overshoots the data is cut."""
    return [_U16(data, i)[0] for i in range(start, min(end, len(data)) - 1, 2)]


def parse_hello(body: bytes, is_client: bool) -> Hello:
    """A ClientHello or ServerHello handshake body; ValueError when it is cut short. Read here,
    not with dpkt.ssl: see the module docstring."""
    if len(body) < 38:
        raise ValueError("hello cut short")
    hello = Hello(_U16(body, 0)[0], random=body[2:34])
    pos = 35 + body[34]
    hello.session_id = body[35:pos]
    if is_client:
        size = _U16(body, pos)[0]
        hello.ciphers = _u16_list(body, pos + 2, pos + 2 + size)
        pos += 2 + size
        pos += 1 + body[pos]  # compression methods
    else:
        hello.ciphers = [_U16(body, pos)[0]]
        pos += 3  # cipher and compression method
    if pos + 2 > len(body):
        return hello
    end = min(pos + 2 + _U16(body, pos)[0], len(body))
    pos += 2
    while pos + 4 <= end:
        kind, size = struct.unpack_from("!HH", body, pos)
        data = body[pos + 4 : pos + 4 + size]
        pos += 4 + size
        hello.extensions.append(kind)
        _extension(hello, kind, data, is_client)
    return hello


def _extension(hello: Hello, kind: int, data: bytes, is_client: bool) -> None:
    if kind == 0 and is_client and len(data) >= 5 and data[2] == 0:
        hello.server_name = data[5 : 5 + _U16(data, 3)[0]].decode("ascii", "backslashreplace")
    elif kind == 10 and len(data) >= 2:
        hello.groups = _u16_list(data, 2, 2 + _U16(data, 0)[0])
    elif kind == 11 and data:
        hello.point_formats = list(data[1 : 1 + data[0]])
    elif kind == 13 and len(data) >= 2:
        hello.signature_algorithms = _u16_list(data, 2, 2 + _U16(data, 0)[0])
    elif kind == 16 and len(data) >= 2:
        pos, end = 2, min(len(data), 2 + _U16(data, 0)[0])
        while pos < end:
            hello.alpn.append(data[pos + 1 : pos + 1 + data[pos]])
            pos += 1 + data[pos]
    elif kind == 43:
        if is_client and data:
            hello.supported_versions = _u16_list(data, 1, 1 + data[0])
        elif len(data) >= 2:
            hello.supported_versions = [_U16(data, 0)[0]]
    elif kind == 51 and not is_client and len(data) >= 2:
        hello.key_share = _U16(data, 0)[0]


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _sha12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _dashed(values: list[int]) -> str:
    return "-".join(str(v) for v in values if not is_grease(v))


def ja3(hello: Hello) -> str:
    """JA3 of a ClientHello: MD5 of "version,ciphers,extensions,groups,point formats"."""
    fields = (str(hello.version), _dashed(hello.ciphers), _dashed(hello.extensions),
              _dashed(hello.groups), _dashed(hello.point_formats))  # fmt: skip
    return _md5(",".join(fields))


def ja3s(hello: Hello) -> str:
    """JA3S of a ServerHello: MD5 of "version,cipher,extensions"."""
    extensions = "-".join(str(v) for v in hello.extensions)
    return _md5(f"{hello.version},{hello.ciphers[0]},{extensions}")


def _is_alnum(byte: int) -> bool:
    return 0x30 <= byte <= 0x39 or 0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A


def _alpn_chars(alpn: list[bytes]) -> str:
    """JA4's ALPN part: first and last character of the first value, or of its hex form."""
    if not alpn or not alpn[0]:
        return "00"
    value = alpn[0]
    if _is_alnum(value[0]) and _is_alnum(value[-1]):
        return chr(value[0]) + chr(value[-1])
    text = value.hex()
    return text[0] + text[-1]


def _hex4(values: list[int]) -> list[str]:
    return [f"{v:04x}" for v in values if not is_grease(v)]


def ja4(hello: Hello, transport: str = "t") -> str:
    """JA4 of a ClientHello (FoxIO technical_details/JA4.md)."""
    ciphers = _hex4(hello.ciphers)
    extensions = _hex4(hello.extensions)
    version = _JA4_VERSIONS.get(hello.best_version, "00")
    sni = "d" if 0 in hello.extensions else "i"
    head = f"{transport}{version}{sni}{min(len(ciphers), 99):02d}{min(len(extensions), 99):02d}"
    part_b = _sha12(",".join(sorted(ciphers))) if ciphers else "000000000000"
    listed = sorted(e for e in extensions if e not in ("0000", "0010"))
    if listed:
        text = ",".join(listed)
        algorithms = _hex4(hello.signature_algorithms)
        if algorithms:
            text += "_" + ",".join(algorithms)
        part_c = _sha12(text)
    else:
        part_c = "000000000000"
    return f"{head}{_alpn_chars(hello.alpn)}_{part_b}_{part_c}"


def ja4s(hello: Hello, transport: str = "t") -> str:
    """JA4S of a ServerHello (FoxIO technical_details/JA4S.md)."""
    version = _JA4_VERSIONS.get(hello.best_version, "00")
    extensions = [f"{v:04x}" for v in hello.extensions]
    head = f"{transport}{version}{min(len(extensions), 99):02d}{_alpn_chars(hello.alpn)}"
    tail = _sha12(",".join(extensions)) if extensions else "000000000000"
    return f"{head}_{hello.ciphers[0]:04x}_{tail}"


class TlsSession:
    """The TLS handshake of one TCP flow, fed with each direction's reassembled bytes."""

    def __init__(self, base: dict[str, Any], out: Collector) -> None:
        self.base = base
        self.out = out
        self.done = False
        self.ts: int | None = None
        self.buffers = (bytearray(), bytearray())  # orig, resp
        self.handshakes = (bytearray(), bytearray())
        self.encrypted = [False, False]
        self.read = [0, 0]
        self.lost = [False, False]
        self.client: Hello | None = None
        self.server: Hello | None = None
        self.chains: tuple[list[bytes], list[bytes]] = ([], [])
        self.curve: str | None = None
        self.last_alert: str | None = None
        self.established = False

    def deliver(self, from_orig: bool, data: bytes, ts_us: int) -> None:
        """Bytes of one direction's stream, in order."""
        side = 0 if from_orig else 1
        if self.done or self.lost[side]:
            return
        if self.ts is None:
            self.ts = ts_us
        self.read[side] += len(data)
        buf = self.buffers[side]
        buf += data
        while len(buf) >= 5 and not self.done:
            kind, major, size = buf[0], buf[1], _U16(buf, 3)[0]
            if kind not in (20, 21, 22, 23, 24) or major != 3 or size > 18_432:
                self._lose(side)
                return
            if len(buf) < 5 + size:
                break
            body = bytes(buf[5 : 5 + size])
            del buf[: 5 + size]
            self._record(side, kind, body)
        if self.read[side] > MAX_HANDSHAKE:
            self._lose(side)

    def gap(self, from_orig: bool, missing: int) -> None:
        """Bytes of one direction were not captured: its records cannot be followed."""
        del missing
        self._lose(0 if from_orig else 1)

    def _lose(self, side: int) -> None:
        """Stop reading one side; done when the other is lost or encrypted too."""
        self.lost[side] = True
        self.buffers[side].clear()
        other = 1 - side
        self.done = self.lost[other] or self.encrypted[other]

    def _record(self, side: int, kind: int, body: bytes) -> None:
        if kind == 20:
            self.encrypted[side] = True
            self.done = self.lost[1 - side]
            return
        if kind == 23:
            self.encrypted[side] = True
            self.done = self.lost[1 - side]
        elif kind == 22 and not self.encrypted[side]:
            self.handshakes[side].extend(body)
            self._handshake(side)
        elif kind == 21 and not self.encrypted[side] and len(body) >= 2:
            self.last_alert = named(ALERTS, body[1])
        if self.encrypted[side] and self.encrypted[1 - side]:
            self.established = self.done = True

    def _handshake(self, side: int) -> None:
        buf = self.handshakes[side]
        while len(buf) >= 4:
            kind, size = buf[0], int.from_bytes(buf[1:4], "big")
            if size > MAX_HANDSHAKE:
                self._lose(side)
                return
            if len(buf) < 4 + size:
                return
            body = bytes(buf[4 : 4 + size])
            del buf[: 4 + size]
            try:
                self._message(side, kind, body)
            except (ValueError, IndexError, struct.error):
                self._lose(side)
                return

    def _message(self, side: int, kind: int, body: bytes) -> None:
        if kind == 1 and side == 0 and self.client is None:
            self.client = parse_hello(body, is_client=True)
        elif kind == 2 and side == 1:
            hello = parse_hello(body, is_client=False)
            if hello.random != _HRR_RANDOM:  # a HelloRetryRequest is not the answer
                self.server = hello
        elif kind == 11:
            with contextlib.suppress(dpkt.NeedData):  # contradicting lengths: no chain, read on
                self.chains[side].extend(dpkt.ssl.TLSCertificate(body).certificates)
        elif kind == 12 and side == 1 and self.server and self._named_curve(body):
            self.curve = named(GROUPS, _U16(body, 1)[0])

    def _named_curve(self, key_exchange: bytes) -> bool:
        """True for an ECDHE ServerKeyExchange naming its curve (RFC 8422 5.4)."""
        assert self.server is not None
        ecdhe = "ECDHE" in CIPHERS.get(self.server.ciphers[0], "")
        return ecdhe and key_exchange[:1] == b"\x03" and len(key_exchange) >= 3

    def finish(self) -> None:
        """Write the session's tls row and its certificates' x509 rows."""
        client, server = self.client, self.server
        if client is None and server is None:
            return
        ts = self.ts or 0
        row: dict[str, Any] = {**self.base, "ts": ts, "established": self.established}
        row["resumed"] = False
        if client is not None:
            row.update(server_name=client.server_name, ja3=ja3(client), ja4=ja4(client))
        if server is not None:
            version = server.best_version
            row.update(
                version=tls_version(f"0x{version:04x}"),
                cipher=named(CIPHERS, server.ciphers[0]),
                ja3s=ja3s(server),
                ja4s=ja4s(server),
                next_protocol=server.alpn[0].decode("ascii", "replace") if server.alpn else None,
            )
            self.curve = self.curve or (
                named(GROUPS, server.key_share) if server.key_share is not None else None
            )
            if version >= 0x0304 or version >> 8 == 0x7F:
                row["resumed"] = 41 in server.extensions  # pre_shared_key accepted
            elif client is not None:
                row["resumed"] = bool(server.session_id) and server.session_id == client.session_id
        row["curve"] = self.curve
        row["last_alert"] = self.last_alert
        for name, chain in (("cert_chain", self.chains[1]), ("client_cert_chain", self.chains[0])):
            if not chain:
                continue
            row[name] = [fingerprint(der) for der in chain]
            leaf = self._certificates(chain, ts)
            if name == "cert_chain" and leaf is not None:
                row.update(subject=leaf["subject"], issuer=leaf["issuer"])
                if client is not None and client.server_name:
                    row["sni_matches_cert"] = _matches(client.server_name, leaf)
        self.out.rows["tls"].append(row)

    def _certificates(self, chain: list[bytes], ts: int) -> dict[str, Any] | None:
        """Write the x509 rows of a chain's certificates (those cryptography can read: the
        others keep only their id in the chain); the leaf's columns, None when unreadable."""
        leaf = None
        for position, der in enumerate(chain):
            try:
                cert = certificate(der)
            except ValueError:
                continue
            if position == 0:
                leaf = cert
            key = (cert["cert_id"], ts // 86_400_000_000)
            if key not in self.out.certificates:
                self.out.certificates.add(key)
                self.out.rows["x509"].append({**cert, "ts": ts, "is_host_cert": position == 0})
        return leaf


def _matches(server_name: str, leaf: dict[str, Any]) -> bool:
    """True when the SNI is one of the certificate's names (a leading "*." matches one label)."""
    names = leaf["san_dns"] or [
        part[3:] for part in leaf["subject"].split(",") if part.startswith("CN=")
    ]
    host = server_name.lower().rstrip(".")
    for name in names:
        name = name.lower().rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False
