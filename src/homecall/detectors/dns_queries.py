"""DNS lookups of internal clients, the internal resolvers that answer them and the registered
domains of the names asked: the shared ground of the DNS detectors (dns-tunnel, dns-volume,
fast-flux)."""

from __future__ import annotations

import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.compute as pc

from homecall.intel.domains import registered_domains
from homecall.store.tables import Tables

__all__ = [
    "LOCAL_SUFFIXES",
    "NOT_DNS_PORTS",
    "client_queries",
    "is_local",
    "name_domains",
    "resolvers",
]

# Zeek writes these name services to dns.log too; they are link-local chatter, not DNS lookups:
# NetBIOS name service (137, RFC 1002), multicast DNS (5353, RFC 6762), LLMNR (5355, RFC 4795).
NOT_DNS_PORTS = (137, 5353, 5355)

# Top-level labels that never reach an Internet name server, so no data can leave through them:
# reverse lookups and home.arpa (.arpa, RFC 8375), special-use names (RFC 6761: test, invalid,
# localhost, example), mDNS (.local, RFC 6762) and the private TLDs RFC 6762 appendix G lists as
# in use (intranet, internal, private, corp, home, lan), plus the resolv.conf default localdomain.
LOCAL_SUFFIXES = frozenset(
    {
        "arpa",
        "test",
        "invalid",
        "localhost",
        "example",
        "local",
        "localdomain",
        "intranet",
        "internal",
        "private",
        "corp",
        "home",
        "lan",
    }
)


def client_queries(tables: Tables) -> ir.Table:
    """dns rows asked by an internal host (not those it answered for outside clients), without
    NetBIOS, mDNS and LLMNR, with `name`: the query in lower case without its trailing dot."""
    dns = tables.oriented("dns")
    dns = dns.filter((dns.direction != "inbound") & ~dns.dst_port.fill_null(53).isin(NOT_DNS_PORTS))
    name = dns.query.fill_null("").lower().re_replace(r"\.+$", "")
    dns = dns.mutate(name=name)
    return dns.filter(dns.name != "")


def resolvers(tables: Tables) -> ir.Table:
    """Column `ip`: internal hosts that other internal hosts sent DNS queries to (resolvers,
    forwarders, domain controllers). Their own lookups are mostly their clients' lookups."""
    dns = tables.oriented("dns")
    asked = dns.filter((dns.direction == "internal") & (dns.dst_port.fill_null(53) == 53))
    return asked.select(ip=asked.dst).distinct()


def is_local(domains: pa.Array) -> pa.BooleanArray:
    """True for registered domains under a top-level label of LOCAL_SUFFIXES."""
    top = pc.utf8_lower(pc.replace_substring_regex(domains, r"^.*\.", ""))
    return pc.fill_null(pc.is_in(top, pa.array(sorted(LOCAL_SUFFIXES))), False)


def name_domains(tables: Tables, queries: ir.Table) -> ir.Table:
    """`name` -> `domain` (registered domain) for the distinct names of `queries`; names with no
    registered domain (single labels, IPs) and local or reverse-lookup names are left out."""
    got = tables.to_pyarrow(queries.select("name").distinct().order_by("name"))
    names = got.column("name").combine_chunks()
    domains = registered_domains(names)
    keep = pc.and_(pc.is_valid(domains), pc.invert(is_local(domains)))
    return tables.memtable(pa.table({"name": names, "domain": domains}).filter(keep))
