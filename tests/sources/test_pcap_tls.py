"""TLS in captures: JA3/JA3S/JA4/JA4S against the published examples of their specifications,
and a hand-built TLS 1.2 handshake with a certificate chain whose fields OpenSSL printed."""

from __future__ import annotations

import hashlib
import struct
from datetime import UTC, datetime
from pathlib import Path

import dpkt
import pytest

from homecall.sources.pcap_tls import ja3, ja3s, ja4, ja4s, parse_hello
from homecall.sources.pcap_x509 import certificate
from tests.sources.pcap_build import (
    CA_DER,
    LATIN1_DER,
    LEAF_DER,
    ODD_DER,
    read,
    session,
    write_pcap,
)

GREASE = 0x1A1A


def _u16s(values: list[int]) -> bytes:
    return b"".join(struct.pack("!H", v) for v in values)


def _vector(values: list[int], size_bytes: int = 2) -> bytes:
    body = _u16s(values)
    return len(body).to_bytes(size_bytes, "big") + body


def _sni(name: str) -> bytes:
    entry = b"\x00" + struct.pack("!H", len(name)) + name.encode()
    return struct.pack("!H", len(entry)) + entry


def _alpn(*names: bytes) -> bytes:
    body = b"".join(bytes([len(n)]) + n for n in names)
    return struct.pack("!H", len(body)) + body


def client_hello(
    version: int,
    ciphers: list[int],
    extensions: list[tuple[int, bytes]] | None,
    session_id: bytes = b"",
) -> bytes:
    """A ClientHello handshake body (RFC 5246 7.4.1.2); `extensions` None: no extension block."""
    body = struct.pack("!H", version) + bytes(32) + bytes([len(session_id)]) + session_id
    body += _vector(ciphers) + b"\x01\x00"
    if extensions is not None:
        block = b"".join(struct.pack("!HH", kind, len(data)) + data for kind, data in extensions)
        body += struct.pack("!H", len(block)) + block
    return body


def server_hello(
    version: int, cipher: int, extensions: list[tuple[int, bytes]], session_id: bytes = b""
) -> bytes:
    block = b"".join(struct.pack("!HH", kind, len(data)) + data for kind, data in extensions)
    body = struct.pack("!H", version) + bytes(range(32)) + bytes([len(session_id)]) + session_id
    return body + struct.pack("!HB", cipher, 0) + struct.pack("!H", len(block)) + block


def handshake(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + len(body).to_bytes(3, "big") + body


def record(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + b"\x03\x03" + struct.pack("!H", len(body)) + body


# ------------------------------------------------------------- published test vectors


def test_ja3_readme_examples() -> None:
    # github.com/salesforce/ja3 README: "769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,
    # 0-10-11,23-24-25,0 --> ada70206e40642a3e4461f35503241d5" and
    # "769,4-5-10-9-100-98-3-6-19-18-99,,, --> de350869b8c85de67a350c8d186f11e6"
    ciphers = [47, 53, 5, 10, 49161, 49162, 49171, 49172, 50, 56, 19, 4]
    extensions = [(0, _sni("example.com")), (10, _vector([23, 24, 25])), (11, b"\x01\x00")]
    hello = parse_hello(client_hello(0x0301, ciphers, extensions), is_client=True)
    assert ja3(hello) == "ada70206e40642a3e4461f35503241d5"
    bare = parse_hello(client_hello(0x0301, [4, 5, 10, 9, 100, 98, 3, 6, 19, 18, 99], None), True)
    assert ja3(bare) == "de350869b8c85de67a350c8d186f11e6"
    greased = [(GREASE, b""), *extensions[:1], (10, _vector([GREASE, 23, 24, 25])), extensions[2]]
    with_grease = parse_hello(client_hello(0x0301, [GREASE, *ciphers], greased), True)
    assert ja3(with_grease) == "ada70206e40642a3e4461f35503241d5"  # GREASE values are dropped


# FoxIO-LLC/ja4 technical_details/JA4.md, "Raw Output": the original (JA4_ro) lists of its
# example, which the document fingerprints as t13d1516h2_8daaf6152771_e5627efa2ab1.
JA4_CIPHERS = "1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035"
JA4_EXTENSIONS = "001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015"
JA4_SIGNATURES = "0403,0804,0401,0503,0805,0501,0806,0601"


def _hex(text: str) -> list[int]:
    return [int(v, 16) for v in text.split(",")]


def test_ja4_specification_example() -> None:
    data = {
        0x0000: _sni("example.com"),
        0x0010: _alpn(b"h2", b"http/1.1"),
        0x000D: _vector(_hex(JA4_SIGNATURES)),
        0x002B: bytes([6]) + _u16s([GREASE, 0x0304, 0x0303]),
    }
    extensions = [(GREASE, b"")] + [(e, data.get(e, b"")) for e in _hex(JA4_EXTENSIONS)]
    body = client_hello(0x0303, [GREASE, *_hex(JA4_CIPHERS)], extensions)
    assert ja4(parse_hello(body, is_client=True)) == "t13d1516h2_8daaf6152771_e5627efa2ab1"


def test_ja4s_specification_example() -> None:
    # FoxIO-LLC/ja4 technical_details/JA4S.md: extensions 0005,0017,ff01,0000, cipher c030,
    # TLS 1.2 without supported_versions, no ALPN -> t120400_c030_4e8089b08790
    body = server_hello(0x0303, 0xC030, [(0x0005, b""), (0x0017, b""), (0xFF01, b"\0"), (0, b"")])
    assert ja4s(parse_hello(body, is_client=False)) == "t120400_c030_4e8089b08790"


@pytest.mark.parametrize(
    ("alpn", "chars"),
    # JA4.md, "ALPN Extension Value": the hex examples; one character is both first and last
    [
        (b"\xab", "ab"),
        (b"\xab\xcd", "ad"),
        (b"\x30\xab", "3b"),
        (b"\x30\x31\xab\xcd", "3d"),
        (b"\x30\xab\xcd\x31", "01"),
        (b"http/1.1", "h1"),
        (b"h", "hh"),
    ],
)
def test_ja4_alpn_characters(alpn: bytes, chars: str) -> None:
    body = client_hello(0x0303, [0x1301], [(0x0010, _alpn(alpn))])
    assert ja4(parse_hello(body, is_client=True))[8:10] == chars


def test_ja4_empty_parts_are_zeros() -> None:
    body = client_hello(0x0303, [], [(0, _sni("a.example")), (0x0010, _alpn(b"h2"))])
    assert ja4(parse_hello(body, is_client=True)) == "t12d0002h2_000000000000_000000000000"


def test_ja3s_of_a_hand_built_server_hello() -> None:
    body = server_hello(0x0303, 0xC02F, [(0xFF01, b"\0"), (0, b""), (11, b"\x01\x00"), (35, b"")])
    expected = hashlib.md5(b"771,49199,65281-0-11-35", usedforsecurity=False).hexdigest()
    assert ja3s(parse_hello(body, is_client=False)) == expected


# ------------------------------------------------------------- a TLS 1.2 session


def _tls12_messages(
    alert: bool = False, certificates: tuple[bytes, ...] = (LEAF_DER, CA_DER)
) -> list[tuple[bool, bytes]]:
    hello = client_hello(
        0x0303,
        [GREASE, 0xC02F, 0xC030, 0x009C],
        [
            (GREASE, b""),
            (0, _sni("x.cdn.example.test")),
            (10, _vector([29, 23])),
            (11, b"\x01\x00"),
            (0x0010, _alpn(b"http/1.1")),
        ],
    )
    client = record(22, handshake(1, hello))
    if alert:
        return [(True, client), (False, record(21, b"\x02\x28"))]
    extensions = [(0xFF01, b"\0"), (0x0010, _alpn(b"http/1.1")), (11, b"\x01\x00")]
    chain = b"".join(len(c).to_bytes(3, "big") + c for c in certificates)
    flight = (
        handshake(2, server_hello(0x0303, 0xC02F, extensions))
        + handshake(11, len(chain).to_bytes(3, "big") + chain)
        + handshake(12, b"\x03\x00\x1d\x20" + bytes(32) + b"\x04\x01\x00\x00")
        + handshake(14, b"")
    )
    server = record(22, flight)
    finished = record(20, b"\x01") + record(22, bytes(40))
    return [
        (True, client[:60]),  # the ClientHello in two segments
        (True, client[60:]),
        (False, server),
        (True, finished),
        (False, finished),
        (True, record(23, bytes(100))),
    ]


def test_tls12_session_with_certificates(tmp_path: Path) -> None:
    path = tmp_path / "tls12.pcap"
    write_pcap(path, session(_tls12_messages(), sport=8443))
    tables, problems = read(path)
    assert problems.records == []
    [tls] = tables["tls"]
    assert tls["version"] == "TLSv12"
    assert tls["cipher"] == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert tls["curve"] == "x25519"
    assert tls["server_name"] == "x.cdn.example.test"
    assert tls["next_protocol"] == "http/1.1"
    assert (tls["established"], tls["resumed"], tls["last_alert"]) == (True, False, None)
    leaf_sha1 = hashlib.sha1(LEAF_DER, usedforsecurity=False).hexdigest()
    ca_sha1 = hashlib.sha1(CA_DER, usedforsecurity=False).hexdigest()
    assert tls["cert_chain"] == [leaf_sha1, ca_sha1]
    assert leaf_sha1 == "e234bb39535bc93e9273896de898b194bad469db"  # openssl x509 -fingerprint
    assert tls["sni_matches_cert"] is True  # *.cdn.example.test
    # `openssl x509 -noout -subject -issuer -nameopt RFC2253` of the leaf:
    subject = (
        r"CN=c2.example.test+serialNumber=42,O=C2 Ops \+ Friends\; \"Red\",ST=Z\C3\BCrich,C=DE"
    )
    issuer = r"CN=Homecall Test CA,O=Homecall Test\, Inc.,C=DE"
    assert (tls["subject"], tls["issuer"]) == (subject, issuer)
    x509 = {row["cert_id"]: row for row in tables["x509"]}
    leaf, ca = x509[leaf_sha1], x509[ca_sha1]
    assert (leaf["serial"], leaf["subject"], leaf["issuer"]) == ("0A1B2C3D4E5F", subject, issuer)
    assert leaf["not_valid_before"] == datetime(2026, 11, 28, 15, 10, 45, tzinfo=UTC)
    assert leaf["not_valid_after"] == datetime(2029, 3, 2, 15, 10, 45, tzinfo=UTC)
    assert (leaf["key_alg"], leaf["key_type"], leaf["key_length"]) == ("rsaEncryption", "rsa", 2048)
    assert leaf["sig_alg"] == "ecdsa-with-SHA256"
    assert leaf["san_dns"] == ["c2.example.test", "*.cdn.example.test"]
    assert leaf["san_ip"] == ["192.0.2.7", "2001:db8::7"]
    assert (leaf["is_ca"], leaf["is_host_cert"], leaf["version"]) == (False, True, 3)
    assert (ca["serial"], ca["subject"], ca["issuer"]) == ("C0FFEE", issuer, issuer)
    assert (ca["key_type"], ca["key_length"], ca["is_ca"], ca["is_host_cert"]) == (
        "ecdsa",
        256,
        True,
        False,
    )
    [conn] = tables["conn"]
    assert (conn["service"], conn["uid"]) == ("ssl", tls["uid"])


def test_rejected_handshake_is_not_established(tmp_path: Path) -> None:
    path = tmp_path / "alert.pcap"
    write_pcap(path, session(_tls12_messages(alert=True), sport=443))
    tables, _ = read(path)
    [tls] = tables["tls"]
    assert (tls["established"], tls["last_alert"], tls["version"]) == (
        False,
        "handshake_failure",
        None,
    )
    assert tls["ja3"] is not None
    assert tls["ja3s"] is None
    assert "x509" not in tables


def test_certificate_names_as_openssl_prints_them() -> None:
    row = certificate(ODD_DER)
    # `openssl x509 -noout -subject -issuer -nameopt RFC2253` (OpenSSL 3.0.19): the T61String
    # byte by byte, the NumericString as text, the OID without a name as "#" + DER, the
    # two-valued RDN reversed, the leading and trailing spaces escaped
    name = (
        r"CN=\ c2.example.test\ ,O=Ops #1+1.3.6.1.4.1.55555.1=#0C036F6464,postalCode=8001,"
        r"L=Z\C3\83\C2\BCrich,C=CH"
    )
    assert (row["subject"], row["issuer"]) == (name, name)
    assert row["cert_id"] == "14c71c7be92cb503f73d62a953ae08a60cde8de4"  # -fingerprint
    assert row["serial"] == "FF"  # -serial
    assert (row["key_type"], row["key_length"]) == ("ecdsa", 256)  # brainpoolP256r1
    assert row["sig_alg"] == "ecdsa-with-SHA384"
    assert row["not_valid_before"] == datetime(1999, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp() * 1e6
    assert (
        row["not_valid_after"] == datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp() * 1e6
    )
    assert (row["san_dns"], row["san_ip"], row["is_ca"]) == (None, None, None)


def test_unreadable_certificate_keeps_its_id_in_the_chain(tmp_path: Path) -> None:
    # OpenSSL prints LATIN1_DER's names (CN=latin1.example.test,L=Z\C3\BCrich); cryptography
    # refuses a T61String that is not UTF-8, so the certificate gets no x509 row
    with pytest.raises(ValueError, match=r"not a readable X\.509 certificate"):
        certificate(LATIN1_DER)
    path = tmp_path / "latin1.pcap"
    write_pcap(path, session(_tls12_messages(certificates=(LATIN1_DER, ODD_DER)), sport=443))
    tables, problems = read(path)
    assert problems.records == []
    [tls] = tables["tls"]
    leaf_sha1 = "94cc61d9f764e6b76ee4ee6e7a9bc514449afb1b"  # openssl x509 -fingerprint
    assert tls["cert_chain"] == [
        leaf_sha1,
        hashlib.sha1(ODD_DER, usedforsecurity=False).hexdigest(),
    ]
    assert (tls["subject"], tls["issuer"], tls["sni_matches_cert"]) == (None, None, None)
    [x509] = tables["x509"]
    assert (x509["cert_id"], x509["is_host_cert"]) == (tls["cert_chain"][1], False)


# ------------------------------------ where dpkt.ssl falls short: the framing stays in pcap_tls


def test_dpkt_ssl_framing_fails_on_real_handshakes() -> None:
    alert = record(21, b"\x02\x28")
    with pytest.raises(dpkt.ssl.SSL3Exception, match="Bad TLS version"):
        dpkt.ssl.tls_multi_factory(alert + b"HTTP/1.1 400 Bad Request\r\n")  # the alert is lost
    assert dpkt.ssl.TLSRecord(b"\x47\x03\x03\x00\x01x").type == 0x47  # no content type check
    status = handshake(22, b"\x01" + (1).to_bytes(3, "big") + b"\x00")  # CertificateStatus
    with pytest.raises(dpkt.ssl.SSL3Exception, match="handshake type 22"):
        dpkt.ssl.TLSHandshake(status)
    hello = handshake(1, client_hello(0x0303, [0xC02F], [(0, _sni("a.example"))]))
    with pytest.raises(dpkt.NeedData):
        dpkt.ssl.TLSHandshake(hello[:40])  # the rest is in the next record


def test_split_client_hello_and_certificate_status_are_read(tmp_path: Path) -> None:
    hello = handshake(1, client_hello(0x0303, [0xC02F], [(0, _sni("a.example"))]))
    chain = len(LEAF_DER).to_bytes(3, "big") + LEAF_DER
    flight = (
        handshake(2, server_hello(0x0303, 0xC02F, []))
        + handshake(11, len(chain).to_bytes(3, "big") + chain)
        + handshake(22, b"\x01" + (3).to_bytes(3, "big") + b"ocs")  # OCSP stapling
        + handshake(14, b"")
    )
    messages = [
        (True, record(22, hello[:40]) + record(22, hello[40:])),
        (False, record(22, flight)),
        (True, record(20, b"\x01")),
        (False, record(20, b"\x01")),
        (True, record(23, bytes(100))),
    ]
    path = tmp_path / "stapled.pcap"
    write_pcap(path, session(messages, sport=443))
    tables, problems = read(path)
    assert problems.records == []
    [tls] = tables["tls"]
    assert (tls["server_name"], tls["established"]) == ("a.example", True)
    assert tls["cert_chain"] == [hashlib.sha1(LEAF_DER, usedforsecurity=False).hexdigest()]


def test_certificate_message_with_contradicting_lengths_gives_no_chain(tmp_path: Path) -> None:
    hello = handshake(1, client_hello(0x0303, [0xC02F], [(0, _sni("a.example"))]))
    chain = len(LEAF_DER).to_bytes(3, "big") + LEAF_DER
    flight = (
        handshake(2, server_hello(0x0303, 0xC02F, []))
        + handshake(11, (len(chain) + 5).to_bytes(3, "big") + chain)  # claims 5 bytes more
        + handshake(14, b"")
    )
    messages = [
        (True, record(22, hello)),
        (False, record(22, flight)),
        (True, record(20, b"\x01")),
        (False, record(20, b"\x01")),
        (True, record(23, bytes(100))),
    ]
    path = tmp_path / "bad-chain.pcap"
    write_pcap(path, session(messages, sport=443))
    tables, _ = read(path)
    [tls] = tables["tls"]
    assert (tls["cert_chain"], tls["established"]) == (None, True)
    assert "x509" not in tables
