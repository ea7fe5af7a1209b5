"""TLS anomalies: certificates and fingerprints a C2 server gives away
(docs/detection.md#tls-anomaly).

Every outbound TLS session (and TLS inside a proxy CONNECT tunnel) is judged by its leaf
certificate and its fingerprints: on the shipped or the user's blocklist (a C2 framework's
default certificate, a RAT's default name, a C2 client/server fingerprint pair); self-signed;
not trusted (the sensor could not verify it, or the client refused it with a TLS alert and the
handshake failed); not covering the SNI; expired or not yet valid when used; a JA3/JA3S no
other internal host uses. A list hit is strong; the anomalies are weak alone (an appliance's
self-signed certificate, a sensor whose CA store is stale), so together they stay "medium" at
most and are damped when many internal hosts share the destination or the issuer. One finding
per (host, destination name or address, port).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from homecall.detectors import web
from homecall.detectors.base import Detector
from homecall.detectors.common import prevalence_factor, sample_uids, scaled_log, utc, with_uids
from homecall.detectors.tls_judgements import (
    CERT_KEYS,
    FP_KEYS,
    Certificates,
    certificates,
    fingerprints,
    name_covered,
    status_out_of_validity,
)
from homecall.findings import Finding, rank
from homecall.intel import tls_intel
from homecall.store.tables import Tables

__all__ = [
    "DETECTOR",
    "TlsAnomalyConfig",
    "classes",
    "leaf_fingerprint",
    "name_covered",
    "noisy_or",
    "run",
    "sessions",
    "tls_score",
]

log = logging.getLogger(__name__)

# TLS alerts that mean "I do not accept your certificate" (RFC 8446 section 6.2).
CERT_ALERTS = (
    "bad_certificate",
    "unsupported_certificate",
    "certificate_revoked",
    "certificate_expired",
    "certificate_unknown",
    "unknown_ca",
)
_SELF_SIGNED_STATUS = "self signed certificate"
_KEY = ("src", "dest", "port")
_CLASS_KEYS = (
    *_KEY,
    "name",
    *CERT_KEYS,
    *FP_KEYS,
    "status",
    "alert",
    "established",
    "has_x509",
    "sni_mismatch",
    "cert_san_dns",
)
_COUNTS = (
    "self_signed",
    "untrusted",
    "refused",
    "mismatch",
    "expired",
    "not_yet_valid",
    "rare_ja3",
    "rare_ja3s",
    "listed",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsAnomalyConfig:
    """Settings under [detectors.tls-anomaly] in homecall.toml."""

    extra_list_file: str = ""  # the user's blocklist (shipped TSV layout, or an SSLBL CSV export)
    self_signed_weight: float = 0.5  # 60 % of 1,767 malware C2 certificates were self-signed
    # (Trend Micro 2021), but so are appliances' and lab servers'
    untrusted_weight: float = 0.3  # the sensor could not verify the chain: its CA store may be
    # stale (WRCCDC 2018: every Google certificate "unable to get local issuer"): alone "low"
    ca_min_destinations: int = 3  # an issuer signing for this many destinations is a real CA...
    ca_damping: float = 0.5  # ...the sensor does not know: its "untrusted" counts half
    refused_weight: float = 0.5  # the client itself refused the certificate and gave up
    mismatch_weight: float = 0.4  # the certificate's names do not cover the SNI
    validity_weight: float = 0.4  # expired or not yet valid: alone at most "low"
    rare_weight: float = 0.15  # a JA3 or JA3S only this host uses: corroboration only
    anomaly_max_score: float = 0.6  # anomalies without a list hit stay "medium" at most
    activity_floor: float = 0.5  # one anomalous session keeps half its weight...
    sessions_full: float = 100.0  # ...and this many give the full weight (log scale)
    list_floor: float = 0.85  # one session with a listed certificate keeps 85 % of its weight
    rare_min_clients: int = 10  # fingerprint rarity means nothing among fewer TLS clients
    clock_skew_ratio: float = 0.5  # this share of certificates out of validity: the clock is off
    clock_min_certificates: int = 5  # ...judged only with at least this many certificates
    shared_ratio: float = 0.1  # a destination or issuer 10 % of the fleet uses is infrastructure
    shared_damping: float = 0.9  # ...and its anomalies are cut by up to 90 %
    min_fleet: int = 10  # prevalence means nothing in a fleet smaller than this
    min_score: float = 0.25  # below: not worth an analyst's time


def noisy_or(weights: Sequence[float]) -> float:
    """1 - prod(1 - w): independent pieces of evidence."""
    miss = 1.0
    for weight in weights:
        miss *= 1.0 - weight
    return 1.0 - miss


def tls_score(
    *,
    list_weight: float,
    listed_sessions: int,
    trust: float,
    other: float,
    flagged_sessions: int,
    cfg: TlsAnomalyConfig,
) -> float:
    """noisy-or of a list hit and the anomalies.

    list part = weight x (list_floor + (1 - list_floor) x w(listed sessions)); anomaly part =
    min(anomaly_max_score, noisy-or(trust, other)) x (activity_floor + (1 - activity_floor) x
    w(flagged sessions)), where trust and other are already damped by prevalence.
    """
    listed = list_weight * (
        cfg.list_floor + (1.0 - cfg.list_floor) * scaled_log(listed_sessions, cfg.sessions_full)
    )
    activity = cfg.activity_floor + (1.0 - cfg.activity_floor) * scaled_log(
        flagged_sessions, cfg.sessions_full
    )
    anomaly = min(cfg.anomaly_max_score, noisy_or([trust, other])) * activity
    return min(1.0, noisy_or([listed if list_weight else 0.0, anomaly]))


def leaf_fingerprint(chain: ir.ArrayValue) -> ir.StringValue:
    """The leaf certificate's id from a `cert_chain`, lower case without colons ("" for none)."""
    return chain[0].lower().replace(":", "").fill_null("")


def sessions(tables: Tables) -> ir.Table:
    """web.tls_sessions with `dest` (SNI, else the CONNECT target, else the address), `port`
    (the CONNECT port for a tunnelled session), and string keys of the leaf certificate
    (`_leaf` its fingerprint, `_subj`, `_iss`, `_serial`) and fingerprints ("" when unknown)."""
    tls = web.tls_sessions(tables)
    requests = web.requests(tables)
    connects = requests.filter(requests.method.fill_null("").upper() == "CONNECT")
    connects = connects.group_by("uid").aggregate(
        _c_host=connects.host.max(), _c_port=connects.port.max()
    )
    joined = tls.left_join(connects, tls.uid == connects.uid)
    # .view(): later joins start a new join chain instead of extending this one
    tunnelled = joined.direction == "internal"
    dest = joined.name.fill_null(tunnelled.ifelse(joined._c_host, ibis.null(str)))
    return joined.select(
        *[c for c in tls.columns if c not in FP_KEYS],
        dest=dest.fill_null(joined.dst),
        port=tunnelled.ifelse(joined._c_port.fill_null(joined.dst_port), joined.dst_port).cast(
            "int32"
        ),
        _leaf=leaf_fingerprint(joined.cert_chain),
        _subj=joined.cert_subject.fill_null(joined.subject).fill_null(""),
        _iss=joined.cert_issuer.fill_null(joined.issuer).fill_null(""),
        _serial=joined.cert_serial.fill_null(""),
        **{k: joined[k].fill_null("").lower() for k in FP_KEYS},
    ).view()


def _blocklist(cfg: TlsAnomalyConfig) -> tls_intel.Blocklist:
    blocklist = tls_intel.shipped()
    if cfg.extra_list_file:
        key = "detectors.tls-anomaly.extra_list_file"
        blocklist = blocklist | tls_intel.read_list_file(Path(cfg.extra_list_file), key)
    return blocklist


def classes(s: ir.Table) -> ir.Table:
    """`sessions` grouped by everything a reason depends on: one pass over the sessions, and a
    table a fraction of their size that the rest of the analysis reads."""
    t = s.mutate(
        name=s.name.fill_null(""),
        status=s.validation_status.fill_null(""),
        alert=s.last_alert.fill_null(""),
        established=s.established.fill_null(False),
        has_x509=s.cert_subject.notnull(),
        sni_mismatch=~s.sni_matches_cert.fill_null(True),
    )
    return t.group_by(list(_CLASS_KEYS)).aggregate(
        sessions=t.count(),
        past_validity=(t.ts > t.cert_not_valid_after).fill_null(False).cast("int64").sum(),
        before_validity=(t.ts < t.cert_not_valid_before).fill_null(False).cast("int64").sum(),
        first_seen=t.ts.min(),
        last_seen=t.ts.max(),
        not_before=t.cert_not_valid_before.min(),
        not_after=t.cert_not_valid_after.max(),
    )


def _flags(tables: Tables, c: ir.Table, certs: Certificates, fps: pa.Table) -> ir.Table:
    """Per session class: sessions per reason (`n_<reason>`), `flagged` sessions, the list
    weight."""
    cm = tables.memtable(certs.flagged)
    fm = tables.memtable(fps)
    um = tables.memtable(certs.uncovered).mutate(_u=ibis.literal(True))
    t = c.left_join(cm, list(CERT_KEYS)).select(c, *cm.columns[4:])
    t = t.left_join(fm, list(FP_KEYS)).select(t, *fm.columns[4:])
    t = t.left_join(um, ["name", "_leaf"]).select(t, "_u")
    out_of_validity = status_out_of_validity(t.status)
    class_flags = {
        "self_signed": t.c_self.fill_null(False) | (t.status == _SELF_SIGNED_STATUS),
        "untrusted": (t.status != "")
        & (t.status != "ok")
        & (t.status != _SELF_SIGNED_STATUS)
        & ~out_of_validity,
        "refused": t.alert.isin(CERT_ALERTS) & ~t.established,
        "mismatch": t._u.fill_null(False) | (~t.has_x509 & (t.name != "") & t.sni_mismatch),
        "rare_ja3": t.f_ja3.fill_null(False),
        "rare_ja3s": t.f_ja3s.fill_null(False),
        "listed": (t.c_list.fill_null(0.0) > 0) | (t.f_list.fill_null(0.0) > 0),
    }
    zero = ibis.literal(0, type="int64")
    counts = {k: v.ifelse(t.sessions, zero) for k, v in class_flags.items()}
    clock = ibis.literal(certs.clock_ok)
    counts["expired"] = clock.ifelse(
        t.status.contains("expired").ifelse(t.sessions, t.past_validity), zero
    )
    counts["not_yet_valid"] = clock.ifelse(
        t.status.contains("not yet valid").ifelse(t.sessions, t.before_validity), zero
    )
    any_class = ibis.literal(False)
    for value in class_flags.values():
        any_class = any_class | value
    flagged = any_class.ifelse(
        t.sessions, ibis.greatest(counts["expired"], counts["not_yet_valid"])
    )
    return t.mutate(
        **{f"n_{k}": counts[k] for k in _COUNTS},
        flagged=flagged,
        list_weight=ibis.greatest(t.c_list.fill_null(0.0), t.f_list.fill_null(0.0)),
    )


def _variants(t: ir.Table) -> ir.Table:
    """Per (host, destination, port, certificate, fingerprints) of keys with a flagged session:
    sessions, reason counts, times, and how widely the destination and issuer are used."""
    dest_hosts = t.group_by("dest").aggregate(dest_hosts=t.src.nunique())
    with_issuer = t.filter(t._iss != "")
    issuer_hosts = with_issuer.group_by("_iss").aggregate(
        issuer_hosts=with_issuer.src.nunique(), issuer_destinations=with_issuer.dest.nunique()
    )
    keys = t.filter(t.flagged > 0).select(*_KEY).distinct()
    kept = t.semi_join(keys, list(_KEY))
    variants = kept.group_by([*_KEY, *CERT_KEYS, *FP_KEYS]).aggregate(
        sessions=kept.sessions.sum(),
        established=kept.established.ifelse(kept.sessions, 0).sum(),
        flagged_sessions=kept.flagged.sum(),
        **{k: kept[f"n_{k}"].sum() for k in _COUNTS},
        list_weight=kept.list_weight.max(),
        status=kept.status.nullif("").max(),
        alert=kept.alert.nullif("").max(),
        first_seen=kept.first_seen.min(),
        last_seen=kept.last_seen.max(),
    )
    variants = variants.left_join(dest_hosts, "dest").select(variants, "dest_hosts")
    return variants.left_join(issuer_hosts, "_iss").select(
        variants, "issuer_hosts", "issuer_destinations"
    )


def run(tables: Tables, cfg: TlsAnomalyConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    blocklist = _blocklist(cfg)
    s = sessions(tables)
    c = tables.memtable(tables.to_pyarrow(classes(s)))
    certs = certificates(tables, c, blocklist, cfg)
    fps = fingerprints(tables, c, blocklist, cfg, certs.fingerprint_hits)
    flags = _flags(tables, c, certs, fps)
    rows: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    order = [*_KEY, *CERT_KEYS, *FP_KEYS]
    for batch in tables.batches(_variants(flags).order_by(order)):
        for row in batch.to_pylist():
            rows.setdefault((row["src"], row["dest"], row["port"]), []).append(row)
    fleet = tables.fleet_size
    found = rank(
        f
        for key, variants in rows.items()
        if (f := _finding(key, variants, certs, fleet, cfg)) is not None
    )
    if not found:
        return
    wanted = pa.table(
        {
            "src": [f.src for f in found],
            "dest": [f.dst for f in found],
            "port": pa.array([f.dst_port for f in found], pa.int32()),
        }
    )
    # the uids of the flagged sessions: those of the flagged classes' certificates
    flagged = flags.filter(flags.flagged > 0).select(*_KEY, *CERT_KEYS).distinct()
    records = s.semi_join(flagged, [*_KEY, *CERT_KEYS])
    uids = sample_uids(tables, records, _KEY, wanted)
    for f in found:
        yield with_uids(f, uids.get((f.src, f.dst or "", str(f.dst_port)), []))


def _finding(
    key: tuple[str, str, int],
    variants: list[dict[str, Any]],
    certs: Certificates,
    fleet: int,
    cfg: TlsAnomalyConfig,
) -> Finding | None:
    src, dest, port = key
    total = {k: sum(int(v[k] or 0) for v in variants) for k in (*_COUNTS, "sessions")}
    total["established"] = sum(int(v["established"] or 0) for v in variants)
    flagged_sessions = sum(int(v["flagged_sessions"] or 0) for v in variants)
    top = max(variants, key=_weight_of)
    dest_hosts = max(int(v["dest_hosts"] or 1) for v in variants)
    trusting = [v for v in variants if v["self_signed"] or v["untrusted"] or v["refused"]]
    issuer_hosts = max([int(v["issuer_hosts"] or 0) for v in trusting] or [0])
    untrusting = [v for v in variants if v["untrusted"]]
    issuer_destinations = min([int(v["issuer_destinations"] or 0) for v in untrusting] or [0])
    known_ca = issuer_destinations >= cfg.ca_min_destinations

    def shared(hosts: int) -> float:
        return prevalence_factor(
            hosts,
            fleet,
            ratio=cfg.shared_ratio,
            damping=cfg.shared_damping,
            min_fleet=cfg.min_fleet,
        )

    trust_shared, dest_shared = shared(max(dest_hosts, issuer_hosts)), shared(dest_hosts)
    trust = noisy_or(
        [
            cfg.self_signed_weight if total["self_signed"] else 0.0,
            cfg.refused_weight if total["refused"] else 0.0,
            cfg.untrusted_weight * (cfg.ca_damping if known_ca else 1.0)
            if total["untrusted"]
            else 0.0,
        ]
    )
    other = noisy_or(
        [
            cfg.mismatch_weight if total["mismatch"] else 0.0,
            cfg.validity_weight if total["expired"] or total["not_yet_valid"] else 0.0,
            cfg.rare_weight if total["rare_ja3"] or total["rare_ja3s"] else 0.0,
        ]
    )
    list_weight = max(float(v["list_weight"] or 0.0) for v in variants)
    score = tls_score(
        list_weight=list_weight,
        listed_sessions=total["listed"],
        trust=trust * trust_shared,
        other=other * dest_shared,
        flagged_sessions=flagged_sessions,
        cfg=cfg,
    )
    if score < cfg.min_score:
        return None
    reasons = [k.replace("_", "-") for k in _COUNTS if total[k]]
    hits = _hits(top, certs)
    evidence = _evidence(top, total, reasons, certs, hits)
    evidence.update(dest_hosts=dest_hosts, fleet_hosts=fleet)
    if known_ca:
        evidence["issuer_destinations"] = issuer_destinations
    if trust_shared < 1.0 or dest_shared < 1.0:
        evidence["shared_destination_factor"] = round(min(trust_shared, dest_shared), 3)
    summary = (
        f"{src} made {total['sessions']} TLS session{'s' if total['sessions'] != 1 else ''} to "
        f"{dest}:{port} ({total['established']} established) with "
        + _reasons_text(top, total, hits)
    )
    if known_ca:
        summary += f"; its issuer signs for {issuer_destinations} destinations (a CA unknown to "
        summary += "the sensor?)"
    if trust_shared < 1.0 or dest_shared < 1.0:
        summary += f"; {max(dest_hosts, issuer_hosts)} of {fleet} internal hosts share it"
    return Finding(
        detector="tls-anomaly",
        src=src,
        dst=dest,
        dst_port=port,
        score=score,
        first_seen=min(utc(v["first_seen"]) for v in variants),
        last_seen=max(utc(v["last_seen"]) for v in variants),
        summary=summary + ".",
        evidence=evidence,
    )


def _weight_of(v: dict[str, Any]) -> tuple[float, int, int]:
    return (float(v["list_weight"] or 0.0), int(v["flagged_sessions"] or 0), int(v["sessions"]))


def _hits(top: dict[str, Any], certs: Certificates) -> list[tls_intel.ListEntry]:
    """The list entries the finding's main certificate and fingerprints match."""
    cert_hits = certs.details.get(tuple(top[k] for k in CERT_KEYS), {}).get("hits", [])
    fp_hits = certs.fingerprint_hits.get(tuple(top[k] for k in FP_KEYS), [])
    return sorted([*cert_hits, *fp_hits], key=lambda h: (-h.weight, h.kind, h.value))


def _reasons_text(
    top: dict[str, Any], total: dict[str, int], hits: list[tls_intel.ListEntry]
) -> str:
    parts = []
    if hits:
        what = "certificate" if hits[0].kind in tls_intel.CERTIFICATE_KINDS else "fingerprint"
        parts.append(f"a listed {what} ({hits[0].label}, {hits[0].kind})")
    if total["self_signed"]:
        parts.append("a self-signed certificate")
    if total["refused"]:
        parts.append(f"the client refusing the certificate (alert {top['alert'] or 'unknown'})")
    if total["untrusted"]:
        parts.append(f"a certificate the sensor could not verify ({top['status'] or 'unknown'})")
    if total["mismatch"]:
        parts.append("certificate names that do not cover the SNI")
    if total["expired"]:
        parts.append("an expired certificate")
    if total["not_yet_valid"]:
        parts.append("a certificate not yet valid")
    if total["rare_ja3"] or total["rare_ja3s"]:
        parts.append("a TLS fingerprint no other internal host uses")
    return ", ".join(parts)


def _evidence(
    top: dict[str, Any],
    total: dict[str, int],
    reasons: list[str],
    certs: Certificates,
    hits: list[tls_intel.ListEntry],
) -> dict[str, Any]:
    evidence: dict[str, Any] = {
        "reasons": reasons,
        "sessions": total["sessions"],
        "established_sessions": total["established"],
        **{f"{k}_sessions": total[k] for k in _COUNTS if total[k]},
    }
    detail = certs.details.get(tuple(top[k] for k in CERT_KEYS), {})
    cert = {
        "cert_fingerprint": top["_leaf"] or None,
        "cert_subject": top["_subj"] or None,
        "cert_issuer": top["_iss"] or None,
        "cert_serial": top["_serial"] or None,
        "cert_not_valid_before": _iso(detail.get("not_before")),
        "cert_not_valid_after": _iso(detail.get("not_after")),
        "cert_san_dns": list(detail.get("san_dns", []))[:5] or None,
        "validation_status": top["status"],
        "last_alert": top["alert"],
        **{k: top[k] or None for k in FP_KEYS},
    }
    evidence.update({k: v for k, v in cert.items() if v is not None})
    if hits:
        evidence["list_label"] = hits[0].label
        evidence["list_matches"] = [f"{h.kind} {h.value}" for h in hits][:5]
        evidence["list_sources"] = sorted({h.source for h in hits})[:5]
    return evidence


def _iso(value: Any) -> str | None:
    return utc(value).isoformat().replace("+00:00", "Z") if value is not None else None


DETECTOR = Detector(
    name="tls-anomaly",
    requires=("tls",),
    config=TlsAnomalyConfig,
    run=run,
    description="listed, self-signed, untrusted, mismatched or expired certificates; listed or "
    "rare TLS fingerprints",
)
