"""Web requests and TLS sessions as the web detectors see them, from sensors and proxies alike.

A request can reach the `http` table three ways: seen on the wire going straight to the server
(Zeek, Suricata), seen on the wire going to a proxy (a CONNECT, or a request with an absolute
URI, to the proxy's address), or logged by the proxy itself (Squid, W3C: `proxy` is set and
`resp_ip`/`resp_port` are already the requested host and port). `requests` gives every one of
them the same columns: who asked (`src`), for which host and port, with what.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from homecall.store.tables import Tables

__all__ = [
    "REQUEST_COLUMNS",
    "all_requests",
    "outside_tls_sessions",
    "proxy_tunnels",
    "requests",
    "tls_sessions",
]

_ABSOLUTE = r"^[a-zA-Z][a-zA-Z0-9+.-]*://"
_AUTHORITY = r"^[a-zA-Z][a-zA-Z0-9+.-]*://([^/?#]*)"
_AFTER_AUTHORITY = r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*(.*)$"
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "ws": 80, "wss": 443}

REQUEST_COLUMNS = (
    "ts",
    "uid",
    "src",
    "dst",
    "direction",
    "host",
    "port",
    "host_is_ip",
    "method",
    "uri",
    "path",
    "query",
    "version",
    "user_agent",
    "referrer",
    "status_code",
    "request_bytes",
    "response_bytes",
    "via_proxy",
    "proxy_log",
    "denied",
    "categories",
    "resp_mime_types",
)


def _host_of(authority: ir.StringValue) -> ir.StringValue:
    """`user@host:port` or `[v6]:port` -> host, lower case, without brackets; null when empty.
    Most values are a bare name: the regular expressions run only on those that need them."""
    bare = authority.re_replace(r"^[^@]*@", "").lower()
    v6 = bare.re_extract(r"^\[([^\]]*)\]", 1)
    plain = bare.re_replace(r":[0-9]*$", "")
    full = (v6 != "").ifelse(v6, plain)
    return authority.re_search(r"[@:\[]").ifelse(full, authority.lower()).nullif("")


def requests(tables: Tables, *, inbound: bool = False) -> ir.Table:
    """One row per HTTP request made by an internal host; with `inbound`, also requests made to
    internal servers from outside (`all_requests`, computed once per Tables)."""
    every = tables.reuse("web.requests", all_requests)
    return every if inbound else every.filter(every.direction != "inbound")


def all_requests(tables: Tables) -> ir.Table:
    """One row per HTTP request made by an internal host (REQUEST_COLUMNS), the requested host
    and port resolved however the request travelled, and per request made to an internal server
    from outside (web shells), whose `src` is then the internal server.

    `dst` is the address the request went to (the server, or the proxy when a sensor saw the
    request on its way to one; the requested host in a proxy's own log). `host` is the
    requested name (or address literal) from the Host header, the CONNECT target or the
    absolute URI; `port` the requested port (for an inbound request, the internal server's).
    `path` and `query` come from the URI in origin form. Sizes are the proxy's wire bytes
    where logged, else Zeek's body lengths.
    """
    http = tables.oriented("http")
    uri = http.uri.fill_null("")
    http = http.mutate(
        _connect=http.method.fill_null("").upper() == "CONNECT",
        _absolute=uri.re_search(_ABSOLUTE),
        _proxy_log=http.proxy.notnull(),
    )
    via_proxy = http._proxy_log | http._connect | http._absolute
    keep = (http.direction != "internal") | via_proxy
    http = http.filter(keep)
    uri = http.uri.fill_null("")
    connect, absolute, proxy_log = http._connect, http._absolute, http._proxy_log
    header_host = _host_of(http.host.fill_null(""))
    host = ibis.cases(
        (connect, _host_of(uri)),
        (absolute, _host_of(uri.re_extract(_AUTHORITY, 1)).fill_null(header_host)),
        else_=header_host,
    )
    explicit = ibis.cases(
        (connect, uri.re_extract(r":([0-9]+)$", 1)),
        (absolute, uri.re_extract(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*:([0-9]+)(?:[/?#]|$)", 1)),
        else_="",
    ).nullif("")
    scheme = uri.re_extract(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", 1).lower()
    default = ibis.cases(*((scheme == k, v) for k, v in _DEFAULT_PORTS.items()), else_=80)
    port = ibis.cases(
        (http.direction == "inbound", http.resp_port),  # the internal server's port
        (proxy_log, http.dst_port),
        (connect | absolute, explicit.cast("int32").fill_null(default.cast("int32"))),
        else_=http.dst_port,
    )
    target = ibis.cases(
        (connect, ibis.literal("")),
        (absolute, uri.re_extract(_AFTER_AUTHORITY, 1)),
        else_=uri,
    )
    target = (target == "").ifelse(connect.ifelse("", "/"), target)
    return http.select(
        "ts",
        "uid",
        "src",
        "dst",
        "direction",
        host=host,
        port=port.cast("int32"),
        host_is_ip=host.fill_null("").re_search(r"^[0-9.]+$|:"),
        method=http.method,
        uri=http.uri,
        path=target.re_replace(r"[?#].*$", ""),
        query=target.re_extract(r"\?([^#]*)", 1).nullif(""),
        version=http.version,
        user_agent=http.user_agent,
        referrer=http.referrer,
        status_code=http.status_code,
        request_bytes=http.request_bytes.fill_null(http.request_body_len),
        response_bytes=http.response_bytes.fill_null(http.response_body_len),
        via_proxy=proxy_log | connect | absolute,
        proxy_log=proxy_log,
        denied=http.denied.fill_null(False),
        categories=http.categories,
        resp_mime_types=http.resp_mime_types,
    )


def proxy_tunnels(tables: Tables) -> ir.Table:
    """(uid, host, port): CONNECT requests a sensor saw on their way to a proxy, one per uid."""
    http = tables.oriented("http")
    connect = http.filter((http.method.fill_null("").upper() == "CONNECT") & http.proxy.isnull())
    target = connect.uri.fill_null("")
    return connect.group_by("uid").aggregate(
        host=_host_of(target).max(),
        port=target.re_extract(r":([0-9]+)$", 1).nullif("").cast("int32").max(),
    )


def tls_sessions(tables: Tables) -> ir.Table:
    """`outside_tls_sessions`, computed once per Tables."""
    return tables.reuse("web.tls_sessions", outside_tls_sessions)


def outside_tls_sessions(tables: Tables) -> ir.Table:
    """TLS sessions of internal clients with outside servers: outbound ones, plus those a sensor
    saw inside a proxy CONNECT tunnel (same uid as the CONNECT). All tls columns (with the leaf
    certificate's `cert_*`), oriented, plus `name`: the SNI, lower case, null when absent.
    """
    tls = tables.oriented("tls")
    tunnels = proxy_tunnels(tables).select("uid")
    outbound = tls.filter(tls.direction == "outbound")
    tunnelled = tls.filter(tls.direction == "internal").semi_join(tunnels, "uid")
    both = ibis.union(outbound, tunnelled)
    return both.mutate(name=both.server_name.lower().re_replace(r"\.$", "").nullif(""))
