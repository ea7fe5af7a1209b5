"""What clients ask plain-HTTP servers for: URIs, status codes and the MIME types Zeek sniffs."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from homecall.simulator.flows import Columns, strings
from homecall.simulator.internet import RARE_WORDS
from homecall.simulator.web import http_rows

__all__ = ["HEADER_BYTES", "SOFTWARE_ENDPOINTS", "Responses", "page_requests", "plan_responses"]

_PAGES = (
    ("/", "text/html"),
    ("/index.html", "text/html"),
    ("/news/{n}.html", "text/html"),
    ("/article/2026/{n}/{w}-{v}", "text/html"),
    ("/search?q={w}+{v}", "text/html"),
    ("/products/{n}", "text/html"),
    ("/blog/{w}-{v}", "text/html"),
    ("/en-us/{w}", "text/html"),
)
_RESOURCES = (
    ("/js/{h}.js", "application/javascript"),
    ("/assets/app.{h}.js", "application/javascript"),
    ("/css/{h}.css", "text/plain"),
    ("/images/{h}.jpg", "image/jpeg"),
    ("/img/{w}-{n}.png", "image/png"),
    ("/pixel.gif?id={n}&r={h}", "image/gif"),
    ("/api/v1/{w}?_={n}", "text/json"),
)
_CRYPTOAPI = "Microsoft-CryptoAPI/10.0"
_OCSP = "{ocsp}"  # a CryptoAPI OCSP request: DER, base64, URL-encoded into the path
_CRL = "application/pkix-crl"
_CAB = "application/vnd.ms-cab-compressed"
_FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:157.0) Gecko/20100101 Firefox/157.0"
# Plain-HTTP endpoints that software (not people) fetch: URI, MIME type, user agent, body bytes.
SOFTWARE_ENDPOINTS = {
    "ocsp.digicert.com": (_OCSP, "application/ocsp-response", _CRYPTOAPI, 1_500),
    "ocsp.pki.goog": (_OCSP, "application/ocsp-response", _CRYPTOAPI, 472),
    "ocsp.sectigo.com": (_OCSP, "application/ocsp-response", _CRYPTOAPI, 727),
    "crl3.digicert.com": ("/DigiCertGlobalRootG2.crl", _CRL, _CRYPTOAPI, 664),
    "crl4.digicert.com": ("/DigiCertGlobalG2TLSRSASHA2562020CA1-1.crl", _CRL, _CRYPTOAPI, 24_518),
    "c.pki.goog": ("/r/gsr1.crl", _CRL, _CRYPTOAPI, 1_049),
    "crl.pki.goog": ("/gtsr1/gtsr1.crl", _CRL, _CRYPTOAPI, 928),
    "x1.c.lencr.org": ("/", _CRL, _CRYPTOAPI, 1_015),
    "ctldl.windowsupdate.com": (
        "/msdownload/update/v3/static/trustedr/en/authrootstl.cab?{h}", _CAB, _CRYPTOAPI, 80_714,
    ),
    "download.windowsupdate.com": (
        "/c/msdownload/update/others/2026/11/{n}_{h}.cab", _CAB,
        "Microsoft-Delivery-Optimization/10.0", 2_483_122,
    ),
    "www.msftconnecttest.com": ("/connecttest.txt", "text/plain", "Microsoft NCSI", 22),
    "detectportal.firefox.com": ("/canonical.html", "text/html", _FIREFOX, 90),
}  # fmt: skip
_MAIN_STATUS = ((200, 0.84), (304, 0.05), (301, 0.04), (302, 0.03), (404, 0.035), (500, 0.005))
_RESOURCE_STATUS = ((200, 0.85), (304, 0.1), (404, 0.04), (204, 0.01))
HEADER_BYTES = 320  # response headers: counted in resp_bytes, not in the body
_REDIRECT_BYTES = (150, 320)  # body of a 301/302: a one-line HTML link
_ERROR_BYTES = (300, 5_000)  # error pages


@dataclass(frozen=True, slots=True)
class Responses:
    """What the servers of plain-HTTP connections will answer, decided before the connections
    are drawn so that each conn's resp_bytes matches its http.log body."""

    status: npt.NDArray[np.int64]
    resp_bytes: npt.NDArray[np.int64]  # headers included; -1: a page or resource of any size


def plan_responses(
    rng: np.random.Generator, host: list[str], redirect: npt.NDArray[np.bool_], is_main: bool
) -> Responses:
    """Status and, where known, size: software endpoints' fixed files, 301s, errors, 304s."""
    n = len(host)
    status = _draw_status(rng, _MAIN_STATUS if is_main else _RESOURCE_STATUS, n)
    body = np.full(n, -1, dtype=np.int64)
    body = np.where(np.isin(status, (204, 304)), 0, body)
    body = np.where(np.isin(status, (301, 302)), rng.integers(*_REDIRECT_BYTES, size=n), body)
    body = np.where(status >= 400, rng.integers(*_ERROR_BYTES, size=n), body)
    for i, name in enumerate(host):
        if name in SOFTWARE_ENDPOINTS:
            status[i], body[i] = 200, SOFTWARE_ENDPOINTS[name][3]
        elif redirect[i]:
            status[i], body[i] = 301, rng.integers(*_REDIRECT_BYTES)
    return Responses(status, np.where(body >= 0, body + HEADER_BYTES, -1))


def page_requests(
    rng: np.random.Generator,
    *,
    conn: npt.NDArray[np.int64],
    ts_us: npt.NDArray[np.int64],
    duration_us: npt.NDArray[np.int64],
    host: list[str],
    user_agent: list[str],
    status: npt.NDArray[np.int64],
    resp_bytes: npt.NDArray[np.int64],
    is_main: bool,
) -> Columns:
    """One GET per plain-HTTP connection (a page, a resource or a software endpoint's file);
    the body is what the connection carried beyond the headers."""
    n = len(conn)
    templates = _PAGES if is_main else _RESOURCES
    choice = rng.integers(0, len(templates), size=n)
    uri = [templates[i][0] if code != 301 else "/" for i, code in zip(choice, status, strict=True)]
    mime = [templates[i][1] for i in choice]
    agent = list(user_agent)
    for i, name in enumerate(host):
        if name in SOFTWARE_ENDPOINTS:
            uri[i], mime[i], agent[i], _ = SOFTWARE_ENDPOINTS[name]
    body = np.where(np.isin(status, (204, 304)), 0, np.maximum(resp_bytes - HEADER_BYTES, 0))
    mime = [m if code < 300 else "text/html" for m, code in zip(mime, status, strict=True)]
    return http_rows(
        rng,
        conn=conn,
        ts_us=ts_us,
        duration_us=duration_us,
        host=strings(host),
        uri=strings(_fill(rng, uri)),
        user_agent=strings(agent),
        status=status,
        response_body=body,
        mime=strings(mime),
    )


def _draw_status(
    rng: np.random.Generator, options: tuple[tuple[int, float], ...], n: int
) -> npt.NDArray[np.int64]:
    codes = np.array([code for code, _ in options], dtype=np.int64)
    weights = np.array([weight for _, weight in options])
    return codes[rng.choice(len(codes), size=n, p=weights / weights.sum())]


def _fill(rng: np.random.Generator, templates: list[str]) -> list[str]:
    """Fill each template's {n} number, {h} hex id, {w}/{v} words and {ocsp} request."""
    n = len(templates)
    numbers = rng.integers(1000, 999_999, size=n)
    ids = rng.integers(1 << 40, size=n)
    words = rng.integers(len(RARE_WORDS), size=(n, 2))
    filled = []
    for template, num, ident, (a, b) in zip(templates, numbers, ids, words, strict=True):
        if template == _OCSP:
            filled.append(_ocsp_path(rng))
        else:
            filled.append(
                template.format(n=num, h=f"{ident:010x}", w=RARE_WORDS[a], v=RARE_WORDS[b])
            )
    return filled


def _ocsp_path(rng: np.random.Generator) -> str:
    """An OCSP GET path: an 83-byte DER OCSPRequest (SHA-1 CertID), base64, URL-encoded."""
    head = bytes.fromhex("3051304f304d304b3049300906052b0e03021a05000414")  # ... SHA-1, name hash
    der = head + rng.bytes(20) + b"\x04\x14" + rng.bytes(20) + b"\x02\x10" + rng.bytes(16)
    encoded = base64.b64encode(der).decode()
    return "/" + encoded.replace("/", "%2F").replace("+", "%2B").replace("=", "%3D")
