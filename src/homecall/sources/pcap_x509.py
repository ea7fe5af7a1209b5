"""X.509 certificates seen in clear in TLS handshakes -> x509 rows, read with `cryptography`.

Fields as Zeek's x509.log writes them through OpenSSL: names in RFC 2253 form
(`X509_NAME_print_ex` with `XN_FLAG_RFC2253`: last RDN first, "," between RDNs, "+" inside one,
OpenSSL's short attribute names, special characters, control and non-ASCII bytes escaped), the
serial in upper-case hex, OpenSSL's algorithm names, the key size in bits. `cert_id` is the
SHA-1 fingerprint in lower-case hex, as the Suricata reader writes it. A certificate
`cryptography` cannot read (a negative serial, a Latin-1 T61String, a malformed extension, ...)
raises ValueError: the caller skips it.
"""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

__all__ = ["certificate", "fingerprint"]

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
# How OpenSSL reads each ASN.1 string type (tag2nbyte in crypto/asn1/a_strex.c): one byte per
# character, UTF-8, UCS-2 or UCS-4. Values of other types are printed as "#" + their DER in hex.
_ONE_BYTE, _UTF8, _WIDE = 1, 0, 2
_STRING_TYPES = {12: _UTF8, 18: _ONE_BYTE, 19: _ONE_BYTE, 20: _ONE_BYTE, 22: _ONE_BYTE,
                 23: _ONE_BYTE, 24: _ONE_BYTE, 26: _ONE_BYTE, 28: _WIDE, 30: _WIDE}  # fmt: skip
_CODECS = {28: "utf-32-be", 30: "utf-16-be"}  # how cryptography decoded the wide types
_RFC2253_SPECIAL = ',+"\\<>;'
# What cryptography raises for a certificate it cannot read (lazily, field by field).
_READ_ERRORS = (
    ValueError,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def fingerprint(der: bytes) -> str:
    """The SHA-1 of a certificate's DER in lower-case hex (its cert_id)."""
    return hashlib.sha1(der, usedforsecurity=False).hexdigest()


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


def _der_length(size: int) -> bytes:
    if size < 0x80:
        return bytes((size,))
    body = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _attribute(attr: x509.NameAttribute[Any]) -> str:
    """One attribute as OpenSSL prints it: `CN=text`, or `OID=#<DER hex>` when OpenSSL has no
    name for the OID or cannot print the value's type.

    cryptography decodes every string type but BMPString and UniversalString as UTF-8, where
    OpenSSL reads one byte per character (T61String, PrintableString, IA5String...): the bytes
    are re-encoded to print them as OpenSSL does. The ASN.1 type is only on `_type`.
    """
    oid = attr.oid.dotted_string
    label = _ATTRIBUTES.get(oid)
    tag = attr._type.value
    value = attr.value
    width = _STRING_TYPES.get(tag)
    if label is not None and width is not None and isinstance(value, str):
        text = value.encode("utf-8").decode("latin-1") if width == _ONE_BYTE else value
        return f"{label}={_escape(text)}"
    if isinstance(value, bytes):  # a BIT STRING: no unused bits
        content = b"\x00" + value
    else:
        content = value.encode(_CODECS.get(tag, "utf-8"))
    der = bytes((tag,)) + _der_length(len(content)) + content
    return f"{label or oid}=#{der.hex().upper()}"


def _name(name: x509.Name) -> str:
    """A Name in RFC 2253 form: the last RDN first, and (as OpenSSL reverses every entry, not
    just the RDNs) the attributes of a multi-valued RDN in reverse order too."""
    rdns = ("+".join(_attribute(a) for a in reversed(list(rdn))) for rdn in reversed(name.rdns))
    return ",".join(rdns)


def _serial(number: int) -> str:
    """The serial as Zeek writes it (OpenSSL's i2a_ASN1_INTEGER): two hex digits a byte."""
    magnitude = abs(number)
    text = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "big").hex().upper()
    return "-" + text if number < 0 else text


def _key_length(cert: x509.Certificate) -> int | None:
    """The key size in bits (RSA modulus, DSA p, EC curve); None for other keys."""
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):  # an unnamed or unsupported curve, ...
        return None
    if isinstance(key, rsa.RSAPublicKey | dsa.DSAPublicKey):
        return key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.curve.key_size
    return None


def _extensions(cert: x509.Certificate, row: dict[str, Any]) -> None:
    extensions = cert.extensions
    try:
        names = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        pass
    else:
        row["san_dns"] = names.get_values_for_type(x509.DNSName) or None
        row["san_ip"] = [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] or None
    with contextlib.suppress(x509.ExtensionNotFound):
        row["is_ca"] = extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def certificate(der: bytes) -> dict[str, Any]:
    """The x509 columns of one DER certificate (without ts, provenance and is_host_cert);
    ValueError when cryptography cannot read it."""
    try:
        cert = x509.load_der_x509_certificate(der)
        key_oid = cert.public_key_algorithm_oid.dotted_string
        sig_oid = cert.signature_algorithm_oid.dotted_string
        key_alg = _ALGORITHMS.get(key_oid, key_oid)
        row: dict[str, Any] = {
            "cert_id": fingerprint(der),
            "version": cert.version.value + 1,
            "serial": _serial(cert.serial_number),
            "subject": _name(cert.subject),
            "issuer": _name(cert.issuer),
            "not_valid_before": (cert.not_valid_before_utc - _EPOCH) // _MICROSECOND,
            "not_valid_after": (cert.not_valid_after_utc - _EPOCH) // _MICROSECOND,
            "key_alg": key_alg,
            "sig_alg": _ALGORITHMS.get(sig_oid, sig_oid),
            "key_type": _KEY_TYPES.get(key_alg),
            "key_length": _key_length(cert),
            "san_dns": None,
            "san_ip": None,
            "is_ca": None,
        }
        _extensions(cert, row)
    except _READ_ERRORS as exc:
        raise ValueError(f"not a readable X.509 certificate: {exc}") from None
    return row
