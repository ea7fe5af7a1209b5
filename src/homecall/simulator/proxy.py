"""The explicit web proxy: what a proxied host's web traffic looks like to the sensor, and the
proxy's own Squid access.log.

A proxied client sends every web request to PROXY:3128 and resolves no outside names itself.
Plain HTTP goes as a request with an absolute URI (`GET http://host/path`); HTTPS as a CONNECT
tunnel: Zeek logs the CONNECT in http.log (uri `host:443`, host the requested host) and the TLS
inside it in ssl.log, under the same uid. The proxy resolves the names itself (through its own
caching resolver, not seen by the sensor) and opens its own connections to the servers: those
are in conn.log only, because the site's Zeek drops the http/ssl records of the proxy's own
connections so that no request is logged twice. The proxy splices TLS, except for the names on
its inspection list (`ssl_bump bump`), whose decrypted requests it logs as `GET https://...`
after a `NONE_NONE/200` CONNECT line; its `strip_query_terms` is off, so URLs keep their query.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from homecall.simulator.addresses import PROXY, ip_texts, is_internal
from homecall.simulator.flows import (
    STATES,
    Columns,
    Flows,
    row_count,
    stack_columns,
    strings,
    take_rows,
    tcp_conns,
)
from homecall.simulator.internet import INTERNAL_DOMAIN
from homecall.simulator.proxy_requests import (
    ERROR_PAGE_BYTES,
    ESTABLISHED_BYTES,
    RESPONSE_HEADER_BYTES,
    ProxiedWeb,
    moved,
    proxied_requests,
)
from homecall.simulator.squid import AccessLog

__all__ = ["PLAIN_PORTS", "PROXY_PORT", "AddressNames", "Proxied", "through_proxy"]

PROXY_PORT = 3128
PLAIN_PORTS = (80, 8080)  # ports a client speaks plain HTTP to (anything else: a CONNECT)
_CONNECT_BYTES = 120  # CONNECT line, Host, Proxy-Connection (plus the target and the agent)
_UP = np.array([state in ("SF", "RSTO", "RSTR") for state in STATES])

# (rows, client addresses, requested names) -> the User-Agent of each row's CONNECT
Agents = Callable[[npt.NDArray[np.int64], npt.NDArray[np.uint32], Any], Any]


@dataclass(frozen=True, slots=True)
class AddressNames:
    """A name each known server address serves, for connections nothing else names."""

    ips: npt.NDArray[np.uint32]  # sorted
    names: Any  # pyarrow strings, one per address

    @staticmethod
    def of(mapping: Mapping[int, str]) -> AddressNames:
        """From address -> name."""
        ips = np.array(sorted(mapping), dtype=np.uint32)
        return AddressNames(ips, strings([mapping[int(ip)] for ip in ips]))

    def lookup(self, ips: npt.NDArray[np.uint32]) -> Any:
        """The name of each address, or the address itself in dotted form."""
        if not self.ips.size:
            return ip_texts(ips)
        at = np.minimum(np.searchsorted(self.ips, ips), self.ips.size - 1)
        known = self.ips[at] == ips
        return pc.if_else(pa.array(known), self.names.take(pa.array(at)), ip_texts(ips))


@dataclass(frozen=True, slots=True)
class Proxied:
    """Flows as the sensor sees them with the proxy in the path, and the proxy's log lines."""

    flows: Flows
    origin: npt.NDArray[np.int64]  # for each conn row, the input conn row it stands for
    log: AccessLog


def through_proxy(
    rng: np.random.Generator,
    flows: Flows,
    *,
    proxied: npt.NDArray[np.uint32],
    names: AddressNames,
    agents: Agents,
    denied: npt.NDArray[np.bool_] | None = None,
    keep_lookups: bool = False,
) -> Proxied:
    """Rewrite the web connections (TCP to outside addresses) of the `proxied` clients as
    connections to the proxy plus the proxy's own, and drop their lookups of outside names
    (unless `keep_lookups`: lookups drawn for their own sake, such as the DNS decoys').

    `names` names a server address when no SNI or Host does; `agents` gives the User-Agent of
    each CONNECT; `denied` marks conn rows the proxy's policy refuses (403, nothing forwarded).
    """
    conn = flows.conn
    n = row_count(conn)
    if n == 0:
        return Proxied(flows, np.zeros(0, dtype=np.int64), AccessLog.empty())
    client = np.asarray(conn["id.orig_h"], dtype=np.uint32)
    mine = np.isin(client, proxied)
    tcp = _equal(conn["proto"], "tcp", n)
    web = mine & tcp & ~is_internal(np.asarray(conn["id.resp_h"], dtype=np.uint32))
    drop = np.zeros(n, dtype=np.bool_) if keep_lookups else _own_lookups(flows.dns, mine, n)
    if not web.any() and not drop.any():
        return Proxied(flows, np.arange(n, dtype=np.int64), AccessLog.empty())
    refused = np.zeros(n, dtype=np.bool_) if denied is None else denied
    found = _web(flows, np.flatnonzero(web), names, refused)
    keep = np.flatnonzero(~web & ~drop)
    ua = agents(found.rows, found.client, found.target)
    clients = _client_conns(rng, found, ua)
    k = found.rows.size
    ahead = rng.integers(300, 3_000, size=k)  # the proxy parses the request, then connects
    own = tcp_conns(
        rng,
        ts_us=found.ts[found.ok] + ahead[found.ok],
        orig_h=np.full(int(found.ok.sum()), PROXY, dtype=np.uint32),
        resp_h=found.server[found.ok],
        resp_p=found.port[found.ok],
        service=pc.if_else(pa.array(found.is_tls[found.ok]), "ssl", "http"),
        orig_bytes=found.orig_bytes[found.ok],
        resp_bytes=found.resp_bytes[found.ok],
        duration_us=np.maximum(found.duration - ahead, 0)[found.ok],
        state=found.state[found.ok],
    )
    position = np.full(n, -1, dtype=np.int64)
    position[keep] = np.arange(keep.size)
    position[found.rows] = keep.size + np.arange(k)
    connect_ts = found.ts + np.minimum(rng.integers(200, 1_500, size=k), clients["duration"] // 4)
    http, log = proxied_requests(rng, flows.http, found, position, clients, connect_ts, ua)
    out = Flows(
        conn=stack_columns([take_rows(conn, keep), clients, own]),
        dns=moved(flows.dns, position),
        http=http,
        ssl=_tunnelled_tls(flows.ssl, found, position, connect_ts, clients["duration"]),
    )
    origin = np.concatenate([keep, found.rows, found.rows[found.ok]])
    return Proxied(out, origin, log)


def _equal(column: Any, value: str, n: int) -> npt.NDArray[np.bool_]:
    if isinstance(column, str):
        return np.full(n, column == value)
    result: npt.NDArray[np.bool_] = pc.equal(column, value).to_numpy(zero_copy_only=False)
    return result


def _own_lookups(dns: Columns, mine: npt.NDArray[np.bool_], n: int) -> npt.NDArray[np.bool_]:
    """Conn rows of the proxied clients' lookups of outside names (the proxy resolves those)."""
    drop = np.zeros(n, dtype=np.bool_)
    if not row_count(dns):
        return drop
    query = dns["query"]
    outside = pc.and_(
        pc.match_substring(query, "."), pc.invert(pc.ends_with(query, "." + INTERNAL_DOMAIN))
    )
    rows = np.asarray(dns["conn"], dtype=np.int64)
    drop[rows[mine[rows] & outside.to_numpy(zero_copy_only=False)]] = True
    return drop


def _web(flows: Flows, rows: npt.NDArray[np.int64], names: AddressNames, denied: Any) -> ProxiedWeb:
    """What each proxied connection asked for: its target from the SNI, else the Host, else a
    name of the address."""
    conn = flows.conn
    n = row_count(conn)
    server = np.asarray(conn["id.resp_h"], dtype=np.uint32)[rows]
    port = np.asarray(conn["id.resp_p"], dtype=np.int64)[rows]
    state_text = conn["conn_state"]
    state_text = state_text if not isinstance(state_text, str) else strings([state_text])
    state = pc.index_in(state_text, value_set=strings(STATES)).to_numpy(zero_copy_only=False)
    state = np.broadcast_to(state, n)[rows].astype(np.int64)
    where = np.full(n, -1, dtype=np.int64)
    where[rows] = np.arange(rows.size)
    target = np.array(names.lookup(server).to_pylist(), dtype=object)
    has = {}
    for log, column in (("http", "host"), ("ssl", "server_name")):
        has[log] = np.zeros(rows.size, dtype=np.bool_)
        app: Columns = getattr(flows, log)
        if not row_count(app):
            continue
        i = where[np.asarray(app["conn"], dtype=np.int64)]
        mine = np.flatnonzero(i >= 0)
        has[log][i[mine]] = True
        value = app[column]
        text = np.array(
            [value] * mine.size
            if isinstance(value, str)
            else value.take(pa.array(mine)).to_pylist(),
            dtype=object,
        )
        named = text != "-"
        target[i[mine][named]] = text[named]
    is_tls = has["ssl"] | (~has["http"] & ~np.isin(port, PLAIN_PORTS))
    up = _UP[state]
    refused = np.asarray(denied, dtype=np.bool_)[rows]
    return ProxiedWeb(
        rows=rows,
        ts=np.asarray(conn["ts"], dtype=np.int64)[rows],
        client=np.asarray(conn["id.orig_h"], dtype=np.uint32)[rows],
        server=server,
        port=port,
        state=state,
        orig_bytes=np.maximum(np.asarray(conn["orig_bytes"], dtype=np.int64)[rows], 0),
        resp_bytes=np.maximum(np.asarray(conn["resp_bytes"], dtype=np.int64)[rows], 0),
        duration=np.maximum(np.asarray(conn["duration"], dtype=np.int64)[rows], 0),
        target=strings(target),
        is_tls=is_tls,
        bumped=has["ssl"] & has["http"],
        denied=refused,
        failed=~up & ~refused,
    )


def _client_conns(rng: np.random.Generator, web: ProxiedWeb, ua: Any) -> Columns:
    """The clients' connections to the proxy: the same exchange plus the proxy's own words."""
    k = web.rows.size
    words = pc.utf8_length(web.target).to_numpy(zero_copy_only=False).astype(np.int64)
    ua_bytes = pc.utf8_length(ua).to_numpy(zero_copy_only=False).astype(np.int64)
    error = rng.integers(*ERROR_PAGE_BYTES, size=k)
    orig = web.orig_bytes + np.where(web.is_tls, _CONNECT_BYTES + words + ua_bytes, words + 7)
    orig = np.where(web.ok, orig, _CONNECT_BYTES + words + ua_bytes)
    resp = np.where(web.is_tls, web.resp_bytes + ESTABLISHED_BYTES, web.resp_bytes)
    resp = np.where(web.ok, resp, error + RESPONSE_HEADER_BYTES)
    short = rng.integers(2_000, 60_000, size=k)  # the proxy answers by itself
    return tcp_conns(
        rng,
        ts_us=web.ts,
        orig_h=web.client,
        resp_h=np.full(k, PROXY, dtype=np.uint32),
        resp_p=PROXY_PORT,
        service=pc.if_else(pa.array(web.is_tls & web.ok), "http,ssl", "http"),
        orig_bytes=orig,
        resp_bytes=resp,
        duration_us=np.where(web.ok, web.duration, short),
        state=np.where(web.ok, web.state, 0),
    )


def _tunnelled_tls(
    ssl: Columns,
    web: ProxiedWeb,
    position: npt.NDArray[np.int64],
    connect_ts: npt.NDArray[np.int64],
    duration: npt.NDArray[np.int64],
) -> Columns:
    """ssl rows: those of a refused CONNECT go (no TLS followed); the tunnelled ones come after
    their CONNECT, inside the connection to the proxy."""
    if not row_count(ssl):
        return {}
    rows = np.asarray(ssl["conn"], dtype=np.int64)
    refused = np.zeros(position.size, dtype=np.bool_)
    refused[web.rows[web.denied]] = True
    kept = take_rows(ssl, np.flatnonzero(~refused[rows]))
    rows = rows[~refused[rows]]
    where = np.full(position.size, -1, dtype=np.int64)
    where[web.rows] = np.arange(web.rows.size)
    i = where[rows]
    tunnelled = i >= 0
    ts = np.asarray(kept["ts"], dtype=np.int64).copy()
    j = i[tunnelled]
    after = np.maximum(ts[tunnelled], connect_ts[j] + 1_000)
    ts[tunnelled] = np.minimum(after, web.ts[j] + duration[j])
    kept["ts"] = ts
    kept["conn"] = position[rows]
    return kept
