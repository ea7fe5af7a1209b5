"""Injected C2 given away by TLS: domain fronting (truth.FrontingTruth) and certificates that do
not fit (truth.CertTruth), with their decoys: ordinary CDN traffic and a lapsed small site.

The sensor is fed by a TLS-inspecting appliance that decrypts the names of INSPECTED (CDN
traffic), so for those Zeek logs the ssl row and the decrypted http row under one uid; the proxy
bumps the same names, so a proxied client's fronted request shows in access.log as
`GET https://<back-end>/...` after its CONNECT to the front.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from homecall.simulator.addresses import draw_public_ips, int_to_ip
from homecall.simulator.c2 import C2Plan, c2_domain
from homecall.simulator.certs import CS_DEFAULT, LETS_ENCRYPT, Certificate, chain, issued
from homecall.simulator.exchanges import Exchanges, exchanges, lookup_mask
from homecall.simulator.internet import BROWSERS, C2_WORDS, HOSTING, RARE_WORDS
from homecall.simulator.truth import CertTruth, FrontingTruth, iso_utc
from homecall.simulator.web_runs import (
    WebContext,
    WebRun,
    beacon_times,
    benign,
    durations,
    span,
    working_times,
)

__all__ = [
    "CDN_DECOYS",
    "FRONT",
    "INSPECTED",
    "Cdn",
    "CdnDecoy",
    "cs_default_truth",
    "plan_cdn",
    "plan_cdn_decoy",
    "plan_cert",
    "plan_expired_site",
    "plan_fronting",
]

INSPECTED = ("aspnetcdn.com", "azureedge.net", "acmecorp-cdn.net")  # decrypted and bumped
FRONT = "ajax.aspnetcdn.com"  # Microsoft's Ajax CDN: allowed everywhere, served by Azure's edge
BACKEND_SUFFIX = "azureedge.net"  # Azure CDN endpoints: the C2 back-end hides among them
EDGE_BLOCKS = ("13.107.246.0/24", "13.107.213.0/24")  # Azure Front Door edges
AZURE_CA = "Microsoft Azure RSA TLS Issuing CA 03"
# Cobalt Strike's jQuery profile: what the fronted back-end is asked
JQUERY_AGENT = "Mozilla/5.0 (Windows NT 6.3; Trident/7.0; rv:11.0) like Gecko"
# JA3 of a Cobalt Strike beacon's WinHTTP client hello (listed in public JA3 blocklists)
CS_JA3 = "72a589da586844d7f0818ce684948eea"
_TTL_S = 300
_DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class Cdn:
    """The CDN edge addresses every name of the CDN is served from."""

    edges: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CdnDecoy:
    """Ordinary CDN traffic a fronting detector must leave alone."""

    kind: str
    sni: str
    host: str
    uri: str
    cert: str  # the leaf's name, e.g. *.azureedge.net (a wildcard that covers the SNI)
    san: tuple[str, ...]
    issuer: str
    host_ratio: float  # share of hosts that use it
    per_day: float  # requests per host and working day, Poisson


CDN_DECOYS = (
    CdnDecoy("cdn-same-name", FRONT, FRONT, "/ajax/jQuery/jquery-3.7.1.min.js", "*.aspnetcdn.com",
             ("*.aspnetcdn.com", "aspnetcdn.com"), AZURE_CA, 0.3, 2.0),
    CdnDecoy("wildcard-cert", "acmecorp-assets.azureedge.net", "acmecorp-assets.azureedge.net",
             "/img/banner-2026.png", "*.azureedge.net", ("*.azureedge.net",), AZURE_CA, 0.5, 3.0),
    CdnDecoy("cdn-same-domain", "fonts.acmecorp-cdn.net", "img.acmecorp-cdn.net",
             "/products/hero-1280.webp", "*.acmecorp-cdn.net", ("*.acmecorp-cdn.net",),
             "DigiCert Global G2", 0.25, 2.0),
    CdnDecoy("www-bare", "acmecorp-cdn.net", "www.acmecorp-cdn.net", "/", "acmecorp-cdn.net",
             ("acmecorp-cdn.net", "*.acmecorp-cdn.net"), "DigiCert Global G2", 0.15, 1.0),
)  # fmt: skip


def plan_cdn(rng: np.random.Generator, ctx: WebContext) -> Cdn:
    """The CDN's edges, and its front's certificate."""
    ctx.register(_leaf(CDN_DECOYS[0], ctx.start_us // 1_000_000))
    return Cdn(tuple(draw_public_ips(rng, EDGE_BLOCKS, 4, ctx.used_ips)))


def _leaf(decoy: CdnDecoy, start_s: int) -> Certificate:
    return issued(decoy.cert, decoy.issuer, before_s=start_s - 40 * _DAY_S, days=180, san=decoy.san)


def plan_fronting(
    rng: np.random.Generator, ctx: WebContext, host: int, cdn: Cdn, *, via_proxy: bool
) -> WebRun:
    """A beacon whose TLS names FRONT while its HTTP asks a C2 back-end on the same CDN."""
    a, b = rng.choice(len(C2_WORDS), size=2, replace=False)
    backend = f"{C2_WORDS[a]}-{C2_WORDS[b]}-{int(rng.integers(10, 99))}.{BACKEND_SUFFIX}"
    ctx.taken.add(backend)
    edge = cdn.edges[int(rng.integers(len(cdn.edges)))]
    ts = beacon_times(rng, ctx, host, sleep_s=120, jitter_ratio=0.5, jitter_kind="one-sided")
    n = ts.size
    src = np.full(n, ctx.host_ip(host), dtype=np.uint32)
    post = rng.random(n) < 0.04  # a task's output
    ex = exchanges(
        ts,
        src=src,
        server=edge,
        port=443,
        tls=True,
        decrypted=True,
        duration_us=durations(rng, n, 0.3),
        sni=FRONT,
        host=backend,
        uri=np.where(post, "/jquery-3.3.2.min.js", "/jquery-3.3.1.min.js").tolist(),
        method=np.where(post, "POST", "GET").tolist(),
        user_agent=JQUERY_AGENT,
        mime="application/javascript",
        cert_fps=chain(CDN_DECOYS[0].cert, AZURE_CA),
        resumed=rng.random(n) < 0.6,
        request_body=np.where(post, rng.integers(300, 8_000, n), 0),
        response_body=np.where(post, 0, 5_543 + rng.integers(0, 3, n)),
        resolve=None if via_proxy else lookup_mask(src, [FRONT] * n, ts, _TTL_S),
        ttl_s=_TTL_S,
    )
    requests, first, last = span(ex)
    truth = FrontingTruth(
        src=int_to_ip(ctx.host_ip(host)),
        sni=FRONT,
        http_host=backend,
        cdn=BACKEND_SUFFIX,
        server=int_to_ip(edge),
        port=443,
        via_proxy=via_proxy,
        user_agent=JQUERY_AGENT,
        requests=requests,
        first_seen=first,
        last_seen=last,
        uids=(),
    )
    return WebRun(ex, truth)


def plan_cdn_decoy(
    rng: np.random.Generator,
    ctx: WebContext,
    hosts: npt.NDArray[np.int64],
    cdn: Cdn,
    decoy: CdnDecoy,
) -> WebRun:
    """Workstations fetching from the CDN, SNI and Host as a browser sends them."""
    users = hosts[rng.random(hosts.size) < decoy.host_ratio]
    who, ts = working_times(rng, ctx, users, decoy.per_day)
    n = ts.size
    src = ctx.fleet.ips[who]
    cert = ctx.register(_leaf(decoy, ctx.start_us // 1_000_000))
    ex = exchanges(
        ts,
        src=src,
        server=np.array(cdn.edges, dtype=np.uint32)[who % len(cdn.edges)],
        port=443,
        tls=True,
        decrypted=True,
        duration_us=durations(rng, n, 0.5),
        sni=decoy.sni,
        host=decoy.host,
        uri=decoy.uri,
        user_agent=[BROWSERS[int(ctx.fleet.browser[h])][0] for h in who],
        mime="application/javascript" if decoy.uri.endswith(".js") else "image/png",
        cert_fps=chain(cert, decoy.issuer),
        resumed=rng.random(n) < 0.4,
        response_body=rng.integers(4_000, 90_000, n),
        resolve=lookup_mask(src, [decoy.sni] * n, ts, _TTL_S),
        ttl_s=_TTL_S,
    )
    detail = f"{decoy.sni} -> {decoy.host}"
    return WebRun(ex, benign(ctx, ex, decoy.kind, decoy.sni, detail))


def plan_cert(rng: np.random.Generator, ctx: WebContext, host: int, *, expired: bool) -> WebRun:
    """A C2 server whose certificate names another site (an operator reusing a certificate),
    or its own name but lapsed 45 days ago; TLS 1.2 without resumption, so every session
    shows it."""
    name = c2_domain(rng, ctx.taken)
    server = ctx.servers(rng, 1)[0]
    start_s = ctx.start_us // 1_000_000
    if expired:
        cert = issued(name, LETS_ENCRYPT, before_s=start_s - 135 * _DAY_S)
        validation, matches = "certificate has expired", True
    else:
        a, b = rng.choice(len(RARE_WORDS), size=2, replace=False)
        other = f"mail.{RARE_WORDS[a]}{RARE_WORDS[b]}.com"
        cert = issued(other, LETS_ENCRYPT, before_s=start_s - 20 * _DAY_S)
        validation, matches = "ok", False
    ctx.register(cert)
    sleep_s, jitter = (900.0, 0.4) if expired else (600.0, 0.3)
    ts = beacon_times(rng, ctx, host, sleep_s=sleep_s, jitter_ratio=jitter)
    n = ts.size
    src = np.full(n, ctx.host_ip(host), dtype=np.uint32)
    ex = exchanges(
        ts,
        src=src,
        server=server,
        port=443,
        tls=True,
        duration_us=durations(rng, n, 0.4),
        sni=name,
        cert_fps=chain(cert, LETS_ENCRYPT),
        validation=validation,
        sni_matches=matches,
        request_body=rng.integers(200, 900, n),
        response_body=rng.integers(100, 700, n),
        resolve=lookup_mask(src, [name] * n, ts, _TTL_S),
        ttl_s=_TTL_S,
    )
    kind = "expired-cert" if expired else "cert-mismatch"
    truth = _cert_truth(kind, ctx.host_ip(host), name, server, cert, validation, ex)
    return WebRun(ex, truth)


def _cert_truth(
    kind: str,
    src: int,
    sni: str | None,
    server: int,
    cert: Certificate,
    validation: str,
    ex: Exchanges,
) -> CertTruth:
    requests, first, last = span(ex)
    return CertTruth(
        kind=kind,
        src=int_to_ip(src),
        sni=sni,
        server=int_to_ip(server),
        port=443,
        via_proxy=False,
        cert_id=cert.fingerprint,
        subject=cert.subject,
        issuer=cert.issuer,
        serial=cert.serial,
        san_dns=cert.san_dns,
        not_valid_before=iso_utc(cert.not_valid_before_s * 1_000_000),
        not_valid_after=iso_utc(cert.not_valid_after_s * 1_000_000),
        validation_status=validation,
        ja3=None,
        requests=requests,
        first_seen=first,
        last_seen=last,
        uids=(),
    )


def cs_default_truth(
    ctx: WebContext, plan: C2Plan, host_ip: int, conn_us: npt.NDArray[np.int64]
) -> CertTruth:
    """The C2 instance serving Cobalt Strike's default certificate, as a certificate finding
    (its TLS sessions are the `c2` entry's connections)."""
    ctx.register(CS_DEFAULT)
    truth = _cert_truth(
        "cs-default-cert", host_ip, plan.domain, plan.dst, CS_DEFAULT,
        "self signed certificate", Exchanges.empty(),
    )  # fmt: skip
    return dataclasses.replace(
        truth,
        ja3=CS_JA3,
        requests=int(conn_us.size),
        first_seen=iso_utc(int(conn_us[0])) if conn_us.size else "-",
        last_seen=iso_utc(int(conn_us[-1])) if conn_us.size else "-",
    )


def plan_expired_site(rng: np.random.Generator, ctx: WebContext, hosts: Sequence[int]) -> WebRun:
    """A small benign site whose certificate lapsed, visited now and then by a few users."""
    a, b = rng.choice(len(RARE_WORDS), size=2, replace=False)
    name = f"www.{RARE_WORDS[a]}{RARE_WORDS[b]}.org"
    ctx.taken.add(name)
    server = draw_public_ips(rng, HOSTING.blocks, 1, ctx.used_ips)[0]
    cert = ctx.register(
        issued(name, LETS_ENCRYPT, before_s=ctx.start_us // 1_000_000 - 100 * _DAY_S)
    )
    who, ts = working_times(rng, ctx, np.asarray(hosts, dtype=np.int64), 3.0)
    src = ctx.fleet.ips[who]
    ex = exchanges(
        ts,
        src=src,
        server=server,
        port=443,
        tls=True,
        duration_us=durations(rng, ts.size, 1.0),
        sni=name,
        cert_fps=chain(cert, LETS_ENCRYPT),
        validation="certificate has expired",
        response_body=rng.integers(5_000, 60_000, ts.size),
        resolve=lookup_mask(src, [name] * ts.size, ts, 3_600),
        ttl_s=3_600,
    )
    return WebRun(ex, benign(ctx, ex, "expired-cert", name, "certificate has expired"))
