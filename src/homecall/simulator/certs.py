"""Certificates: Zeek's x509.log rows for the chains a day's ssl.log shows.

Each chain fingerprint in ssl.log's `cert_chain_fps` gets one x509.log row a day, at the first
handshake that showed it (Zeek logs a certificate once and again after a day). A certificate
the simulation does not describe (`Certificate`) is an ordinary one for the SNI it was first
seen with: CN and SAN that name, issued by the CA of the chain's second fingerprint, or
self-signed when the chain has one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from homecall.simulator.flows import Columns, row_count, strings
from homecall.simulator.internet import PROVIDERS
from homecall.simulator.zeeklog import UNSET

__all__ = [
    "CS_DEFAULT",
    "LETS_ENCRYPT",
    "Certificate",
    "chain",
    "fingerprint",
    "issued",
    "x509_rows",
]

DAY_S = 86_400
LETS_ENCRYPT = "Let's Encrypt R11"
# CAs of the chains the simulation draws (catalogue, implants, DoH, CDN decoys)
_CA_NAMES = (
    *(f"{provider} CA" for provider in PROVIDERS),
    LETS_ENCRYPT,
    "ACME Issuing CA",
    "WR2",
    "DigiCert Global G2 TLS RSA SHA256 2020 CA1",
    "DigiCert Global G2",
    "Microsoft Azure RSA TLS Issuing CA 03",
)


@dataclass(frozen=True, slots=True)
class Certificate:
    """One certificate as x509.log shows it (names in Zeek's RFC 2253 order)."""

    fingerprint: str  # SHA-256, as in ssl.log's cert_chain_fps
    subject: str
    issuer: str
    serial: str  # hexadecimal, as Zeek prints it
    not_valid_before_s: int
    not_valid_after_s: int
    san_dns: tuple[str, ...]
    is_ca: bool = False


def fingerprint(text: str) -> str:
    """The stable SHA-256 the simulation uses as a certificate's fingerprint."""
    return hashlib.sha256(text.encode()).hexdigest()


def chain(leaf: str | Certificate, issuer: str) -> str:
    """ssl.log's cert_chain_fps: a certificate (or the usual leaf for a name) then the CA that
    issued it ("" for a self-signed one)."""
    first = leaf.fingerprint if isinstance(leaf, Certificate) else fingerprint(f"leaf:{leaf}")
    return ",".join([first] + ([fingerprint(f"ca:{issuer}")] if issuer else []))


def issued(
    name: str,
    issuer: str,
    *,
    before_s: int,
    days: int = 90,
    san: tuple[str, ...] = (),
    key: str | None = None,
) -> Certificate:
    """A CA-issued leaf for `name` valid `days` from `before_s` (fingerprint from `key`, else
    the simulation's usual `leaf:<name>`)."""
    fp = fingerprint(key or f"leaf:{name}")
    return Certificate(
        fingerprint=fp,
        subject=f"CN={name}",
        issuer=f"CN={issuer}",
        serial=fp[:32].upper(),
        not_valid_before_s=before_s,
        not_valid_after_s=before_s + days * DAY_S,
        san_dns=san or (name,),
    )


# Cobalt Strike's team server certificate when the operator sets none: all name fields empty,
# serial 146473198 (hex 8BB00EE), valid 2015-05-20 to 2025-05-17.
CS_DEFAULT = Certificate(
    fingerprint="87f2085c32b6a2cc709b365f55873e207a9caa10bffecf2fd16d3cf9d94d390c",
    subject="CN=,OU=,O=,L=,ST=,C=",
    issuer="CN=,OU=,O=,L=,ST=,C=",
    serial="8BB00EE",
    not_valid_before_s=1_432_080_000,
    not_valid_after_s=1_747_440_000,
    san_dns=(),
)


def x509_rows(ssl: Columns, known: Mapping[str, Certificate], reference_s: int) -> Columns:
    """x509.log columns for the chains in a day's (finalized) ssl rows; certificates not in
    `known` are drawn as described in the module docstring, issued before `reference_s`."""
    if not row_count(ssl):
        return {}
    chains = ssl["cert_chain_fps"]
    shown = np.flatnonzero(pc.not_equal(chains, "-").to_numpy(zero_copy_only=False))
    if shown.size == 0:
        return {}
    ts = np.asarray(ssl["ts"], dtype=np.int64)[shown]
    order = np.argsort(ts, kind="stable")
    picked = pa.array(shown[order])
    first: dict[str, tuple[int, str]] = {}  # fingerprint -> (ts, SNI of its first leaf use)
    issuers: dict[str, str] = {}  # leaf fingerprint -> its CA's fingerprint
    for when, chain, name in zip(
        ts[order].tolist(),
        chains.take(picked).to_pylist(),
        ssl["server_name"].take(picked).to_pylist(),
        strict=True,
    ):
        fps = chain.split(",")
        for fp in fps:
            first.setdefault(fp, (when, name))
        if len(fps) > 1:
            issuers.setdefault(fps[0], fps[1])
    cas = {fingerprint(f"ca:{ca}"): ca for ca in _CA_NAMES}
    certs = [
        (when, _describe(fp, name, known, cas, issuers, reference_s))
        for fp, (when, name) in first.items()
    ]
    return _columns(certs)


def _describe(
    fp: str,
    name: str,
    known: Mapping[str, Certificate],
    cas: Mapping[str, str],
    issuers: Mapping[str, str],
    reference_s: int,
) -> Certificate:
    if fp in known:
        return known[fp]
    age_days = 5 + int(fp[:4], 16) % 60  # stable per certificate
    if fp in cas:
        start = reference_s - (400 + age_days) * DAY_S
        ca = cas[fp]
        return Certificate(fp, f"CN={ca}", "CN=Root CA", fp[:32].upper(), start,
                           start + 3_650 * DAY_S, (), is_ca=True)  # fmt: skip
    ca_fp = issuers.get(fp)
    issuer = cas.get(ca_fp, "Unknown CA") if ca_fp else ""
    start = reference_s - age_days * DAY_S
    days = 90 if issuer in ("", LETS_ENCRYPT) else 365
    return Certificate(
        fingerprint=fp,
        subject=f"CN={name}",
        issuer=f"CN={issuer}" if issuer else f"CN={name}",
        serial=fp[:32].upper(),
        not_valid_before_s=start,
        not_valid_after_s=start + days * DAY_S,
        san_dns=(name,) if name != "-" else (),
    )


def _columns(certs: Iterable[tuple[int, Certificate]]) -> Columns:
    rows = sorted(certs, key=lambda item: item[0])
    n = len(rows)
    ca = np.array([cert.is_ca for _, cert in rows], dtype=np.int8)
    return {
        "ts": np.array([when for when, _ in rows], dtype=np.int64),
        "fingerprint": strings([c.fingerprint for _, c in rows]),
        "certificate.version": np.full(n, 3, dtype=np.int64),
        "certificate.serial": strings([c.serial for _, c in rows]),
        "certificate.subject": strings([c.subject for _, c in rows]),
        "certificate.issuer": strings([c.issuer for _, c in rows]),
        "certificate.not_valid_before": np.array(
            [c.not_valid_before_s * 1_000_000 for _, c in rows], dtype=np.int64
        ),
        "certificate.not_valid_after": np.array(
            [c.not_valid_after_s * 1_000_000 for _, c in rows], dtype=np.int64
        ),
        "certificate.key_alg": "rsaEncryption",
        "certificate.sig_alg": "sha256WithRSAEncryption",
        "certificate.key_type": "rsa",
        "certificate.key_length": np.full(n, 2048, dtype=np.int64),
        "certificate.exponent": "65537",
        "certificate.curve": "-",
        "san.dns": strings([",".join(c.san_dns) or "-" for _, c in rows]),
        "san.uri": "-",
        "san.email": "-",
        "san.ip": "-",
        "basic_constraints.ca": ca,
        "basic_constraints.path_len": np.where(ca > 0, 0, UNSET),
        "host_cert": (1 - ca).astype(np.int8),
        "client_cert": np.zeros(n, dtype=np.int8),
    }
