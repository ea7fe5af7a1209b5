"""Web connections: TCP conn rows with lognormal sizes, and their ssl.log or http.log rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from homecall.simulator.flows import STATES, Columns, make_uids, strings, tcp_conns

__all__ = [
    "CLEAN",
    "WEB_STATES",
    "Sizes",
    "by_key",
    "draw_states",
    "http_rows",
    "sized_conns",
    "tls_rows",
]

WEB_STATES = (0.905, 0.015, 0.005, 0.05, 0.025)  # SF S0 REJ RSTO RSTR for browser traffic
CLEAN = (1.0, 0.0, 0.0, 0.0, 0.0)
STATUS_TEXT = {
    200: "OK",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    403: "Forbidden",
    404: "Not Found",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_TLS13_CIPHERS = (
    ("TLS_AES_128_GCM_SHA256", 0.6),
    ("TLS_AES_256_GCM_SHA384", 0.3),
    ("TLS_CHACHA20_POLY1305_SHA256", 0.1),
)
_TLS12_CIPHERS = (
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 0.45),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", 0.25),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", 0.3),
)
_CURVES = (("x25519", 0.88), ("secp256r1", 0.1), ("secp384r1", 0.02))
_ALPN = (("h2", 0.8), ("http/1.1", 0.12), ("-", 0.08))


@dataclass(frozen=True, slots=True)
class Sizes:
    """Lognormal medians of one kind of connection, and the share that idles open (keep-alive)."""

    orig_bytes: float
    resp_bytes: float
    duration_s: float
    sigma: float = 1.0
    keepalive_ratio: float = 0.0  # idles open until the client closes it after 60-125 s


def by_key(options: tuple[tuple[str, float], ...], key: npt.NDArray[np.int64]) -> Any:
    """A value per row chosen by hashing the row's key: equal keys, equal values."""
    values = [value for value, _ in options]
    cumulative = np.cumsum([weight for _, weight in options])
    cumulative /= cumulative[-1]
    u = ((np.asarray(key, dtype=np.uint64) * np.uint64(0x9E3779B1)) % np.uint64(1 << 32)) / 2**32
    index = np.minimum(np.searchsorted(cumulative, u, side="right"), len(values) - 1)
    return strings(list(values)).take(pa.array(index))


def _inside(
    rng: np.random.Generator,
    ts_us: npt.NDArray[np.int64],
    duration_us: npt.NDArray[np.int64],
    low_us: int,
    high_us: int,
) -> npt.NDArray[np.int64]:
    """A moment U[low, high) after each connection opened, within its first third."""
    delay = np.minimum(rng.integers(low_us, high_us, size=len(ts_us)), duration_us // 3)
    moment: npt.NDArray[np.int64] = ts_us + np.maximum(delay, 0)
    return moment


def draw_states(rng: np.random.Generator, n: int, mix: tuple[float, ...]) -> npt.NDArray[np.int64]:
    """Connection states (indexes into flows.STATES) drawn from a mix."""
    p = np.array(mix) / sum(mix)
    return rng.choice(len(STATES), size=n, p=p).astype(np.int64)


def sized_conns(
    rng: np.random.Generator,
    *,
    ts_us: npt.NDArray[np.int64],
    orig_h: npt.NDArray[np.uint32],
    resp_h: npt.NDArray[np.uint32],
    resp_p: npt.NDArray[np.int64],
    sizes: Sizes,
    state: npt.NDArray[np.int64],
    service: str | None = None,
    orig_bytes: npt.NDArray[np.int64] | None = None,
    resp_bytes: npt.NDArray[np.int64] | None = None,
) -> Columns:
    """TCP conn rows with sizes drawn from `sizes`, except where orig_bytes/resp_bytes give one
    (>= 0); service defaults to ssl on 443, http on 80."""
    n = len(ts_us)
    orig = rng.lognormal(np.log(sizes.orig_bytes), sizes.sigma * 0.6, n)
    resp = rng.lognormal(np.log(sizes.resp_bytes), sizes.sigma, n)
    if orig_bytes is not None:
        orig = np.where(orig_bytes >= 0, orig_bytes, orig)
    if resp_bytes is not None:
        resp = np.where(resp_bytes >= 0, resp_bytes, resp)
    duration = rng.lognormal(np.log(sizes.duration_s), 0.9, n)
    idle = rng.random(n) < sizes.keepalive_ratio
    duration = np.where(idle, duration + rng.uniform(60, 125, n), duration)
    return tcp_conns(
        rng,
        ts_us=ts_us,
        orig_h=orig_h,
        resp_h=resp_h,
        resp_p=resp_p,
        service=service or pc.if_else(pa.array(resp_p == 443), "ssl", "http"),
        orig_bytes=np.clip(orig, 120, 5e7).astype(np.int64),
        resp_bytes=np.clip(resp, 60, 5e8).astype(np.int64),
        duration_us=(duration * 1e6).astype(np.int64),
        state=state,
    )


def tls_rows(
    rng: np.random.Generator,
    *,
    conn: npt.NDArray[np.int64],
    ts_us: npt.NDArray[np.int64],
    duration_us: npt.NDArray[np.int64],
    server_name: Any,
    server: npt.NDArray[np.int64],
    tls13: npt.NDArray[np.bool_],
    resumed: npt.NDArray[np.bool_],
    cert_fps: Any,
    validation: str = "ok",
    alpn: Any = None,
) -> Columns:
    """ssl.log rows; certificates (and their validation) show only in full TLS 1.2 handshakes.

    ts_us/duration_us are the connections'. A server (any stable integer key) always
    negotiates the same cipher, curve and ALPN.
    """
    full12 = pa.array(~tls13 & ~resumed)
    cipher = pc.if_else(
        pa.array(tls13), by_key(_TLS13_CIPHERS, server), by_key(_TLS12_CIPHERS, server)
    )
    return {
        "conn": conn,
        "ts": _inside(rng, ts_us, duration_us, 2_000, 60_000),  # ClientHello after the handshake
        "version": pc.if_else(pa.array(tls13), "TLSv13", "TLSv12"),
        "cipher": cipher,
        "curve": by_key(_CURVES, server >> 3),
        "server_name": server_name,
        "resumed": resumed.astype(np.int8),
        "last_alert": "-",
        "next_protocol": by_key(_ALPN, server >> 6) if alpn is None else alpn,
        "established": "T",
        "ssl_history": pc.if_else(full12, "CsxknGIi", "CsiI"),
        "cert_chain_fps": pc.if_else(full12, cert_fps, "-"),
        "client_cert_chain_fps": pc.if_else(full12, "(empty)", "-"),
        "sni_matches_cert": pc.if_else(full12, "F" if validation != "ok" else "T", "-"),
        "validation_status": pc.if_else(full12, validation, "-"),
    }


def http_rows(
    rng: np.random.Generator,
    *,
    conn: npt.NDArray[np.int64],
    ts_us: npt.NDArray[np.int64],
    duration_us: npt.NDArray[np.int64],
    host: Any,
    uri: Any,
    user_agent: Any,
    status: npt.NDArray[np.int64],
    response_body: npt.NDArray[np.int64],
    mime: Any,
    method: Any = "GET",
    request_body: npt.NDArray[np.int64] | None = None,
    request_mime: str = "-",
    referrer: Any = "-",
    trans_depth: npt.NDArray[np.int64] | None = None,
) -> Columns:
    """http.log rows; bodies get file ids and the MIME type Zeek sniffs ("-" if none).

    ts_us/duration_us are the connections'; a request at trans_depth > 1 comes later in it.
    """
    n = len(conn)
    trans_depth = np.ones(n, dtype=np.int64) if trans_depth is None else trans_depth
    later = (duration_us * rng.uniform(0.4, 0.8, size=n)).astype(np.int64)
    ts = np.where(trans_depth > 1, ts_us + later, _inside(rng, ts_us, duration_us, 1_000, 40_000))
    request_body = np.zeros(n, dtype=np.int64) if request_body is None else request_body
    has_response = pa.array(response_body > 0)
    has_request = pa.array(request_body > 0)
    status_text = [STATUS_TEXT[int(code)] for code in status]
    return {
        "conn": conn,
        "ts": ts,
        "trans_depth": trans_depth,
        "method": method,
        "host": host,
        "uri": uri,
        "referrer": referrer,
        "version": "1.1",
        "user_agent": user_agent,
        "origin": "-",
        "request_body_len": request_body,
        "response_body_len": response_body,
        "status_code": status,
        "status_msg": strings(status_text),
        "info_code": "-",
        "info_msg": "-",
        "tags": "(empty)",
        "username": "-",
        "password": "-",
        "proxied": "-",
        "orig_fuids": pc.if_else(has_request, make_uids(rng, n, "F"), "-"),
        "orig_filenames": "-",
        "orig_mime_types": pc.if_else(has_request, request_mime, "-"),
        "resp_fuids": pc.if_else(has_response, make_uids(rng, n, "F"), "-"),
        "resp_filenames": "-",
        "resp_mime_types": pc.if_else(has_response, mime, "-"),
    }
