"""X.509 certificates seen in clear in TLS handshakes -> x509 rows, with a small DER walker.

Fields as Zeek's x509.log writes them through OpenSSL: names in RFC 2253 form
(`X509_NAME_print_ex` with `XN_FLAG_RFC2253`: last RDN first, "," between RDNs, "+" inside one,
OpenSSL's short attribute names, special characters, control and non-ASCII bytes escaped), the
serial in upper-case hex, OpenSSL's algorithm names, the key size in bits. `cert_id` is the
SHA-1 fingerprint in lower-case hex, as the Suricata reader writes it.
"""

from __future__ import annotations

import calendar
import hashlib
import socket
from typing import Any

__all__ = ["certificate", "oid_text"]

_ATTRIBUTES = {
    "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O",
    "2.5.4.11": "OU", "2.5.4.5": "serialNumber", "2.5.4.9": "street", "2.5.4.12": "title",
    "2.5.4.42": "GN", "2.5.4.4": "SN", "2.5.4.43": "initials", "2.5.4.65": "pseudonym",
    "2.5.4.44": "generationQualifier", "2.5.4.46": "dnQualifier", "2.5.4.15": "businessCategory",
    "2.5.4.17": "postalCode", "2.5.4.97": "organizationIdentifier", "2.5.4.41": "name",
    "2.5.4.13": "description", "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID", "1.2.840.113549.1.9.1": "emailAddress",
    "1.2.840.113549.1.9.2": "unstructuredName", "1.2.840.113549.1.9.8": "unstructuredAddress",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC", "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL",
}  # fmt: skip
_ALGORITHMS = {
    "1.2.840.113549.1.1.1": "rsaEncryption", "1.2.840.10045.2.1": "id-ecPublicKey",
    "1.2.840.10040.4.1": "dsaEncryption", "1.3.101.112": "ED25519", "1.3.101.113": "ED448",
    "1.2.840.113549.1.1.4": "md5WithRSAEncryption", "1.2.840.113549.1.1.5": "sha1WithRSAEncryption",
    "1.2.840.113549.1.1.11": "sha256WithRSAEncryption",
    "1.2.840.113549.1.1.12": "sha384WithRSAEncryption",
    "1.2.840.113549.1.1.13": "sha512WithRSAEncryption",
    "1.2.840.113549.1.1.14": "sha224WithRSAEncryption", "1.2.840.113549.1.1.10": "rsassaPss",
    "1.2.840.10045.4.1": "ecdsa-with-SHA1", "1.2.840.10045.4.3.2": "ecdsa-with-SHA256",
    "1.2.840.10045.4.3.3": "ecdsa-with-SHA384", "1.2.840.10045.4.3.4": "ecdsa-with-SHA512",
    "1.2.840.10040.4.3": "dsaWithSHA1", "2.16.840.1.101.3.4.3.2": "dsa_with_SHA256",
}  # fmt: skip
_KEY_TYPES = {"rsaEncryption": "rsa", "id-ecPublicKey": "ecdsa", "dsaEncryption": "dsa"}
_CURVE_BITS = {"1.2.840.10045.3.1.7": 256, "1.3.132.0.34": 384, "1.3.132.0.35": 521,
               "1.3.132.0.33": 224, "1.2.840.10045.3.1.1": 192, "1.3.132.0.10": 256}  # fmt: skip
_SAN, _BASIC_CONSTRAINTS = "2.5.29.17", "2.5.29.19"
_STRINGS = {0x0C: "utf-8", 0x13: "latin-1", 0x16: "latin-1", 0x14: "latin-1",
            0x1A: "latin-1", 0x1E: "utf-16-be", 0x1C: "utf-32-be"}  # fmt: skip
_RFC2253_SPECIAL = ',+"\\<>;'

Node = tuple[int, int, int]  # tag, content start, content end


def _node(der: bytes, pos: int) -> tuple[Node, int]:
    """The TLV at `pos` and the offset after it; ValueError when it runs off the data."""
    if pos + 2 > len(der):
        raise ValueError("DER cut short")
    tag, size = der[pos], der[pos + 1]
    pos += 2
    if size & 0x80:
        count = size & 0x7F
        if count == 0 or count > 4 or pos + count > len(der):
            raise ValueError("bad DER length")
        size = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    if pos + size > len(der):
        raise ValueError("DER value cut short")
    return (tag, pos, pos + size), pos + size


def _children(der: bytes, node: Node) -> list[Node]:
    out: list[Node] = []
    pos = node[1]
    while pos < node[2]:
        child, pos = _node(der, pos)
        out.append(child)
    return out


def oid_text(data: bytes) -> str:
    """An OBJECT IDENTIFIER's content octets in dotted form."""
    if not data:
        return ""
    parts = [min(data[0] // 40, 2), data[0] - 40 * min(data[0] // 40, 2)]
    value = 0
    for byte in data[1:]:
        value = value << 7 | byte & 0x7F
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


def _oid(der: bytes, node: Node) -> str:
    return oid_text(der[node[1] : node[2]])


def _escape(text: str) -> str:
    """RFC 2253 escaping as OpenSSL's ASN1_STRFLGS_RFC2253 does it."""
    out: list[str] = []
    last = len(text) - 1
    for i, char in enumerate(text):
        code = ord(char)
        if code < 0x20 or code == 0x7F or code > 0x7E:
            out.extend(f"\\{b:02X}" for b in char.encode("utf-8"))
        elif char in _RFC2253_SPECIAL or (i == 0 and char in "# ") or (i == last and char == " "):
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def _name(der: bytes, node: Node) -> str:
    """A Name in RFC 2253 form: the last RDN first."""
    rdns = []
    for rdn in _children(der, node):
        parts = []
        for pair in _children(der, rdn):
            kind, value = _children(der, pair)[:2]
            oid = _oid(der, kind)
            label = _ATTRIBUTES.get(oid)
            encoding = _STRINGS.get(value[0])
            if label is None or encoding is None:
                size = value[2] - value[1]
                start = value[1] - (2 if size < 0x80 else 2 + (size.bit_length() + 7) // 8)
                parts.append(f"{label or oid}=#{der[start : value[2]].hex().upper()}")
            else:
                text = der[value[1] : value[2]].decode(encoding, "replace")
                parts.append(f"{label}={_escape(text)}")
        rdns.append("+".join(reversed(parts)))  # OpenSSL reverses every entry, not just RDNs
    return ",".join(reversed(rdns))


def _time_us(der: bytes, node: Node) -> int | None:
    text = der[node[1] : node[2]].decode("ascii", "replace").rstrip("Z")
    try:
        if node[0] == 0x17:  # UTCTime: YYMMDDHHMM[SS]
            year = int(text[:2])
            text = ("19" if year >= 50 else "20") + text
        year, month, day = int(text[:4]), int(text[4:6]), int(text[6:8])
        hour, minute = int(text[8:10]), int(text[10:12])
        second = int(text[12:14]) if len(text) >= 14 else 0
        return calendar.timegm((year, month, day, hour, minute, second)) * 1_000_000
    except (ValueError, OverflowError):
        return None


def _key(der: bytes, spki: Node) -> tuple[str, int | None]:
    """(key algorithm OID, key size in bits) of a SubjectPublicKeyInfo."""
    algorithm, bits = _children(der, spki)[:2]
    parts = _children(der, algorithm)
    oid = _oid(der, parts[0])
    if oid == "1.2.840.113549.1.1.1":  # RSA: the modulus of the SEQUENCE in the BIT STRING
        inner, _ = _node(der, bits[1] + 1)
        modulus = _children(der, inner)[0]
        return oid, int.from_bytes(der[modulus[1] : modulus[2]], "big").bit_length()
    if oid == "1.2.840.10045.2.1" and len(parts) > 1 and parts[1][0] == 0x06:
        return oid, _CURVE_BITS.get(_oid(der, parts[1]))
    if oid == "1.2.840.10040.4.1" and len(parts) > 1:  # DSA: the size of p
        p = _children(der, parts[1])[0]
        return oid, int.from_bytes(der[p[1] : p[2]], "big").bit_length()
    return oid, None


def _extensions(der: bytes, node: Node, row: dict[str, Any]) -> None:
    for ext in _children(der, _children(der, node)[0]):
        parts = _children(der, ext)
        oid, value = _oid(der, parts[0]), parts[-1]
        inner, _ = _node(der, value[1])
        if oid == _SAN:
            for name in _children(der, inner):
                data = der[name[1] : name[2]]
                if name[0] == 0x82:
                    row["san_dns"].append(data.decode("latin-1"))
                elif name[0] == 0x87 and len(data) in (4, 16):
                    family = socket.AF_INET if len(data) == 4 else socket.AF_INET6
                    row["san_ip"].append(socket.inet_ntop(family, data))
        elif oid == _BASIC_CONSTRAINTS:
            fields = _children(der, inner)
            row["is_ca"] = bool(fields and fields[0][0] == 0x01 and der[fields[0][1]])


def certificate(der: bytes) -> dict[str, Any]:
    """The x509 columns of one DER certificate (without ts, provenance and is_host_cert);
    ValueError when it is not a certificate."""
    try:
        top, _ = _node(der, 0)
        tbs, signature = _children(der, top)[:2]
        fields = _children(der, tbs)
        version = 1
        if fields[0][0] == 0xA0:
            version = int.from_bytes(der[fields[0][1] + 2 : fields[0][2]], "big") + 1
            fields = fields[1:]
        serial, _sig, issuer, validity, subject, spki = fields[:6]
        not_before, not_after = _children(der, validity)[:2]
        key_oid, key_bits = _key(der, spki)
        magnitude = der[serial[1] : serial[2]]
        if len(magnitude) > 1 and magnitude[0] == 0:
            magnitude = magnitude[1:]
        key_alg = _ALGORITHMS.get(key_oid, key_oid)
        sig_oid = _oid(der, _children(der, signature)[0])
        row: dict[str, Any] = {
            "cert_id": hashlib.sha1(der, usedforsecurity=False).hexdigest(),
            "version": version,
            "serial": magnitude.hex().upper(),
            "subject": _name(der, subject),
            "issuer": _name(der, issuer),
            "not_valid_before": _time_us(der, not_before),
            "not_valid_after": _time_us(der, not_after),
            "key_alg": key_alg,
            "sig_alg": _ALGORITHMS.get(sig_oid, sig_oid),
            "key_type": _KEY_TYPES.get(key_alg),
            "key_length": key_bits,
            "san_dns": [],
            "san_ip": [],
            "is_ca": None,
        }
        for extra in fields[6:]:
            if extra[0] == 0xA3:
                _extensions(der, extra, row)
    except (ValueError, IndexError) as exc:
        raise ValueError(f"not an X.509 certificate: {exc}") from None
    row["san_dns"] = row["san_dns"] or None
    row["san_ip"] = row["san_ip"] or None
    return row
