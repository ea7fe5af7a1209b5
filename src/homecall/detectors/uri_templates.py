"""URI templates: a request's shape with its variable parts replaced, and the internal hosts
that ask one template of many different domains (docs/detection.md#http-anomaly).

Simda asks `/login.php` of hundreds of generated names; a bot's check-in `/gate.php?id={h}`
is the same template whatever domain it tries. Browsers ask `/favicon.ico` of every site, so
the caller damps templates that many hosts use and those every site is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from homecall.detectors.common import utc
from homecall.intel.domains import registered_domains
from homecall.store.tables import Tables

__all__ = ["TemplateUse", "spread_templates", "template"]

# The variable parts of a URI, each replaced by {v}: long tokens (base64, random ids, UUIDs,
# percent-encoded blobs), hex runs and numbers. One pattern, one pass over every request.
_VARIABLE = r"[A-Za-z0-9_+%-]{16,}=*|[0-9a-fA-F]{8,}|[0-9]+"
_EXAMPLES = 3  # example URIs kept per template


def template(requests: ir.Table) -> ir.StringValue:
    """A request's URI template: long tokens, hex runs and numbers in the path and parameter
    values become {v}; parameter names and words stay (`/gate.php?id={v}&os=win`). The URI
    as logged for direct requests, its origin form for proxied ones. Backend-neutral."""
    r = requests
    origin = r.path.fill_null("/") + r.query.notnull().ifelse("?" + r.query, "")
    uri = r.via_proxy.ifelse(origin, r.uri.fill_null("/"))
    return uri.re_replace(_VARIABLE, "{v}")


@dataclass(frozen=True, slots=True)
class TemplateUse:
    """One internal host asking one template of many domains."""

    src: str
    template: str
    requests: int
    template_hosts: int  # internal hosts that use the template at all
    domains: dict[str, int]  # registered domain (or address) -> requests
    names: int  # distinct requested host names
    addresses: int  # distinct server addresses of the requests that went direct
    destinations: dict[tuple[str, int | None], int]  # (destination, port) -> requests
    example_uris: list[str]
    first_seen: datetime
    last_seen: datetime


def spread_templates(
    tables: Tables, requests: ir.Table, *, min_domains: int, max_hosts: int
) -> tuple[list[TemplateUse], ir.Table]:
    """(uses, their records): every (src, template) asked of at least `min_domains` registered
    domains and used by fewer than `max_hosts` internal hosts. `requests` needs src, host,
    dst, via_proxy, destination, dst_port, template, ts, uid, uri."""
    keys = ["src", "template"]
    # (no filter on the host: the engine would resolve every request's host twice)
    groups = requests.group_by(keys).aggregate(names=requests.host.nunique())
    groups = groups.mutate(template_hosts=groups.src.count().over(group_by="template"))
    # host names bound the registered domains from above: a cheap first cut
    groups = groups.filter((groups.names >= min_domains) & (groups.template_hosts < max_hosts))
    flagged = tables.to_pyarrow(groups.order_by(keys))
    if flagged.num_rows == 0:
        return [], requests
    sources = tables.memtable(pa.table({"src": sorted(set(flagged.column("src").to_pylist()))}))
    chosen = requests.semi_join(sources, "src")
    chosen = chosen.semi_join(tables.memtable(flagged.select(keys)), keys)
    chosen = chosen.filter(chosen.host.notnull())
    direct = chosen.via_proxy.ifelse(ibis.null("string"), chosen.dst)
    detail = chosen.group_by([*keys, "host", "destination", "dst_port"]).aggregate(
        n=chosen.count(),
        direct=direct.max(),
        example_uri=chosen.uri.min(),
        first_seen=chosen.ts.min(),
        last_seen=chosen.ts.max(),
    )
    rows = tables.to_pyarrow(detail.order_by([*keys, "host", "destination", "dst_port"]))
    sites = _sites(rows.column("host"))
    hosts_of = {(r["src"], r["template"]): int(r["template_hosts"]) for r in flagged.to_pylist()}
    parts: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows.to_pylist():
        parts.setdefault((str(row["src"]), str(row["template"])), []).append(row)
    uses = [_use(key, part, sites, hosts_of[key]) for key, part in parts.items()]
    return [u for u in uses if len(u.domains) >= min_domains], chosen


def _sites(hosts: pa.ChunkedArray) -> dict[str, str]:
    """host -> registered domain (eTLD+1), or the host itself (an address, a bare name)."""
    distinct = pa.chunked_array(hosts.chunks, type=pa.string()).unique()
    domains = registered_domains(distinct)
    return {
        str(h): str(d if d is not None else h)
        for h, d in zip(distinct.to_pylist(), domains.to_pylist(), strict=True)
    }


def _use(
    key: tuple[str, str], rows: list[dict[str, Any]], sites: dict[str, str], template_hosts: int
) -> TemplateUse:
    domains: dict[str, int] = {}
    destinations: dict[tuple[str, int | None], int] = {}
    addresses: set[str] = set()
    for row in rows:
        n = int(row["n"])
        site = sites[str(row["host"])]
        domains[site] = domains.get(site, 0) + n
        port = int(row["dst_port"]) if row["dst_port"] is not None else None
        where = (str(row["destination"]), port)
        destinations[where] = destinations.get(where, 0) + n
        if row["direct"] is not None:
            addresses.add(str(row["direct"]))
    return TemplateUse(
        src=key[0],
        template=key[1],
        requests=sum(int(r["n"]) for r in rows),
        template_hosts=template_hosts,
        domains=domains,
        names=len({str(r["host"]) for r in rows}),
        addresses=len(addresses),
        destinations=destinations,
        example_uris=sorted({str(r["example_uri"]) for r in rows})[:_EXAMPLES],
        first_seen=min(utc(r["first_seen"]) for r in rows),
        last_seen=max(utc(r["last_seen"]) for r in rows),
    )
