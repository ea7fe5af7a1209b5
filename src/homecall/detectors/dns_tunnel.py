"""DNS tunnels: an internal host carrying data in the names it looks up under one domain
(docs/detection.md#dns-tunnel).

One candidate per (internal host, registered domain) with at least `min_names` distinct names.
The set-based part (queries per pair, record types, how many hosts ask the domain) is Ibis; the
names of each candidate are then read once and scored by pure functions: how long the names are,
how random their characters look next to ordinary host names, how many bytes they carry, and
the share of TXT/NULL/CNAME/MX/ANY/private-type queries. Context (a domain many hosts ask, a known
reputation-lookup service) lowers the score, never hides it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from homecall.detectors.base import Detector
from homecall.detectors.common import (
    lowered,
    most_common_port,
    prevalence_factor,
    ramp,
    sample_uids,
    scaled_log,
    utc,
    with_uids,
)
from homecall.detectors.dns_queries import client_queries, name_domains, resolvers
from homecall.findings import Finding, rank
from homecall.store.tables import Tables

__all__ = [
    "DETECTOR",
    "ENCODINGS",
    "HOST_FREQUENCIES",
    "KNOWN_LOOKUPS",
    "DnsTunnelConfig",
    "NameStats",
    "candidates",
    "known_lookup",
    "name_stats",
    "run",
    "tunnel_score",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsTunnelConfig:
    """Settings under [detectors.dns-tunnel] in homecall.toml."""

    min_names: int = 10  # fewer distinct names under a domain carry too little data to judge
    length_short: float = 8.0  # mean subdomain characters of ordinary names (www, mail, e7070.g)
    length_long: float = 24.0  # a hex label of 9+ bytes and its tag: dnscat2's smallest packet
    randomness_low: float = 0.0  # bits/char; ordinary host names score about -0.8 (name_stats)
    randomness_high: float = 1.0  # random base32 scores 0.74, base36 0.80, hex 2.8
    randomness_prior_chars: float = 64.0  # randomness x n / (n + 64): a few characters prove little
    name_bytes_full: float = 10_000.0  # 10 kB of subdomain text gives the full volume weight
    type_weight: float = 0.15  # share of the score that TXT/NULL/CNAME/MX/ANY/private types give
    min_fleet: int = 10  # prevalence means nothing in a fleet smaller than this
    shared_ratio: float = 0.1  # a domain 10 % of the fleet asks is a service, not one tunnel
    shared_damping: float = 0.9  # ... and its score is lowered by up to x0.1
    outlier_low: float = 3.0  # host's names vs the mean of the domain's other hosts: from here
    outlier_high: float = 30.0  # ... to here the host is an outlier and prevalence counts less
    known_damping: float = 0.8  # a known reputation-lookup service (KNOWN_LOOKUPS): score x0.2
    min_score: float = 0.25  # below (before context): ordinary names, not worth reporting


# Record types a tunnel uses to get data back (RFC 1035, RFC 6895: 65280-65534 private use).
UNUSUAL_QTYPES = (5, 10, 15, 16, 255)  # CNAME, NULL, MX, TXT, ANY
UNUSUAL_QTYPE_NAMES = ("CNAME", "NULL", "MX", "TXT", "ANY", "*")
PRIVATE_QTYPES = (65280, 65534)

# (name suffix, what it is): services that encode a hash, an address or a GUID in the name they
# look up, by design. Vendors' documented lookup zones; kept short so that look-alikes stand out.
KNOWN_LOOKUPS: tuple[tuple[str, str], ...] = (
    ("sophosxl.net", "Sophos Live Protection lookup"),
    ("avqs.mcafee.com", "McAfee GTI file reputation"),
    ("avts.mcafee.com", "McAfee GTI file reputation"),
    ("e5.sk", "ESET LiveGrid lookup"),
    ("hash.cymru.com", "Team Cymru malware hash registry"),
    ("footprintdns.com", "Microsoft network measurement probe"),
    ("spamhaus.org", "Spamhaus DNS blocklist"),
    ("spamhaus.net", "Spamhaus DNS blocklist"),
    ("spamcop.net", "SpamCop DNS blocklist"),
    ("sorbs.net", "SORBS DNS blocklist"),
    ("barracudacentral.org", "Barracuda DNS blocklist"),
    ("surbl.org", "SURBL URI blocklist"),
    ("uribl.com", "URIBL URI blocklist"),
    ("mailspike.net", "Mailspike DNS blocklist"),
    ("dnswl.org", "DNSWL allowlist"),
    ("abuseat.org", "CBL DNS blocklist"),
    ("senderscore.com", "Validity Sender Score lookup"),
)

# Character frequencies of ordinary names: the labels left of the public suffix in the OpenDNS
# random domain sample of 2014 (c2-samples/benign-domains/sources/opendns_random_2014.txt,
# 196,813 domains, 2.2 M characters), mixed 9:1 with a uniform spread over the 38 characters of
# host names so that digits and "_", rarer in registered than in host names, cost less.
HOST_FREQUENCIES = {
    "a": 0.0909, "b": 0.0214, "c": 0.0411, "d": 0.0322, "e": 0.1003, "f": 0.0156, "g": 0.0256,
    "h": 0.0278, "i": 0.0729, "j": 0.0053, "k": 0.0169, "l": 0.0494, "m": 0.0321, "n": 0.0643,
    "o": 0.0696, "p": 0.0264, "q": 0.0019, "r": 0.0672, "s": 0.0668, "t": 0.0635, "u": 0.0306,
    "v": 0.0128, "w": 0.0123, "x": 0.0051, "y": 0.0167, "z": 0.0057, "0": 0.0017, "1": 0.0020,
    "2": 0.0020, "3": 0.0013, "4": 0.0014, "5": 0.0010, "6": 0.0009, "7": 0.0008, "8": 0.0011,
    "9": 0.0008, "-": 0.0124, "_": 0.0,
}  # fmt: skip
_OTHER_CHAR_P = 1e-4  # any other byte (escaped binary, upper ASCII) in an ordinary name
# Encodings a tunnel uses (RFC 4648; iodine's), smallest first: the first that holds every
# character seen is the alternative model (uniform over it) the names are compared with.
ENCODINGS: tuple[tuple[str, str], ...] = (
    ("hex", "0123456789abcdef"),
    ("base32", "abcdefghijklmnopqrstuvwxyz234567"),
    ("base32hex", "0123456789abcdefghijklmnopqrstuv"),
    ("base32-iodine", "abcdefghijklmnopqrstuvwxyz012345"),  # iodine's own base32 alphabet
    ("base36", "0123456789abcdefghijklmnopqrstuvwxyz"),
    ("dns", "0123456789abcdefghijklmnopqrstuvwxyz-_"),
)
_OTHER_ENCODING_SIZE = 64  # base64 and the like; more when more distinct bytes are seen
MAX_NAMES_READ = 5_000  # names per candidate read for the character statistics


def _cost_bits() -> npt.NDArray[np.float64]:
    p = np.full(256, _OTHER_CHAR_P)
    for char, f in HOST_FREQUENCIES.items():
        p[ord(char)] = 0.9 * f + 0.1 / len(HOST_FREQUENCIES)
    cost: npt.NDArray[np.float64] = -np.log2(p)
    return cost


_COST_BITS = _cost_bits()
_ENCODING_MASKS = [
    (name, np.isin(np.arange(256), [ord(c) for c in chars]), len(chars))
    for name, chars in ENCODINGS
]


@dataclass(frozen=True, slots=True)
class NameStats:
    """What the distinct names under one domain look like (subdomain = left of the domain)."""

    names: int
    name_bytes: int  # characters carried: sum of subdomain lengths, dots excluded
    length_mean: float  # mean subdomain length, dots excluded
    length_max: int
    label_max: int  # longest single label
    payload_chars: int  # characters of the labels found in one name only (the payload)
    entropy_bits: float  # Shannon entropy per character of the payload labels
    randomness_bits: float  # per character: cost under ordinary names - cost under `encoding`
    encoding: str  # smallest encoding alphabet holding every character seen


def name_stats(subdomains: Sequence[str]) -> NameStats:
    """Pure: lengths, entropy and randomness of distinct subdomains (the part left of the
    registered domain). Randomness is a log-likelihood ratio per character: how many bits
    cheaper the characters of the payload labels (those in one name only) are under a uniform
    draw from the smallest encoding that holds them than under ordinary names' frequencies."""
    lengths = np.array([len(s) - s.count(".") for s in subdomains], dtype=np.int64)
    uses = Counter(label for s in set(subdomains) for label in set(s.split(".")) if label)
    label_max = max((len(label) for label in uses), default=0)
    # a label in several names is structure (a tag such as dnscat2's "dnsc"), not payload
    payload = sorted(label for label, n in uses.items() if n == 1)
    data = "".join(payload).encode("utf-8", "replace")
    counts = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256).astype(np.float64)
    total = counts.sum()
    if total == 0:
        return NameStats(
            len(subdomains),
            int(lengths.sum()),
            float(lengths.mean()) if len(lengths) else 0.0,
            int(lengths.max()) if len(lengths) else 0,
            label_max,
            0,
            0.0,
            0.0,
            "none",
        )
    seen = counts > 0
    encoding, size = "other", max(_OTHER_ENCODING_SIZE, int(seen.sum()))
    for name, mask, n in _ENCODING_MASKS:
        if not (seen & ~mask).any():
            encoding, size = name, n
            break
    share = counts[seen] / total
    return NameStats(
        names=len(subdomains),
        name_bytes=int(lengths.sum()),
        length_mean=float(lengths.mean()),
        length_max=int(lengths.max()),
        label_max=label_max,
        payload_chars=int(total),
        entropy_bits=max(0.0, float(-(share * np.log2(share)).sum())),
        randomness_bits=float((counts * _COST_BITS).sum() / total - math.log2(size)),
        encoding=encoding,
    )


def tunnel_score(stats: NameStats, unusual_ratio: float, cfg: DnsTunnelConfig) -> float:
    """0..1 before context: sqrt(randomness x length) x (0.5 + 0.5 volume), the type bonus on top
    (docs/detection.md#dns-tunnel). Long random names AND many of them; either alone is weak."""
    evidence = stats.payload_chars / (stats.payload_chars + cfg.randomness_prior_chars)
    randomness = ramp(stats.randomness_bits * evidence, cfg.randomness_low, cfg.randomness_high)
    length = ramp(stats.length_mean, cfg.length_short, cfg.length_long)
    volume = scaled_log(stats.name_bytes, cfg.name_bytes_full)
    shape = math.sqrt(randomness * length)
    types = 1.0 - cfg.type_weight + cfg.type_weight * unusual_ratio
    return shape * (0.5 + 0.5 * volume) * types


def known_lookup(names: Sequence[str]) -> str | None:
    """What known lookup service most of `names` belong to, or None."""
    votes: dict[str, int] = {}
    for name in names:
        for suffix, what in KNOWN_LOOKUPS:
            if name == suffix or name.endswith("." + suffix):
                votes[what] = votes.get(what, 0) + 1
                break
    if not votes:
        return None
    what, count = max(sorted(votes.items()), key=lambda kv: kv[1])
    return what if 2 * count >= len(names) else None


def candidates(named: ir.Table, resolver_ips: ir.Table, cfg: DnsTunnelConfig) -> ir.Table:
    """One row per (src, domain) with enough distinct names: query counts, record types, the
    names, and how many other (non-resolver) hosts ask the domain; backend-neutral."""
    is_resolver = named.src.isin(resolver_ips.ip)
    unusual = (
        named.qtype.isin(UNUSUAL_QTYPES)
        | named.qtype.between(*PRIVATE_QTYPES)
        | named.qtype_name.isin(UNUSUAL_QTYPE_NAMES)
    ).fill_null(False)
    rows = named.mutate(is_unusual=unusual.cast("int64"), by_resolver=is_resolver)
    pairs = rows.group_by(["src", "domain"]).aggregate(
        queries=ibis._.count(),
        names=ibis._.name.nunique(),
        unusual=ibis._.is_unusual.sum(),
        nxdomain=(ibis._.rcode == 3).fill_null(False).cast("int64").sum(),
        servers=ibis._.dst.nunique(),
        first_seen=ibis._.ts.min(),
        last_seen=ibis._.ts.max(),
        is_resolver=ibis._.by_resolver.max(),
    )
    clients = pairs.filter(~pairs.is_resolver)
    fleet = clients.group_by("domain").aggregate(
        dst_hosts=ibis._.src.count(), names_sum=ibis._.names.sum()
    )
    found = pairs.filter(pairs.names >= cfg.min_names).left_join(fleet, "domain")
    found = found.drop("domain_right").mutate(
        dst_hosts=ibis._.dst_hosts.fill_null(0), names_sum=ibis._.names_sum.fill_null(0)
    )
    # a resolver's lookups repeat its clients': keep them only when no client is in view
    found = found.filter(~found.is_resolver | (found.dst_hosts == 0))
    lists = rows.select("src", "domain", "name").distinct()
    lists = lists.semi_join(found, ["src", "domain"])
    # characters left of the domain, dots excluded (0 for the domain itself)
    chars = lists.name.replace(".", "").length() - lists.domain.replace(".", "").length()
    lists = lists.group_by(["src", "domain"]).aggregate(
        name_list=lists.name.collect(), name_bytes=chars.sum(), length_max=chars.max()
    )
    found = found.join(lists, ["src", "domain"])
    return found.left_join(most_common_port(rows, ["src", "domain"]), ["src", "domain"]).drop(
        "src_right", "domain_right"
    )


def run(tables: Tables, cfg: DnsTunnelConfig) -> Iterator[Finding]:
    """Tables in, findings out."""
    queries = client_queries(tables)
    named = queries.join(name_domains(tables, queries), "name")
    fleet = tables.fleet_size
    found = [
        f
        for batch in tables.batches(candidates(named, resolvers(tables), cfg))
        for row in batch.to_pylist()
        if (f := _finding(row, fleet, cfg)) is not None
    ]
    found = rank(found)
    if not found:
        return
    wanted = pa.table({"src": [f.src for f in found], "domain": [f.dst or "" for f in found]})
    uids = sample_uids(tables, named, ("src", "domain"), wanted)
    for f in found:
        yield with_uids(f, uids.get((f.src, f.dst or ""), []))


def _context(
    row: dict[str, Any], fleet: int, names: Sequence[str], cfg: DnsTunnelConfig
) -> tuple[float, list[str], dict[str, Any]]:
    """(factor, reasons, evidence): prevalence in the fleet and known lookup services."""
    factor = 1.0
    reasons: list[str] = []
    evidence: dict[str, Any] = {}
    hosts = int(row["dst_hosts"])
    if fleet >= cfg.min_fleet and hosts > 1:
        others_mean = (int(row["names_sum"]) - int(row["names"])) / (hosts - 1)
        ratio = int(row["names"]) / max(others_mean, 1.0)
        outlier = ramp(
            math.log(max(ratio, 1.0)), *map(math.log, (cfg.outlier_low, cfg.outlier_high))
        )
        shared = prevalence_factor(  # an outlier among the domain's hosts is not damped
            hosts,
            fleet,
            ratio=cfg.shared_ratio,
            damping=cfg.shared_damping * (1.0 - outlier),
            min_fleet=cfg.min_fleet,
        )
        evidence["other_hosts_names_mean"] = round(others_mean, 1)
        if shared < 1.0:
            factor *= shared
            evidence["shared_domain_factor"] = round(shared, 3)
            reasons.append(f"{hosts} of {fleet} internal hosts look up {row['domain']}")
    service = known_lookup(names)
    if service:
        factor *= 1.0 - cfg.known_damping
        evidence["known_lookup"] = service
        reasons.append(f"{row['domain']} is a known {service} zone")
    return factor, reasons, evidence


def _finding(row: dict[str, Any], fleet: int, cfg: DnsTunnelConfig) -> Finding | None:
    domain = str(row["domain"])
    every = sorted(row["name_list"])
    names = every[:: -(-len(every) // MAX_NAMES_READ)]  # evenly spaced, at most MAX_NAMES_READ
    subdomains = [n[: -len(domain) - 1] if n.endswith("." + domain) else "" for n in names]
    stats = name_stats(subdomains)
    if len(names) < int(row["names"]):  # characters from a sample, sizes from every name
        stats = dataclasses.replace(
            stats,
            names=int(row["names"]),
            name_bytes=int(row["name_bytes"]),
            length_mean=int(row["name_bytes"]) / int(row["names"]),
            length_max=int(row["length_max"]),
        )
    queries = int(row["queries"])
    unusual_ratio = int(row["unusual"]) / queries
    before = tunnel_score(stats, unusual_ratio, cfg)
    if before < cfg.min_score:
        return None
    factor, reasons, context = _context(row, fleet, names, cfg)
    src = str(row["src"])
    evidence: dict[str, Any] = {
        "queries": queries,
        "unique_names": int(row["names"]),
        "name_bytes": stats.name_bytes,
        "subdomain_length_mean": round(stats.length_mean, 1),
        "subdomain_length_max": stats.length_max,
        "label_length_max": stats.label_max,
        "entropy_bits_per_char": round(stats.entropy_bits, 3),
        "randomness_bits_per_char": round(stats.randomness_bits, 3),
        "encoding": stats.encoding,
        "unusual_type_ratio": round(unusual_ratio, 3),
        "nxdomain_ratio": round(int(row["nxdomain"]) / queries, 3),
        "resolvers": int(row["servers"]),
        "is_resolver": bool(row["is_resolver"]),
        "dst_hosts": max(int(row["dst_hosts"]), 1),
        "fleet_hosts": fleet,
        "example_names": names[:3],
        "score_before_context": round(before, 3),
        **context,
    }
    summary = (
        f"{src} looked up {stats.names} distinct names under {domain} "
        f"({stats.encoding}-like, {stats.length_mean:.0f} characters on average, "
        f"{stats.name_bytes:,} bytes in names, {unusual_ratio:.0%} TXT/NULL/CNAME/MX/ANY): "
        "data carried in DNS names"
    )
    summary = lowered(summary, evidence, reasons)
    return Finding(
        detector="dns-tunnel",
        src=src,
        dst=domain,
        dst_port=int(row["dst_port"]) if row["dst_port"] is not None else None,
        score=before * factor,
        first_seen=utc(row["first_seen"]),
        last_seen=utc(row["last_seen"]),
        summary=summary + ".",
        evidence=evidence,
    )


DETECTOR = Detector(
    name="dns-tunnel",
    requires=("dns",),
    config=DnsTunnelConfig,
    run=run,
    description="long, random-looking names under one domain: data carried in DNS lookups",
)
