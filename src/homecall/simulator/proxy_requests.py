"""The requests of proxied connections as the sensor logs them (absolute-URI requests and
CONNECTs in http.log) and as the proxy does (its access.log lines); see proxy.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from homecall.simulator.addresses import ip_texts
from homecall.simulator.flows import Columns, row_count, stack_columns, strings, take_rows
from homecall.simulator.squid import AccessLog
from homecall.simulator.web import STATUS_TEXT, http_rows

__all__ = [
    "ERROR_PAGE_BYTES",
    "ESTABLISHED_BYTES",
    "PROXIED_HEADER",
    "RESPONSE_HEADER_BYTES",
    "ProxiedWeb",
    "moved",
    "proxied_requests",
]

PROXIED_HEADER = "PROXY-CONNECTION -> Keep-Alive"  # as Zeek's `proxied` field shows it
ESTABLISHED_BYTES = 39  # "HTTP/1.1 200 Connection established\r\n\r\n"
ERROR_PAGE_BYTES = (3_400, 4_100)  # Squid's error pages (ERR_ACCESS_DENIED, ERR_CONNECT_FAIL)
RESPONSE_HEADER_BYTES = 320


@dataclass(frozen=True, slots=True)
class ProxiedWeb:
    """The proxied web connections of a part (rows of its conn columns) and what they asked."""

    rows: npt.NDArray[np.int64]
    ts: npt.NDArray[np.int64]
    client: npt.NDArray[np.uint32]
    server: npt.NDArray[np.uint32]
    port: npt.NDArray[np.int64]
    state: npt.NDArray[np.int64]
    orig_bytes: npt.NDArray[np.int64]
    resp_bytes: npt.NDArray[np.int64]
    duration: npt.NDArray[np.int64]
    target: Any  # pyarrow strings: the requested host
    is_tls: npt.NDArray[np.bool_]
    bumped: npt.NDArray[np.bool_]  # TLS the proxy decrypts (its requests are in the flows' http)
    denied: npt.NDArray[np.bool_]
    failed: npt.NDArray[np.bool_]  # the server did not answer: the proxy says 503

    @property
    def ok(self) -> npt.NDArray[np.bool_]:
        """Connections the proxy forwarded to an answering server."""
        return ~self.denied & ~self.failed


def moved(columns: Columns, position: npt.NDArray[np.int64]) -> Columns:
    """App rows of kept connections, pointing at their new conn rows; the others dropped."""
    if not row_count(columns):
        return {}
    new = position[np.asarray(columns["conn"], dtype=np.int64)]
    kept = take_rows(columns, np.flatnonzero(new >= 0))
    kept["conn"] = new[new >= 0]
    return kept


def proxied_requests(
    rng: np.random.Generator,
    http: Columns,
    web: ProxiedWeb,
    position: npt.NDArray[np.int64],
    clients: Columns,
    connect_ts: npt.NDArray[np.int64],
    ua: Any,
) -> tuple[Columns, AccessLog]:
    """http rows (kept, absolute-URI, CONNECT) and the access.log lines of the proxied ones."""
    where = np.full(position.size, -1, dtype=np.int64)
    where[web.rows] = np.arange(web.rows.size)
    parts: list[Columns] = []
    lines: list[AccessLog] = []
    if row_count(http):
        rows = np.asarray(http["conn"], dtype=np.int64)
        i = where[rows]
        parts.append(moved(take_rows(http, np.flatnonzero(i < 0)), position))
        plain = np.flatnonzero((i >= 0) & ~web.is_tls[np.maximum(i, 0)])
        bumped = np.flatnonzero((i >= 0) & web.is_tls[np.maximum(i, 0)])
        absolute, plain_log = _absolute(
            rng, take_rows(http, plain), web, i[plain], position, connect_ts
        )
        parts.append(absolute)
        lines += [plain_log, _bumped_log(rng, take_rows(http, bumped), web, i[bumped])]
    missing = np.ones(web.rows.size, dtype=np.bool_)
    if row_count(http):
        seen = where[np.asarray(http["conn"], dtype=np.int64)]
        missing[seen[seen >= 0]] = False
    blind = np.flatnonzero(missing & ~web.is_tls)  # no request seen: the proxy's 503 or 403
    if blind.size:
        made = _made_requests(rng, web, blind, clients, connect_ts, ua)
        absolute, plain_log = _absolute(rng, made, web, blind, position, connect_ts)
        parts.append(absolute)
        lines.append(plain_log)
    tunnels = np.flatnonzero(web.is_tls)
    if tunnels.size:
        connect, connect_log = _connects(rng, web, tunnels, clients, connect_ts, ua)
        connect["conn"] = position[web.rows[tunnels]]
        parts.append(connect)
        lines.append(connect_log)
    lines = [part for part in lines if len(part)]
    log = AccessLog.stack(lines) if lines else AccessLog.empty()
    return stack_columns([p for p in parts if row_count(p)]), log


def _made_requests(
    rng: np.random.Generator,
    web: ProxiedWeb,
    rows: npt.NDArray[np.int64],
    clients: Columns,
    connect_ts: npt.NDArray[np.int64],
    ua: Any,
) -> Columns:
    """`GET /` rows for plain-HTTP connections whose request the flows do not show (the server
    never answered, so the proxy did: 503)."""
    k = rows.size
    status = np.where(web.denied[rows], 403, 503)
    made = http_rows(
        rng,
        conn=np.zeros(k, dtype=np.int64),  # replaced by the caller
        ts_us=web.ts[rows],
        duration_us=np.asarray(clients["duration"])[rows],
        host=web.target.take(pa.array(rows)),
        uri=strings(["/"] * k),
        user_agent=ua.take(pa.array(rows)),
        status=status,
        response_body=rng.integers(*ERROR_PAGE_BYTES, size=k),
        mime="text/html",
    )
    made["ts"] = connect_ts[rows]
    made["conn"] = web.rows[rows]
    return made


def _absolute(
    rng: np.random.Generator,
    http: Columns,
    web: ProxiedWeb,
    i: npt.NDArray[np.int64],
    position: npt.NDArray[np.int64],
    connect_ts: npt.NDArray[np.int64],
) -> tuple[Columns, AccessLog]:
    """Plain-HTTP requests as a client sends them to a proxy (absolute URI), and their lines;
    a request the proxy answers itself comes right at the start of its short connection."""
    k = i.size
    if k == 0:
        return {}, AccessLog.empty()
    host = http["host"] if not isinstance(http["host"], str) else strings([http["host"]] * k)
    host = pc.if_else(pc.equal(host, "-"), web.target.take(pa.array(i)), host)
    port = web.port[i]
    authority = pc.binary_join_element_wise(
        host, pc.if_else(pa.array(port == 80), "", pc.cast(pa.array(port), pa.string())), ":"
    )
    authority = pc.utf8_rtrim(authority, ":")
    uri = pc.binary_join_element_wise("http://", authority, _text(http["uri"], k), "")
    status = np.asarray(http["status_code"], dtype=np.int64)
    status = np.where(web.denied[i], 403, status)
    body = np.asarray(http["response_body_len"], dtype=np.int64)
    forwarded = web.ok[i]
    ts = np.where(forwarded, np.asarray(http["ts"], dtype=np.int64), connect_ts[i])
    rewritten = dict(http)
    rewritten.update(
        {
            "conn": position[web.rows[i]],
            "ts": ts,
            "uri": uri,
            "proxied": PROXIED_HEADER,
            "status_code": status,
            "status_msg": strings([STATUS_TEXT[int(code)] for code in status]),
        }
    )
    end = ts + (np.asarray(web.duration)[i] * rng.uniform(0.5, 0.95, k)).astype(np.int64)
    code = np.where(web.denied[i], "TCP_DENIED", "TCP_MISS")
    log = AccessLog(
        end_us=np.maximum(end, ts + 1_000),
        elapsed_ms=np.maximum(end - ts, 1_000) // 1_000,
        client=web.client[i],
        code=strings(code),
        status=status,
        bytes=body + RESPONSE_HEADER_BYTES,
        method=_text(http["method"], k),
        url=uri,
        ident=strings(["-"] * k),
        hierarchy=strings(np.where(forwarded, "HIER_DIRECT", "HIER_NONE")),
        peer=pc.if_else(pa.array(forwarded), ip_texts(web.server[i]), "-"),
        mime=pc.fill_null(_text(http["resp_mime_types"], k), "-"),
    )
    return rewritten, log


def _text(column: Any, n: int) -> Any:
    return strings([column] * n) if isinstance(column, str) else column


def _bumped_log(
    rng: np.random.Generator, http: Columns, web: ProxiedWeb, i: npt.NDArray[np.int64]
) -> AccessLog:
    """What the proxy logs of the requests it decrypted: `https://Host/path` per request."""
    k = i.size
    if k == 0:
        return AccessLog.empty()
    ts = np.asarray(http["ts"], dtype=np.int64)
    end = ts + rng.integers(20_000, 400_000, size=k)
    url = pc.binary_join_element_wise("https://", _text(http["host"], k), _text(http["uri"], k), "")
    return AccessLog(
        end_us=end,
        elapsed_ms=(end - ts) // 1_000,
        client=web.client[i],
        code=strings(["TCP_MISS"] * k),
        status=np.asarray(http["status_code"], dtype=np.int64),
        bytes=np.asarray(http["response_body_len"], dtype=np.int64) + RESPONSE_HEADER_BYTES,
        method=_text(http["method"], k),
        url=url,
        ident=strings(["-"] * k),
        hierarchy=strings(["HIER_DIRECT"] * k),
        peer=ip_texts(web.server[i]),
        mime=pc.fill_null(_text(http["resp_mime_types"], k), "-"),
    )


def _connects(
    rng: np.random.Generator,
    web: ProxiedWeb,
    rows: npt.NDArray[np.int64],
    clients: Columns,
    connect_ts: npt.NDArray[np.int64],
    ua: Any,
) -> tuple[Columns, AccessLog]:
    """The CONNECT of each tunnel as Zeek logs it, and its access.log line: a spliced tunnel
    when it closes, a bumped one once the proxy has taken it over."""
    k = rows.size
    host = web.target.take(pa.array(rows))
    target = pc.binary_join_element_wise(host, pc.cast(pa.array(web.port[rows]), pa.string()), ":")
    ok, denied = web.ok[rows], web.denied[rows]
    status = np.where(ok, 200, np.where(denied, 403, 503))
    error = np.where(ok, 0, rng.integers(*ERROR_PAGE_BYTES, size=k))
    duration = np.asarray(clients["duration"], dtype=np.int64)[rows]
    connect = http_rows(
        rng,
        conn=np.zeros(k, dtype=np.int64),
        ts_us=web.ts[rows],
        duration_us=duration,
        host=host,
        uri=target,
        user_agent=ua.take(pa.array(rows)),
        status=status,
        response_body=error,
        mime="text/html",
        method="CONNECT",
    )
    connect["ts"] = connect_ts[rows]
    connect["proxied"] = PROXIED_HEADER
    connect["status_msg"] = strings(
        np.where(ok, "Connection established", np.where(denied, "Forbidden", "Service Unavailable"))
    )
    bumped = web.bumped[rows] & ok
    end = np.where(
        bumped, connect_ts[rows] + rng.integers(15_000, 90_000, size=k), web.ts[rows] + duration
    )
    code = np.where(denied, "TCP_DENIED", np.where(~ok, "TAG_NONE", "TCP_TUNNEL"))
    code = np.where(bumped, "NONE_NONE", code)
    sent = np.asarray(clients["resp_bytes"], dtype=np.int64)[rows] - ESTABLISHED_BYTES
    forwarded = ok & ~bumped
    log = AccessLog(
        end_us=end,
        elapsed_ms=(end - web.ts[rows]) // 1_000,
        client=web.client[rows],
        code=strings(code),
        status=status,
        bytes=np.where(bumped, 0, np.where(ok, sent, error + RESPONSE_HEADER_BYTES)),
        method=strings(["CONNECT"] * k),
        url=target,
        ident=strings(["-"] * k),
        hierarchy=strings(np.where(forwarded, "HIER_DIRECT", "HIER_NONE")),
        peer=pc.if_else(pa.array(forwarded), ip_texts(web.server[rows]), "-"),
        mime=strings(np.where(ok, "-", "text/html")),
    )
    return connect, log
