"""What tls-anomaly works out in Python about the window's certificates and fingerprints:
blocklist hits, self-signed leaves, SNI names a certificate does not cover, whether the
sensor's clock can be trusted for validity, and JA3/JA3S values only one host uses. Each runs
once per distinct certificate or fingerprint combination, not per session."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ibis.expr.types as ir
import pyarrow as pa

from homecall.intel import tls_intel
from homecall.intel.domains import is_ip_literal
from homecall.store.tables import Tables

if TYPE_CHECKING:
    from homecall.detectors.tls_anomaly import TlsAnomalyConfig

__all__ = [
    "CERT_KEYS",
    "FP_KEYS",
    "Certificates",
    "certificates",
    "fingerprints",
    "name_covered",
    "status_out_of_validity",
    "uncovered_names",
]

log = logging.getLogger("homecall.detectors.tls_anomaly")

CERT_KEYS = ("_leaf", "_subj", "_iss", "_serial")  # the leaf certificate's string keys
FP_KEYS = ("ja3", "ja3s", "ja4", "ja4s")


def name_covered(name: str, san_dns: Sequence[str] | None, subject: str | None) -> bool:
    """True when a certificate with these SAN dNSNames and subject covers host `name`: an equal
    name, or a wildcard `*.` as the whole left-most label standing for exactly one label
    (RFC 6125 6.4.3; `*.example.com` covers `a.example.com`, not `example.com` or
    `a.b.example.com`, and `*.com` covers nothing). The subject CN counts as a name too."""
    host = name.strip().rstrip(".").lower()
    for pattern in [*(san_dns or []), *tls_intel.common_names(subject)]:
        candidate = pattern.strip().rstrip(".").lower()
        if candidate == host:
            return True
        if candidate.startswith("*.") and candidate.count(".") >= 2:
            base = candidate[2:]
            label, _, rest = host.partition(".")
            if rest == base and label and label != "*":
                return True
    return False


@dataclass(frozen=True, slots=True)
class Certificates:
    """What Python worked out about the window's certificates."""

    flagged: pa.Table  # CERT_KEYS + c_self (self-signed), c_list (list weight)
    uncovered: pa.Table  # name, _leaf: SNI and certificate pairs whose names do not match
    clock_ok: bool  # False: most certificates look out of validity, the sensor clock is off
    details: Mapping[tuple[str, ...], dict[str, Any]]  # cert key -> validity, SAN, list hits
    fingerprint_hits: dict[tuple[str, ...], list[tls_intel.ListEntry]]  # filled by _fingerprints


def status_out_of_validity(status: ir.StringValue) -> ir.BooleanValue:
    """True for a validation status saying the certificate was expired or not yet valid."""
    return status.contains("expired") | status.contains("not yet valid")


def certificates(
    tables: Tables, c: ir.Table, blocklist: tls_intel.Blocklist, cfg: TlsAnomalyConfig
) -> Certificates:
    """Judge each distinct leaf certificate of the session classes `c` once."""
    certs = c.filter((c._leaf != "") | (c._subj != "")).group_by(list(CERT_KEYS))
    certs = certs.aggregate(
        first_ts=c.first_seen.min(),
        not_before=c.not_before.min(),
        not_after=c.not_after.max(),
        status_invalid=status_out_of_validity(c.status).cast("int32").max(),
    )
    flagged: dict[str, list[Any]] = {k: [] for k in (*CERT_KEYS, "c_self", "c_list")}
    details: dict[tuple[str, ...], dict[str, Any]] = {}
    judged = out = 0
    for row in tables.to_pyarrow(certs.order_by(list(CERT_KEYS))).to_pylist():
        key = tuple(row[k] for k in CERT_KEYS)
        nb, na, first = row["not_before"], row["not_after"], row["first_ts"]
        if nb is not None and na is not None:
            judged += 1
            out += int(first < nb or first > na or bool(row["status_invalid"]))
        hits = blocklist.match_certificate(*key)
        self_signed = bool(key[1]) and tls_intel.normalize_dn(key[1]) == tls_intel.normalize_dn(
            key[2]
        )
        details[key] = {"not_before": nb, "not_after": na, "hits": hits}
        if self_signed or hits:
            for k, v in zip(CERT_KEYS, key, strict=True):
                flagged[k].append(v)
            flagged["c_self"].append(self_signed)
            flagged["c_list"].append(hits[0].weight if hits else 0.0)
    clock_ok = not (judged >= cfg.clock_min_certificates and out >= cfg.clock_skew_ratio * judged)
    if not clock_ok:
        log.info(
            "tls-anomaly: %d of %d certificates were out of validity when used; the sensor's "
            "clock looks wrong, validity is not judged",
            out,
            judged,
        )
    schema = pa.schema(
        [
            *((k, pa.string()) for k in CERT_KEYS),
            ("c_self", pa.bool_()),
            ("c_list", pa.float64()),
        ]
    )
    uncovered = uncovered_names(tables, c, details)
    return Certificates(pa.table(flagged, schema=schema), uncovered, clock_ok, details, {})


def uncovered_names(
    tables: Tables, s: ir.Table, details: dict[tuple[str, ...], dict[str, Any]]
) -> pa.Table:
    """SNI/certificate pairs whose names do not cover the SNI (certificates from x509 only);
    also records each certificate's SAN names in `details`."""
    named = s.filter(s.has_x509 & (s.name != "") & (s._leaf != ""))
    pairs = named.select("name", *CERT_KEYS).distinct()
    sans = s.filter(s.has_x509 & (s._leaf != "")).select("_leaf", "cert_san_dns").distinct()
    san_of = {r["_leaf"]: r["cert_san_dns"] or [] for r in tables.to_pyarrow(sans).to_pylist()}
    found: dict[str, list[str]] = {"name": [], "_leaf": []}
    seen = set()
    for row in tables.to_pyarrow(pairs.order_by(["name", *CERT_KEYS])).to_pylist():
        key = tuple(row[k] for k in CERT_KEYS)
        san = san_of.get(row["_leaf"], [])
        if key in details:
            details[key]["san_dns"] = san
        name = row["name"]
        if (name, row["_leaf"]) in seen or is_ip_literal(name):
            continue
        seen.add((name, row["_leaf"]))
        if not name_covered(name, san, row["_subj"]):
            found["name"].append(name)
            found["_leaf"].append(row["_leaf"])
    return pa.table(found, schema=pa.schema([("name", pa.string()), ("_leaf", pa.string())]))


def fingerprints(
    tables: Tables,
    c: ir.Table,
    blocklist: tls_intel.Blocklist,
    cfg: TlsAnomalyConfig,
    hits_out: dict[tuple[str, ...], list[tls_intel.ListEntry]],
) -> pa.Table:
    """Fingerprint combinations with a list hit (also put in `hits_out`) or a fingerprint only
    one host uses."""
    hosts: dict[str, dict[str, int]] = {}
    for column in ("ja3", "ja3s"):
        known = c.filter(c[column] != "")
        counts = known.group_by(column).aggregate(n=known.src.nunique())
        hosts[column] = {
            r[column]: r["n"] for r in tables.to_pyarrow(counts.order_by(column)).to_pylist()
        }
    with_ja3 = c.filter(c.ja3 != "")
    clients = tables.to_pyarrow(with_ja3.aggregate(n=with_ja3.src.nunique())).column("n")[0]
    judge_rarity = (clients.as_py() or 0) >= cfg.rare_min_clients
    combos = c.select(*FP_KEYS).distinct().order_by(list(FP_KEYS))
    found: dict[str, list[Any]] = {k: [] for k in (*FP_KEYS, "f_ja3", "f_ja3s", "f_list")}
    for row in tables.to_pyarrow(combos).to_pylist():
        key = [row[k] for k in FP_KEYS]
        hits = blocklist.match_fingerprints(*key)
        rare = [
            judge_rarity and bool(v) and hosts[col].get(v) == 1
            for col, v in zip(("ja3", "ja3s"), key[:2], strict=True)
        ]
        if not hits and not any(rare):
            continue
        if hits:
            hits_out[tuple(key)] = hits
        for k, v in zip(FP_KEYS, key, strict=True):
            found[k].append(v)
        found["f_ja3"].append(rare[0])
        found["f_ja3s"].append(rare[1])
        found["f_list"].append(hits[0].weight if hits else 0.0)
    schema = pa.schema(
        [
            *((k, pa.string()) for k in FP_KEYS),
            ("f_ja3", pa.bool_()),
            ("f_ja3s", pa.bool_()),
            ("f_list", pa.float64()),
        ]
    )
    return pa.table(found, schema=schema)
