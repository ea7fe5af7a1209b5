"""Connections made right after a lookup (DGA C2, fast-flux proxies, CDN downloads), drawn ahead
for a whole simulation and written per day as conn rows plus their http or ssl rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from homecall.simulator.certs import chain
from homecall.simulator.flows import Flows, constant, strings
from homecall.simulator.web import CLEAN, Sizes, draw_states, http_rows, sized_conns, tls_rows

__all__ = ["CallStyle", "Calls", "call_flows"]

_HTTP_HEADER_BYTES = 250  # request or response headers around a body


@dataclass(frozen=True, slots=True)
class Calls:
    """Who connected to which address, when, and for which name."""

    host_ip: npt.NDArray[np.uint32]
    ts_us: npt.NDArray[np.int64]
    dst: npt.NDArray[np.uint32]
    name: Any  # pyarrow strings: the HTTP Host or TLS SNI

    def __len__(self) -> int:
        return len(self.ts_us)

    def between(self, start_us: int, end_us: int) -> Calls:
        """The calls made in [start_us, end_us)."""
        index = np.flatnonzero((self.ts_us >= start_us) & (self.ts_us < end_us))
        return Calls(
            self.host_ip[index], self.ts_us[index], self.dst[index], self.name.take(pa.array(index))
        )

    @staticmethod
    def stack(parts: Sequence[Calls]) -> Calls:
        """All parts' calls in one."""
        if not parts:
            return Calls(np.zeros(0, np.uint32), np.zeros(0, np.int64), np.zeros(0, np.uint32),
                         strings([]))  # fmt: skip
        return Calls(
            np.concatenate([c.host_ip for c in parts]).astype(np.uint32),
            np.concatenate([c.ts_us for c in parts]).astype(np.int64),
            np.concatenate([c.dst for c in parts]).astype(np.uint32),
            pa.concat_arrays([c.name for c in parts]),
        )


@dataclass(frozen=True, slots=True)
class CallStyle:
    """What such a connection looks like: port, sizes, and its HTTP request or TLS certificate."""

    port: int  # 443: TLS (ssl rows), else plain HTTP (http rows)
    sizes: Sizes
    user_agent: str = "-"
    uri: str = "/"
    method: str = "GET"
    mime: str = "text/html"
    issuer: str = ""  # the certificate's CA; "" for a self-signed certificate
    tls13: bool = False


def call_flows(rng: np.random.Generator, calls: Calls, style: CallStyle) -> Flows:
    """The conn rows of calls and one http or ssl row for each."""
    n = len(calls)
    if n == 0:
        return Flows()
    conn = sized_conns(
        rng,
        ts_us=calls.ts_us,
        orig_h=calls.host_ip,
        resp_h=calls.dst,
        resp_p=np.full(n, style.port, dtype=np.int64),
        sizes=style.sizes,
        state=draw_states(rng, n, CLEAN),
    )
    index = np.arange(n, dtype=np.int64)
    if style.port == 443:
        return Flows(conn=conn, ssl=_tls(rng, calls, style, conn["duration"]))
    is_post = style.method == "POST"
    request = np.maximum(conn["orig_bytes"] - _HTTP_HEADER_BYTES, 0) if is_post else None
    http = http_rows(
        rng,
        conn=index,
        ts_us=calls.ts_us,
        duration_us=conn["duration"],
        host=calls.name,
        uri=constant(style.uri, n),
        user_agent=style.user_agent,
        status=np.full(n, 200, dtype=np.int64),
        response_body=np.maximum(conn["resp_bytes"] - _HTTP_HEADER_BYTES, 0),
        mime=style.mime,
        method=style.method,
        request_body=request,
        request_mime="application/octet-stream" if is_post else "-",
    )
    return Flows(conn=conn, http=http)


def _tls(
    rng: np.random.Generator, calls: Calls, style: CallStyle, duration_us: npt.NDArray[np.int64]
) -> dict[str, Any]:
    n = len(calls)
    names = calls.name.to_pylist()
    fps = {name: chain(name, style.issuer) for name in set(names)}
    return tls_rows(
        rng,
        conn=np.arange(n, dtype=np.int64),
        ts_us=calls.ts_us,
        duration_us=duration_us,
        server_name=calls.name,
        server=calls.dst.astype(np.int64),
        tls13=np.full(n, style.tls13),
        resumed=np.zeros(n, dtype=np.bool_),
        cert_fps=pc.cast(strings([fps[name] for name in names]), pa.string()),
        validation="ok" if style.issuer else "self signed certificate",
    )
