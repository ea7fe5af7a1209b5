"""The five kinds of HTTP anomaly as queries over `web.requests`, and the one score they share
(docs/detection.md#http-anomaly); `http_anomaly` runs them and adds the context.

Each kind filters on columns that cost nothing (version, sizes, method) before the requested
host is resolved, and returns the groups that pass its threshold as `Anomaly`s, with the
records behind them (for their uids).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from homecall.detectors import web
from homecall.detectors.common import prevalence_factor, scaled_log, utc
from homecall.detectors.uri_templates import TemplateUse, spread_templates, template
from homecall.intel.services import known_service
from homecall.store.tables import Tables

__all__ = [
    "KINDS",
    "Anomaly",
    "HttpAnomalyConfig",
    "anomaly_score",
    "large_requests",
    "large_thresholds",
    "missing_host",
    "repeated_sizes",
    "requests",
    "templates",
    "versions",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpAnomalyConfig:
    """Settings under [detectors.http-anomaly] in homecall.toml."""

    max_score: float = 0.85  # one anomaly, however strong, is short of proof: at most "high"
    min_score: float = 0.2  # below: not worth an analyst's time
    requests_full: float = 100.0  # this many requests give the full volume weight
    # Versions. Zeek logs the reply's version, Suricata and proxies the request's.
    usual_versions: tuple[str, ...] = ("1.1", "2", "2.0", "3", "3.0")
    malformed_strength: float = 0.8  # "1.2", "HTTP/1.1x", "5": a hand-written HTTP stack
    version_09_strength: float = 0.7  # HTTP/0.9 went out of use in the 1990s
    version_10_strength: float = 0.3  # HTTP/1.0 from a host that otherwise speaks 1.1
    version_10_alone_strength: float = 0.15  # ...from a host that always does (old device)
    # Requests without a Host header: mandatory since HTTP/1.1 (RFC 9112 section 3.2), and sent
    # by every HTTP/1.0 client since the late 1990s too (Zeek logs the reply's version anyway).
    missing_host_strength: float = 0.6  # every browser, library and agent sends one
    # Very large requests: above large_factor x the fleet's large_quantile for the method.
    large_min_bytes: int = 1_000_000  # never below 1 MB: uploading documents is normal
    large_factor: float = 10.0  # "far above": an order of magnitude over the fleet's tail
    large_quantile: float = 0.99  # the fleet's tail: 1 request in 100 is that large or larger
    large_min_samples: int = 100  # fewer sized requests of a method: only large_min_bytes counts
    large_strength: float = 0.6  # a big upload is one weak reason
    # One non-zero request size repeated to one destination (beacons posting one payload).
    repeat_min_requests: int = 10  # fewer identical sizes happen by chance (form posts, pings)
    repeat_min_share: float = 0.8  # share of the requests with a body that have that size
    repeat_strength: float = 0.7  # a fixed payload is a machine talking, not yet malice
    repeat_full: float = 500.0  # this many identical requests give the full strength
    service_damping: float = 0.5  # OCSP, updates: known services with fixed-size requests
    # The same in flow records (NetFlow, Argus, Suricata flows): connections of one size.
    flow_ports: tuple[int, ...] = (80, 8000, 8080, 8888)  # plain HTTP: TLS sizes say less
    flow_size_step: int = 16  # sizes within this many bytes are one (TCP options differ)
    flow_min_payload: int = 16  # bytes beyond the packets' headers: a request was sent
    # One URI template asked of many registered domains.
    template_min_domains: int = 5  # fewer: a few sites on one CMS; Simda asks hundreds
    template_domains_full: float = 50.0  # this many domains give the full strength
    generic_templates: tuple[str, ...] = (  # asked of every site by browsers and systems
        "/", "/favicon.ico", "/robots.txt", "/wpad.dat", "/proxy.pac", "/generate_204",
        "/gen_204", "/connecttest.txt", "/ncsi.txt", "/success.txt", "/hotspot-detect.html",
        "/canonical.html", "/crossdomain.xml", "/clientaccesspolicy.xml", "/sitemap.xml",
        "/ads.txt", "/index.html", "/apple-touch-icon.png", "/apple-touch-icon-precomposed.png",
        "/{v}",  # a bare token: OCSP requests, CDN object ids
    )  # fmt: skip
    generic_damping: float = 0.7  # ...their score is cut by 70 %: a browser asks them anywhere
    static_suffixes: tuple[str, ...] = (  # page assets: libraries shared by many sites
        ".js", ".css", ".png", ".jpg", ".jpeg", ".gif", ".ico", ".svg", ".webp", ".woff",
        ".woff2", ".ttf", ".crl", ".crt",
    )  # fmt: skip
    static_damping: float = 0.5  # ...cut by half: a jQuery fetched from many sites is normal
    max_domains: int = 20  # domains listed in a template's evidence
    # Context.
    corroboration_weight: float = 0.5  # other kinds at the same destination lift the score
    shared_ratio: float = 0.1  # a destination or template 10 % of the fleet uses is ordinary
    shared_damping: float = 0.9  # ...and its score is cut by up to 90 %
    min_fleet: int = 10  # prevalence means nothing in a fleet smaller than this


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One anomaly before context: the figures its finding is built from."""

    kind: str  # "version", "missing-host", "large-request", "repeated-size", "template"
    src: str
    dst: str | None
    dst_port: int | None
    key: str  # identity within the kind: destination, with the version, method or size
    strength: float  # 0..1, the kind's own measure
    requests: int
    first_seen: datetime
    last_seen: datetime
    reason: str  # the summary after src, in words
    evidence: dict[str, Any]
    damping: tuple[tuple[float, str], ...] = ()  # (factor, why), besides prevalence
    shared_hosts: int | None = None  # internal hosts using dst (template); None: not yet known


def anomaly_score(
    strength: float, requests: int, context: float, corroboration: float, cfg: HttpAnomalyConfig
) -> float:
    """max_score x strength x (0.6 + 0.4 w(requests)) x context, then lifted by the best other
    kind at the same destination: + (1 - score) x corroboration_weight x its score."""
    volume = 0.6 + 0.4 * scaled_log(requests, cfg.requests_full)
    score = cfg.max_score * strength * volume * context
    return score + (1.0 - score) * cfg.corroboration_weight * corroboration


def requests(tables: Tables) -> ir.Table:
    """Internal hosts' requests (not CONNECTs) with `destination` (the server's address, or
    the requested host through a proxy), `dst_port`, `sized` (request bytes, 0 when unknown)
    and `template`."""
    r = web.requests(tables)
    r = r.filter(r.method.fill_null("").upper() != "CONNECT")
    return r.mutate(
        destination=r.via_proxy.ifelse(r.host.fill_null(r.dst), r.dst),
        dst_port=r.port,
        sized=r.request_bytes.fill_null(0),
        template=template(r),
    )


def large_thresholds(histogram: pa.Table, cfg: HttpAnomalyConfig) -> dict[str, float]:
    """method -> request bytes from which a request is "very large": large_factor x the upper
    edge of the power-of-two bucket holding the method's large_quantile, and never below
    large_min_bytes. `histogram`: method, bucket (floor of log2 bytes), n."""
    thresholds: dict[str, float] = {}
    rows = histogram.to_pylist()
    for method in sorted({str(r["method"]) for r in rows}):
        mine = sorted((int(r["bucket"]), int(r["n"])) for r in rows if r["method"] == method)
        counts = np.array([n for _, n in mine], dtype=np.float64)
        threshold = float(cfg.large_min_bytes)
        if counts.sum() >= cfg.large_min_samples:
            at = int(np.searchsorted(np.cumsum(counts) / counts.sum(), cfg.large_quantile))
            edge = 2.0 ** (mine[min(at, len(mine) - 1)][0] + 1)
            threshold = max(threshold, cfg.large_factor * edge)
        thresholds[method] = threshold
    return thresholds


def _marked(records: ir.Table, kind: str, key: ir.StringValue) -> ir.Table:
    """The records behind one kind's findings, for their uids: ts, uid, src, kind, key."""
    return records.select("ts", "uid", "src", kind=ibis.literal(kind), key=key)


def _port(value: Any) -> int | None:
    return int(value) if value is not None else None


def _summarised(records: ir.Table, keys: list[str], **extra: ir.Value) -> ir.Table:
    """Per `keys`: requests, first and last time, and `extra` aggregates."""
    return records.group_by(keys).aggregate(
        requests=records.count(), first_seen=records.ts.min(), last_seen=records.ts.max(), **extra
    )


def versions(
    tables: Tables, req: ir.Table, cfg: HttpAnomalyConfig
) -> tuple[list[Anomaly], ir.Table]:
    """Versions other than 1.1, 2 and 3, per (host, destination, port, version)."""
    spelled = [*cfg.usual_versions, *(f"HTTP/{v}" for v in cfg.usual_versions)]
    known = req.filter(req.version.notnull() & (req.version != ""))
    odd = known.filter(~known.version.isin(spelled))
    odd = odd.mutate(ver=odd.version.re_replace(r"^(?i:HTTP/)", ""))
    keys = ["src", "destination", "dst_port", "ver"]
    groups = _summarised(odd, keys, example_host=odd.host.max(), example_uri=odd.uri.min())
    v10 = max(cfg.version_10_strength, cfg.version_10_alone_strength)
    fewest = ibis.cases(
        (groups.ver == "1.0", _fewest(v10, cfg)),
        (groups.ver == "0.9", _fewest(cfg.version_09_strength, cfg)),
        else_=_fewest(cfg.malformed_strength, cfg),
    )
    rows = tables.to_pyarrow(groups.filter(groups.requests >= fewest).order_by(keys)).to_pylist()
    records = _marked(odd, "version", odd.destination + "|" + odd.ver)
    if not rows:
        return [], records
    # the other HTTP of those hosts (a query of its own: the engine would otherwise keep
    # every request with all its columns to join the two)
    mine = known.semi_join(
        tables.memtable(pa.table({"src": sorted({r["src"] for r in rows})})), "src"
    )
    usual = mine.version.isin(spelled).cast("int64")
    mix = mine.group_by("src").aggregate(with_version=mine.count(), usual=usual.sum())
    host_mix = {r["src"]: r for r in tables.to_pyarrow(mix).to_pylist()}
    found: list[Anomaly] = []
    for row in rows:
        version = str(row["ver"])
        n = int(row["requests"])
        others = int(host_mix[row["src"]]["with_version"]) - n
        usual_ratio = int(host_mix[row["src"]]["usual"]) / max(others, 1)
        if version == "0.9":
            strength, what = cfg.version_09_strength, "HTTP/0.9"
        elif version == "1.0":
            alone = usual_ratio < 0.5
            strength = cfg.version_10_alone_strength if alone else cfg.version_10_strength
            what = "HTTP/1.0" + ("" if alone else " while its other HTTP is 1.1 or later")
        else:
            strength, what = cfg.malformed_strength, f"the malformed version {version!r}"
        found.append(
            _anomaly(
                "version",
                row,
                f"{row['destination']}|{version}",
                strength,
                f"exchanged {n} HTTP requests with {row['destination']} in {what}",
                version=version,
                requests=n,
                host_usual_version_ratio=round(usual_ratio, 3),
                example_host=row["example_host"],
                example_uri=row["example_uri"],
            )
        )
    return found, records


def _fewest(strength: float, cfg: HttpAnomalyConfig) -> int:
    """The fewest requests with which an anomaly of `strength` can reach min_score (unshared,
    uncorroborated): groups with fewer are left in the engine."""
    for requests in range(1, 1_000_000):
        if anomaly_score(strength, requests, 1.0, 0.0, cfg) >= cfg.min_score:
            return requests
        if requests >= cfg.requests_full:
            break
    return 1_000_000


def _anomaly(
    kind: str, row: dict[str, Any], key: str, strength: float, reason: str, **evidence: Any
) -> Anomaly:
    """An anomaly about src -> destination from a summarised row."""
    return Anomaly(
        kind=kind,
        src=str(row["src"]),
        dst=str(row["destination"]),
        dst_port=_port(row["dst_port"]),
        key=key,
        strength=strength,
        requests=int(row["requests"]),
        first_seen=utc(row["first_seen"]),
        last_seen=utc(row["last_seen"]),
        reason=reason,
        evidence=evidence,
    )


def missing_host(
    tables: Tables, req: ir.Table, cfg: HttpAnomalyConfig
) -> tuple[list[Anomaly], ir.Table]:
    """Requests without a Host header sent straight to a server, per (host, server, port); read
    from the http table, since `web.requests` resolves the requested host from that header."""
    http = tables.oriented("http")
    bare = http.filter(
        (http.direction == "outbound")
        & http.proxy.isnull()
        & http.method.notnull()
        & (http.method.upper() != "CONNECT")
        & (http.host.fill_null("") == "")
        & ~http.uri.fill_null("").re_search("^[a-zA-Z][a-zA-Z0-9+.-]*://")
    ).mutate(destination=ibis._.dst)
    keys = ["src", "destination", "dst_port"]
    groups = _summarised(
        bare, keys, example_uri=bare.uri.min(), example_user_agent=bare.user_agent.max()
    )
    asked = req.semi_join(groups.select("src").distinct(), "src")
    totals = asked.group_by(["src", "dst"]).aggregate(all_requests=asked.count())
    groups = groups.join(totals.rename(destination="dst"), ["src", "destination"])
    records = _marked(bare, "missing-host", bare.destination)
    found: list[Anomaly] = []
    for row in tables.to_pyarrow(groups.order_by(keys)).to_pylist():
        n, total = int(row["requests"]), int(row["all_requests"])
        found.append(
            _anomaly(
                "missing-host",
                row,
                str(row["destination"]),
                cfg.missing_host_strength,
                f"sent {n} HTTP requests without a Host header to {row['destination']}: "
                "a hand-made HTTP client",
                requests=n,
                missing_host_ratio=round(n / max(total, n), 3),
                example_uri=row["example_uri"],
                example_user_agent=row["example_user_agent"],
            )
        )
    return found, records


def large_requests(
    tables: Tables, req: ir.Table, cfg: HttpAnomalyConfig
) -> tuple[list[Anomaly], ir.Table]:
    """Requests at or above the fleet's mark for their method, per (host, destination, port,
    method)."""
    sized = req.filter((req.sized > 0) & req.method.notnull())
    bucket = sized.sized.log2().floor().cast("int64")
    histogram = sized.group_by([sized.method, bucket.name("bucket")]).aggregate(n=sized.count())
    thresholds = large_thresholds(tables.to_pyarrow(histogram), cfg)
    floor = min(thresholds.values(), default=float(cfg.large_min_bytes))
    limits = tables.memtable(
        pa.table({"method": list(thresholds), "threshold": list(thresholds.values())})
    )
    big = sized.filter(sized.sized >= floor).join(limits, "method")
    big = big.filter(big.sized >= big.threshold)
    keys = ["src", "destination", "dst_port", "method"]
    groups = _summarised(
        big, keys, max_bytes=big.sized.max(), total_bytes=big.sized.sum(),
        threshold=big.threshold.max(), example_uri=big.uri.min(),
    )  # fmt: skip
    records = _marked(big, "large-request", big.destination + "|" + big.method)
    found: list[Anomaly] = []
    for row in tables.to_pyarrow(groups.order_by(keys)).to_pylist():
        n, largest = int(row["requests"]), int(row["max_bytes"])
        threshold = float(row["threshold"])
        ratio = largest / threshold
        found.append(
            _anomaly(
                "large-request",
                row,
                f"{row['destination']}|{row['method']}",
                cfg.large_strength * (0.5 + 0.5 * scaled_log(ratio - 1.0, 99.0)),
                f"sent {n} {row['method']} requests of up to {largest:,} bytes to "
                f"{row['destination']}, {ratio:.1f}x the fleet's mark for a very large one",
                method=row["method"],
                requests=n,
                max_request_bytes=largest,
                total_request_bytes=int(row["total_bytes"]),
                threshold_bytes=round(threshold),
                example_uri=row["example_uri"],
            )
        )
    return found, records


def repeated_sizes(
    tables: Tables, req: ir.Table, cfg: HttpAnomalyConfig
) -> tuple[list[Anomaly], ir.Table]:
    """The most frequent non-zero request size per (host, destination, port), when it is most of
    the requests with a body."""
    sized = req.filter(req.sized > 0)
    pair = ["src", "destination", "dst_port"]
    sizes = _summarised(sized, [*pair, "sized"], method=sized.method.max())
    sizes = sizes.mutate(
        with_body=sizes.requests.sum().over(group_by=pair),
        distinct_sizes=sizes.requests.count().over(group_by=pair),
    )
    sizes = sizes.filter(
        (sizes.requests >= cfg.repeat_min_requests)
        & (sizes.requests >= cfg.repeat_min_share * sizes.with_body)
    )
    found_rows = tables.to_pyarrow(sizes.order_by([*pair, "sized"]))
    records = _marked(sized, "repeated-size", sized.destination + "|" + sized.sized.cast("string"))
    if found_rows.num_rows == 0:
        return [], records
    # names and paths for the few pairs found (resolving them for every request is costly)
    chosen = sized.semi_join(tables.memtable(found_rows.select(["src"])), "src").semi_join(
        tables.memtable(found_rows.select([*pair, "sized"])), [*pair, "sized"]
    )
    about = chosen.group_by([*pair, "sized"]).aggregate(
        paths=chosen.path.nunique(), example_uri=chosen.uri.min(), example_host=chosen.host.max()
    )
    details = {
        (r["src"], r["destination"], r["dst_port"], r["sized"]): r
        for r in tables.to_pyarrow(about).to_pylist()
    }
    found: list[Anomaly] = []
    for row in found_rows.to_pylist():
        more = details[(row["src"], row["destination"], row["dst_port"], row["sized"])]
        n, with_body, size = int(row["requests"]), int(row["with_body"]), int(row["sized"])
        share = n / with_body
        anomaly = _anomaly(
            "repeated-size",
            row,
            f"{row['destination']}|{size}",
            cfg.repeat_strength * share * scaled_log(n, cfg.repeat_full),
            f"sent {n} {row['method']} requests of exactly {size:,} bytes to "
            f"{row['destination']} ({share:.0%} of its requests there with a body)",
            request_bytes=size,
            requests=n,
            size_share_ratio=round(share, 3),
            requests_with_body=with_body,
            distinct_sizes=int(row["distinct_sizes"]),
            method=row["method"],
            paths=int(more["paths"]),
            example_host=more["example_host"],
            example_uri=more["example_uri"],
        )
        service = known_service(more["example_host"], None)
        if service:
            why = f"{service}, a known service"
            anomaly = dataclasses.replace(anomaly, damping=((1.0 - cfg.service_damping, why),))
        found.append(anomaly)
    return found, records


def templates(
    tables: Tables, req: ir.Table, cfg: HttpAnomalyConfig
) -> tuple[list[Anomaly], ir.Table]:
    """URI templates a host asks of many registered domains (`uri_templates`)."""
    uses, chosen = spread_templates(
        tables, req, min_domains=cfg.template_min_domains,
        max_hosts=_prevalence_cut(tables.fleet_size, cfg),
    )  # fmt: skip
    return [_template_anomaly(u, cfg) for u in uses], _marked(chosen, "template", chosen.template)


def _prevalence_cut(fleet: int, cfg: HttpAnomalyConfig) -> int:
    """The fewest internal hosts sharing a template that make any finding about it impossible
    (its best score under min_score), so that common templates never leave the engine."""
    for hosts in range(1, fleet + 1):
        shared = prevalence_factor(
            hosts, fleet, ratio=cfg.shared_ratio, damping=cfg.shared_damping,
            min_fleet=cfg.min_fleet,
        )  # fmt: skip
        if cfg.max_score * shared < cfg.min_score:
            return hosts
    return fleet + 1


def _template_anomaly(use: TemplateUse, cfg: HttpAnomalyConfig) -> Anomaly:
    (top, port), top_n = min(use.destinations.items(), key=lambda kv: (-kv[1], kv[0][0]))
    domains = len(use.domains)
    concentration = 1.0 - use.addresses / domains if use.addresses else 0.5
    strength = scaled_log(domains, cfg.template_domains_full) * (0.5 + 0.5 * concentration)
    damping: tuple[tuple[float, str], ...] = ()
    if use.template in cfg.generic_templates:
        damping = ((1.0 - cfg.generic_damping, "a path every site is asked for"),)
    elif use.template.split("?", 1)[0].lower().endswith(cfg.static_suffixes):
        damping = ((1.0 - cfg.static_damping, "a page asset that many sites share"),)
    listed = sorted(use.domains, key=lambda d: (-use.domains[d], d))[: cfg.max_domains]
    at = f"{use.addresses} addresses" if use.addresses else "addresses unknown (proxied)"
    return Anomaly(
        kind="template",
        src=use.src,
        dst=top,
        dst_port=port,
        key=use.template,
        strength=strength,
        requests=use.requests,
        first_seen=use.first_seen,
        last_seen=use.last_seen,
        reason=(
            f"requested {use.template} from {domains} different domains at {at} "
            f"({use.requests} requests, {top_n} of them to {top})"
        ),
        evidence={
            "template": use.template,
            "requests": use.requests,
            "domain_count": domains,
            "host_count": use.names,
            "domains": listed,
            "address_count": use.addresses,
            "top_destination_requests": top_n,
            "example_uris": use.example_uris,
        },
        damping=damping,
        shared_hosts=use.template_hosts,
    )


KINDS = (versions, missing_host, large_requests, repeated_sizes, templates)
