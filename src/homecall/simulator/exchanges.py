"""Web exchanges drawn ahead for a whole simulation (one request or TLS session per connection),
written per day as conn rows, their http and/or ssl rows, and the client's DNS lookups."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from homecall.simulator.addresses import int_to_ip
from homecall.simulator.dns import Queries, cache_misses, query_flows
from homecall.simulator.flows import Flows, concat, strings, tcp_conns
from homecall.simulator.web import http_rows, tls_rows

__all__ = ["Exchanges", "exchange_flows", "exchanges", "lookup_mask"]

DAY_US = 86_400 * 1_000_000
_REQUEST_HEADER_BYTES = 160  # request line and headers besides Host, URI and User-Agent
_RESPONSE_HEADER_BYTES = 250
_HANDSHAKE_BYTES = ((520, 4_300), (420, 300))  # (client, server): full handshake, resumed/1.3
_STRING_FIELDS = (
    "sni", "host", "uri", "method", "version", "user_agent", "mime", "cert_fps", "validation",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Exchanges:
    """Requests of one run, one connection each; string fields are pyarrow string arrays."""

    ts_us: npt.NDArray[np.int64]
    src: npt.NDArray[np.uint32]
    server: npt.NDArray[np.uint32]
    port: npt.NDArray[np.int64]
    tls: npt.NDArray[np.bool_]
    decrypted: npt.NDArray[np.bool_]  # TLS whose HTTP the sensor (or a bumping proxy) sees
    tls13: npt.NDArray[np.bool_]
    resumed: npt.NDArray[np.bool_]
    sni: Any  # "-" when the client sends none
    host: Any  # the Host header, "-" when the request has none
    uri: Any
    method: Any
    version: Any
    user_agent: Any
    mime: Any
    cert_fps: Any  # the chain's SHA-256 fingerprints, leaf first
    validation: Any  # Zeek's validation_status for a full TLS 1.2 handshake
    sni_matches: npt.NDArray[np.bool_]  # the certificate's names cover the SNI
    status: npt.NDArray[np.int64]
    request_body: npt.NDArray[np.int64]
    response_body: npt.NDArray[np.int64]
    duration_us: npt.NDArray[np.int64]
    resolve: npt.NDArray[np.bool_]  # the client looks the name up just before
    ttl_s: npt.NDArray[np.int64]  # TTL of that lookup's answer
    denied: npt.NDArray[np.bool_]  # refused by the proxy's policy (403)

    def __len__(self) -> int:
        return len(self.ts_us)

    def take(self, index: npt.NDArray[np.int64]) -> Exchanges:
        """The exchanges at index."""
        picked = pa.array(np.asarray(index, dtype=np.int64))
        values = {
            f.name: (
                getattr(self, f.name).take(picked)
                if f.name in _STRING_FIELDS
                else getattr(self, f.name)[index]
            )
            for f in fields(self)
        }
        return Exchanges(**values)

    def between(self, start_us: int, end_us: int) -> Exchanges:
        """The exchanges that start in [start_us, end_us)."""
        return self.take(np.flatnonzero((self.ts_us >= start_us) & (self.ts_us < end_us)))

    def sorted(self) -> Exchanges:
        """The exchanges in time order."""
        return self.take(np.argsort(self.ts_us, kind="stable"))

    @staticmethod
    def empty() -> Exchanges:
        """No exchanges."""
        none = np.zeros(0, dtype=np.int64)
        return exchanges(none, src=0, server=0, port=0, tls=False, duration_us=none)

    @staticmethod
    def stack(parts: Sequence[Exchanges]) -> Exchanges:
        """All parts' exchanges in one, in time order."""
        if not parts:
            return Exchanges.empty()
        values = {
            f.name: (
                pa.concat_arrays([getattr(p, f.name) for p in parts])
                if f.name in _STRING_FIELDS
                else np.concatenate([getattr(p, f.name) for p in parts])
            )
            for f in fields(Exchanges)
        }
        return Exchanges(**values).sorted()


def _text(value: str | Sequence[str] | Any, n: int) -> Any:
    if isinstance(value, str):
        return pa.array([value], pa.string()).take(pa.array(np.zeros(n, dtype=np.int64)))
    if isinstance(value, pa.Array):
        return value.cast(pa.string())
    return strings(list(value))


def exchanges(
    ts_us: npt.NDArray[np.int64],
    *,
    src: int | npt.NDArray[np.uint32],
    server: int | npt.NDArray[np.uint32],
    port: int | npt.NDArray[np.int64],
    tls: bool,
    duration_us: npt.NDArray[np.int64],
    sni: str | Sequence[str] | Any = "-",
    host: str | Sequence[str] | Any = "-",
    uri: str | Sequence[str] | Any = "-",
    method: str | Sequence[str] | Any = "GET",
    version: str = "1.1",
    user_agent: str | Sequence[str] | Any = "-",
    mime: str | Sequence[str] | Any = "text/html",
    cert_fps: str | Sequence[str] | Any = "-",
    validation: str = "ok",
    sni_matches: bool = True,
    decrypted: bool = False,
    tls13: bool = False,
    resumed: npt.NDArray[np.bool_] | None = None,
    status: int | npt.NDArray[np.int64] = 200,
    request_body: int | npt.NDArray[np.int64] = 0,
    response_body: int | npt.NDArray[np.int64] = 0,
    resolve: npt.NDArray[np.bool_] | None = None,
    ttl_s: int = 300,
    denied: bool = False,
) -> Exchanges:
    """Exchanges at ts_us; a scalar argument applies to every one, a sequence gives one each."""
    n = len(ts_us)

    def ints(value: int | npt.NDArray[Any], dtype: type) -> npt.NDArray[Any]:
        return np.broadcast_to(np.asarray(value, dtype=dtype), n).copy()

    def flags(value: bool) -> npt.NDArray[np.bool_]:
        return np.full(n, value, dtype=np.bool_)

    return Exchanges(
        ts_us=np.asarray(ts_us, dtype=np.int64),
        src=ints(src, np.uint32),
        server=ints(server, np.uint32),
        port=ints(port, np.int64),
        tls=flags(tls),
        decrypted=flags(decrypted),
        tls13=flags(tls13),
        resumed=flags(False) if resumed is None else resumed.astype(np.bool_),
        sni=_text(sni, n),
        host=_text(host, n),
        uri=_text(uri, n),
        method=_text(method, n),
        version=_text(version, n),
        user_agent=_text(user_agent, n),
        mime=_text(mime, n),
        cert_fps=_text(cert_fps, n),
        validation=_text(validation, n),
        sni_matches=flags(sni_matches),
        status=ints(status, np.int64),
        request_body=ints(request_body, np.int64),
        response_body=ints(response_body, np.int64),
        duration_us=np.asarray(duration_us, dtype=np.int64),
        resolve=flags(False) if resolve is None else resolve.astype(np.bool_),
        ttl_s=ints(ttl_s, np.int64),
        denied=flags(denied),
    )


def lookup_mask(
    src: npt.NDArray[np.uint32], names: Sequence[str], ts_us: npt.NDArray[np.int64], ttl_s: int
) -> npt.NDArray[np.bool_]:
    """Which requests a lookup precedes: a client's first of a name, or one after the TTL ran
    out."""
    _, name_id = np.unique(np.asarray(names, dtype=object), return_inverse=True)
    return cache_misses(
        src.astype(np.int64), name_id.astype(np.int64), ts_us, np.full(len(ts_us), ttl_s)
    )


def exchange_flows(rng: np.random.Generator, ex: Exchanges, day_start_us: int) -> Flows:
    """The conn rows of the exchanges, their ssl rows (TLS), their http rows (plain HTTP or
    decrypted TLS) and the lookups that precede them."""
    n = len(ex)
    if n == 0:
        return Flows()
    is_http = ~ex.tls | ex.decrypted
    text_bytes = sum(
        pc.utf8_length(column).to_numpy(zero_copy_only=False).astype(np.int64)
        for column in (ex.uri, ex.host, ex.user_agent)
    )
    full = ex.tls & ~ex.tls13 & ~ex.resumed
    handshake = np.array(_HANDSHAKE_BYTES)[np.where(full, 0, 1)]
    orig_bytes = _REQUEST_HEADER_BYTES + text_bytes + ex.request_body
    resp_bytes = _RESPONSE_HEADER_BYTES + ex.response_body
    orig_bytes = orig_bytes + np.where(ex.tls, handshake[:, 0], 0)
    resp_bytes = resp_bytes + np.where(ex.tls, handshake[:, 1], 0)
    conn = tcp_conns(
        rng,
        ts_us=ex.ts_us,
        orig_h=ex.src,
        resp_h=ex.server,
        resp_p=ex.port,
        service=pc.if_else(pa.array(ex.tls), "ssl", "http"),
        orig_bytes=orig_bytes,
        resp_bytes=resp_bytes,
        duration_us=ex.duration_us,
        state=np.zeros(n, dtype=np.int64),
    )
    parts = [Flows(conn=conn, ssl=_tls(rng, ex), http=_http(rng, ex, is_http))]
    if ex.resolve.any():
        parts.append(_lookups(rng, ex, day_start_us))
    return concat(parts)


def _tls(rng: np.random.Generator, ex: Exchanges) -> dict[str, Any]:
    rows = np.flatnonzero(ex.tls)
    if rows.size == 0:
        return {}
    picked = pa.array(rows)
    ssl = tls_rows(
        rng,
        conn=rows,
        ts_us=ex.ts_us[rows],
        duration_us=ex.duration_us[rows],
        server_name=ex.sni.take(picked),
        server=ex.server[rows].astype(np.int64),
        tls13=ex.tls13[rows],
        resumed=ex.resumed[rows],
        cert_fps=ex.cert_fps.take(picked),
    )
    full = pa.array(~ex.tls13[rows] & ~ex.resumed[rows])
    matches = pc.if_else(pa.array(ex.sni_matches[rows]), "T", "F")
    ssl["validation_status"] = pc.if_else(full, ex.validation.take(picked), "-")
    ssl["sni_matches_cert"] = pc.if_else(full, matches, "-")
    return ssl


def _http(
    rng: np.random.Generator, ex: Exchanges, is_http: npt.NDArray[np.bool_]
) -> dict[str, Any]:
    rows = np.flatnonzero(is_http)
    if rows.size == 0:
        return {}
    picked = pa.array(rows)
    http = http_rows(
        rng,
        conn=rows,
        ts_us=ex.ts_us[rows],
        duration_us=ex.duration_us[rows],
        host=ex.host.take(picked),
        uri=ex.uri.take(picked),
        user_agent=ex.user_agent.take(picked),
        status=ex.status[rows],
        response_body=ex.response_body[rows],
        mime=ex.mime.take(picked),
        method=ex.method.take(picked),
        request_body=ex.request_body[rows],
        request_mime="application/x-www-form-urlencoded",
    )
    http["version"] = ex.version.take(picked)
    return http


def _lookups(rng: np.random.Generator, ex: Exchanges, day_start_us: int) -> Flows:
    """A lookups of the name the client connects to, answered with the server's address."""
    rows = np.flatnonzero(ex.resolve)
    picked = pa.array(rows)
    k = rows.size
    sni = ex.sni.take(picked)
    use_sni = pc.and_(pa.array(ex.tls[rows]), pc.not_equal(sni, "-"))
    name = pc.if_else(use_sni, sni, ex.host.take(picked))  # the TLS name, else the Host
    rtt = rng.lognormal(np.log(20_000), 0.6, k).astype(np.int64)
    sent = ex.ts_us[rows] - rtt - rng.integers(200, 3_000, size=k)
    queries = Queries(
        host_ip=ex.src[rows],
        ts_us=np.maximum(sent, day_start_us),
        query=name,
        qtype=np.ones(k, dtype=np.int64),
        rcode=np.zeros(k, dtype=np.int64),
        answers=strings([int_to_ip(int(ip)) for ip in ex.server[rows]]),
        ttl_s=ex.ttl_s[rows],
        rtt_us=rtt,
    )
    return query_flows(rng, queries)
