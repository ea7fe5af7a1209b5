"""What C2 check-ins look like on the wire: conn rows plus their ssl or http rows, and DNS."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from homecall.simulator.addresses import int_to_ip
from homecall.simulator.c2 import C2Plan
from homecall.simulator.certs import LETS_ENCRYPT, chain
from homecall.simulator.dns import named_lookups
from homecall.simulator.flows import Columns, Flows, concat, constant, tcp_conns
from homecall.simulator.web import http_rows, tls_rows

__all__ = ["CS_DEFAULT_CERT_SHA256", "PROFILES", "Profile", "implant_flows"]

# SHA-256 of the self-signed certificate a Cobalt Strike team server generates by default.
CS_DEFAULT_CERT_SHA256 = "87f2085c32b6a2cc709b365f55873e207a9caa10bffecf2fd16d3cf9d94d390c"
_POST_HEADER_BYTES = 330
_EMPTY_RESPONSE_BYTES = 160
_THROUGHPUT_BYTES_PER_S = 2_000_000  # what a tasked check-in's transfer adds to its duration
_CS_DEFAULT_URIS = (
    "/ca", "/dpixel", "/__utm.gif", "/pixel.gif", "/g.pixel", "/dot.gif", "/updates.rss",
    "/fwlink", "/cm", "/cx", "/pixel", "/match", "/visit.js", "/load", "/push", "/ptj", "/j.ad",
    "/ga.js", "/en_US/all.js", "/activity", "/IE9CompatViewList.xml",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Profile:
    """How one framework's check-ins look: sizes of an idle check-in, TLS or HTTP details."""

    orig_bytes: int  # bytes the implant sends in an idle check-in
    resp_bytes: int  # bytes back when there is no task (HTTP: headers + resp_body)
    size_jitter: int  # +- bytes from padding and encoding
    duration_s: float
    task_ratio: float = 0.02  # check-ins that fetch a task and post its output
    tls13: bool = False
    resumed_ratio: float = 0.0
    validation: str = "ok"  # Zeek's validation_status for a full TLS 1.2 handshake
    cert_sha256: str = ""  # "" -> a Let's Encrypt certificate for the C2 domain
    uris: tuple[str, ...] = ()  # one is chosen per instance, except "empire" rotates
    post_uri: str = ""
    user_agent: str = "-"
    referrer: str = "-"
    mime: str = "-"
    resp_body: int = 0


PROFILES = {
    "cs-https-default-cert": Profile(
        610, 340, 6, 0.22, resumed_ratio=0.85, validation="self signed certificate",
        cert_sha256=CS_DEFAULT_CERT_SHA256,
    ),
    "cs-https": Profile(640, 360, 6, 0.25, resumed_ratio=0.85),
    "cs-http-jquery": Profile(
        421, 5_912, 3, 0.12, uris=("/jquery-3.3.1.min.js",), post_uri="/jquery-3.3.2.min.js",
        user_agent="Mozilla/5.0 (Windows NT 6.3; Trident/7.0; rv:11.0) like Gecko",
        referrer="http://code.jquery.com/", mime="application/javascript", resp_body=5_543,
    ),
    "cs-http-default": Profile(
        338, 182, 3, 0.1, uris=_CS_DEFAULT_URIS, post_uri="/submit.php",
        user_agent="Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.2; Trident/6.0)",
    ),
    "sliver-https": Profile(1_150, 1_700, 350, 0.35, tls13=True),
    "empire-http": Profile(
        362, 1_556, 2, 0.06, uris=("/admin/get.php", "/news.php", "/login/process.php"),
        post_uri="/login/process.php",
        user_agent="Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
        mime="text/html", resp_body=1_245,
    ),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Wire:
    """One implant-day's connections as the wire shows them, shared by conn and app rows."""

    conn_us: npt.NDArray[np.int64]
    first: npt.NDArray[np.bool_]  # the first connection of its check-in
    tasked: npt.NDArray[np.bool_]  # a check-in that fetches a task and posts its output
    task_in: npt.NDArray[np.int64]  # task bytes in the GET's response
    task_out: npt.NDArray[np.int64]  # output bytes posted back on the same connection
    posted: npt.NDArray[np.int64]  # small output posted by follow-up connections
    orig_bytes: npt.NDArray[np.int64]
    resp_bytes: npt.NDArray[np.int64]
    duration_us: npt.NDArray[np.int64]


def implant_flows(
    rng: np.random.Generator,
    plan: C2Plan,
    host_ip: int,
    conn_us: npt.NDArray[np.int64],
    first: npt.NDArray[np.bool_],
    resolve: npt.NDArray[np.bool_],
    day_start_us: int,
) -> Flows:
    """One day of an implant's connections; `first` marks each check-in's first connection,
    `resolve` those a DNS lookup of the C2 domain precedes."""
    profile = PROFILES[plan.implant.profile]
    wire = _draw_wire(rng, profile, plan.implant.protocol, conn_us, first)
    n = len(conn_us)
    conn = tcp_conns(
        rng,
        ts_us=conn_us,
        orig_h=np.full(n, host_ip, dtype=np.uint32),
        resp_h=np.full(n, plan.dst, dtype=np.uint32),
        resp_p=plan.dst_port,
        service="ssl" if plan.implant.protocol == "https" else "http",
        orig_bytes=wire.orig_bytes,
        resp_bytes=wire.resp_bytes,
        duration_us=wire.duration_us,
        state=np.zeros(n, dtype=np.int64),  # SF: check-ins complete
    )
    if plan.implant.protocol == "https":
        app = Flows(conn=conn, ssl=_tls(rng, plan, profile, wire))
    else:
        app = Flows(conn=conn, http=_http(rng, plan, profile, wire))
    if plan.domain is None or not resolve.any():
        return app
    dns = named_lookups(
        rng,
        np.full(int(resolve.sum()), host_ip, np.uint32),
        conn_us[resolve],
        query=plan.domain,
        answers=int_to_ip(plan.dst),
        ttl_s=plan.ttl_s,
        answered_by=day_start_us,
    )
    return concat([app, dns])


def _draw_wire(
    rng: np.random.Generator,
    profile: Profile,
    protocol: str,
    conn_us: npt.NDArray[np.int64],
    first: npt.NDArray[np.bool_],
) -> _Wire:
    """Near-constant idle sizes (the implant's fixed-size metadata), larger when tasked."""
    n = len(conn_us)
    tasked = first & (rng.random(n) < profile.task_ratio)
    jitter = rng.integers(-profile.size_jitter, profile.size_jitter + 1, size=(2, n))
    task_in = np.where(tasked, rng.lognormal(np.log(40_000), 1.2, n), 0).astype(np.int64)
    task_out = np.where(tasked, rng.lognormal(np.log(4_000), 1.3, n), 0).astype(np.int64)
    posted = np.where(first, 0, rng.integers(48, 256, size=n))
    orig_bytes = profile.orig_bytes + jitter[0] + task_out
    resp_bytes = profile.resp_bytes + jitter[1] + task_in
    if protocol == "http":  # follow-up connections POST; the answer is headers only
        orig_bytes = np.where(first, orig_bytes, _POST_HEADER_BYTES + posted)
        resp_bytes = np.where(first, resp_bytes, _EMPTY_RESPONSE_BYTES + jitter[1])
    transfer_s = (orig_bytes + resp_bytes) / _THROUGHPUT_BYTES_PER_S
    duration_s = rng.lognormal(np.log(profile.duration_s), 0.35, n) + transfer_s
    return _Wire(
        conn_us=conn_us,
        first=first,
        tasked=tasked,
        task_in=task_in,
        task_out=task_out,
        posted=posted,
        orig_bytes=orig_bytes,
        resp_bytes=resp_bytes,
        duration_us=(duration_s * 1e6).astype(np.int64),
    )


def _tls(rng: np.random.Generator, plan: C2Plan, profile: Profile, wire: _Wire) -> Columns:
    n = len(wire.conn_us)
    fps = profile.cert_sha256 or chain(f"{plan.domain}", LETS_ENCRYPT)
    return tls_rows(
        rng,
        conn=np.arange(n, dtype=np.int64),
        ts_us=wire.conn_us,
        duration_us=wire.duration_us,
        server_name=constant(plan.domain or "-", n),
        server=np.full(n, plan.dst, dtype=np.int64),
        tls13=np.full(n, profile.tls13),
        resumed=rng.random(n) < profile.resumed_ratio,
        cert_fps=constant(fps, n),
        validation=profile.validation,
        alpn="-",
    )


def _http(rng: np.random.Generator, plan: C2Plan, profile: Profile, wire: _Wire) -> Columns:
    """A GET per check-in (its response carries any task), POSTs from follow-up connections,
    and a tasked check-in's output POSTed on its own connection (trans_depth 2)."""
    n = len(wire.conn_us)
    if plan.implant.kind == "empire":  # Empire rotates through its profile's URIs
        get_uri = pa.array(profile.uris).take(pa.array(rng.integers(0, len(profile.uris), n)))
    else:
        get_uri = constant(profile.uris[plan.host % len(profile.uris)], n)
    post_uri = profile.post_uri
    if plan.implant.profile == "cs-http-default":
        post_uri = f"{profile.post_uri}?id={plan.host * 7919 % 100_000}"
    extra = np.flatnonzero(wire.tasked)
    index = np.concatenate([np.arange(n), extra])
    is_post = np.concatenate([~wire.first, np.ones(extra.size, dtype=np.bool_)])
    response = np.where(wire.first, profile.resp_body + wire.task_in, 0)
    return http_rows(
        rng,
        conn=index,
        ts_us=wire.conn_us[index],
        duration_us=wire.duration_us[index],
        host=constant(plan.domain or int_to_ip(plan.dst), index.size),
        uri=pc.if_else(pa.array(is_post), post_uri, get_uri.take(pa.array(index))),
        user_agent=profile.user_agent,
        status=np.full(index.size, 200, dtype=np.int64),
        response_body=np.concatenate([response, np.zeros(extra.size, np.int64)]),
        mime=profile.mime,
        method=pc.if_else(pa.array(is_post), "POST", "GET"),
        request_body=np.concatenate([wire.posted, wire.task_out[extra]]),
        referrer=profile.referrer,
        trans_depth=np.concatenate([np.ones(n, np.int64), np.full(extra.size, 2)]),
    )
