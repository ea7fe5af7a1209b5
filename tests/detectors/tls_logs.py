"""A hand-built Zeek 6 capture for the TLS detectors: ssl.log (with the ja3 package's fields),
x509.log and http.log in the samples' TSV format, imported through the pipeline.

What it holds (the tests' ground truth):
- CS_HOST beacons to CS_SERVER with Cobalt Strike's default certificate (its published SHA-256
  as Zeek's x509 fingerprint, serial 08BB00EE, empty-field subject = issuer), no SNI;
- EXPIRED_HOST calls old.example.org, whose CA-issued certificate expired before the sessions;
- WILDCARD_HOST calls api.wild.example.com with a certificate for *.wild.example.com;
- FRONTED_HOST sends SNI front.example.net with HTTP Host c2.azureedge.net in the same
  connections (a sensor behind TLS decryption);
- WWW_HOST sends SNI www.example.com with Host example.com, and CUSTOMER_HOST SNI
  shop.customer.com with Host customer.azureedge.net: one site each, not fronting;
- TUNNEL_HOST asks the proxy PROXY to CONNECT to ALLOWED but sends SNI HIDDEN in the tunnel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import count
from pathlib import Path
from typing import Any

from homecall.pipeline import import_paths
from homecall.simulator.zeeklog import FIELDS
from homecall.store import Store
from tests.detectors.zeek_tsv import at, write_tsv

CS_SHA256 = "87f2085c32b6a2cc709b365f55873e207a9caa10bffecf2fd16d3cf9d94d390c"
CS_HOST, CS_SERVER = "10.1.0.10", "203.0.113.50"
EXPIRED_HOST, EXPIRED_NAME = "10.1.0.11", "old.example.org"
WILDCARD_HOST, WILDCARD_NAME = "10.1.0.12", "api.wild.example.com"
FRONTED_HOST, FRONT, FRONTED = "10.1.0.13", "front.example.net", "c2.azureedge.net"
WWW_HOST, CUSTOMER_HOST = "10.1.0.14", "10.1.0.15"
TUNNEL_HOST, PROXY, ALLOWED, HIDDEN = "10.1.0.16", "10.1.0.2", "news.example.org", "c2.example.top"
BROWSER_JA3 = "b32309a26951912be7dba376398abc3b"

_ID = ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p")
SSL_FIELDS = (
    "ts uid " + " ".join(_ID) + " version cipher curve server_name resumed last_alert "
    "next_protocol established ssl_history cert_chain_fps client_cert_chain_fps "
    "sni_matches_cert validation_status ja3 ja3s"
).split()
X509_FIELDS = (
    "ts",
    "fingerprint",
    *(f"certificate.{f}" for f in ("version", "serial", "subject", "issuer")),
    *(f"certificate.{f}" for f in ("not_valid_before", "not_valid_after", "key_alg", "sig_alg")),
    *(f"certificate.{f}" for f in ("key_type", "key_length", "exponent", "curve")),
    *(f"san.{f}" for f in ("dns", "uri", "email", "ip")),
    "basic_constraints.ca",
    "basic_constraints.path_len",
    "host_cert",
    "client_cert",
)
_TYPES = {
    "ts": "time",
    "id.orig_h": "addr",
    "id.resp_h": "addr",
    "id.orig_p": "port",
    "id.resp_p": "port",
    "resumed": "bool",
    "established": "bool",
    "sni_matches_cert": "bool",
    "basic_constraints.ca": "bool",
    "host_cert": "bool",
    "client_cert": "bool",
    "cert_chain_fps": "vector[string]",
    "client_cert_chain_fps": "vector[string]",
    "san.dns": "vector[string]",
    "san.uri": "vector[string]",
    "san.email": "vector[string]",
    "san.ip": "vector[addr]",
    "certificate.version": "count",
    "certificate.key_length": "count",
    "basic_constraints.path_len": "count",
    "certificate.not_valid_before": "time",
    "certificate.not_valid_after": "time",
}
_uids = count(1)


def write_log(path: Path, fields: Iterable[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """One Zeek TSV log at `path` (#path from its stem); absent fields are unset ("-")."""
    typed = [(n, _TYPES.get(n, "string")) for n in fields]
    write_tsv(path, typed, rows, by_time=False)


def tls(ts: float, src: str, dst: str, name: str | None, **fields: Any) -> dict[str, Any]:
    """One ssl.log row: TLS 1.2, established, validated "ok", a browser's JA3."""
    return {
        "ts": ts,
        "uid": fields.pop("uid", None) or f"CT{next(_uids):016d}",
        "id.orig_h": src,
        "id.orig_p": 50000 + next(_uids) % 10000,
        "id.resp_h": dst,
        "id.resp_p": fields.pop("port", 443),
        "version": "TLSv12",
        "cipher": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "server_name": name,
        "resumed": False,
        "established": True,
        "validation_status": "ok",
        "ja3": BROWSER_JA3,
        "ja3s": "ae4edc6faf64d08308082ad26be60767",
        **fields,
    }


def cert(fingerprint: str, subject: str, issuer: str, **fields: Any) -> dict[str, Any]:
    """One x509.log row of a host certificate."""
    return {
        "ts": fields.pop("ts", at("2024-03-05 08:00:00")),
        "fingerprint": fingerprint,
        "certificate.version": 3,
        "certificate.serial": fields.pop("serial", "0A1B2C3D4E5F"),
        "certificate.subject": subject,
        "certificate.issuer": issuer,
        "certificate.not_valid_before": fields.pop("not_before", at("2024-01-01 00:00:00")),
        "certificate.not_valid_after": fields.pop("not_after", at("2025-01-01 00:00:00")),
        "certificate.key_alg": "rsaEncryption",
        "certificate.sig_alg": "sha256WithRSAEncryption",
        "certificate.key_type": "rsa",
        "certificate.key_length": 2048,
        "certificate.exponent": "65537",
        "san.dns": fields.pop("san", []),
        "basic_constraints.ca": False,
        "host_cert": True,
        "client_cert": False,
        **fields,
    }


def request(ts: float, uid: str, src: str, dst: str, host: str, uri: str) -> dict[str, Any]:
    """One http.log row of a GET inside a decrypted TLS connection (same uid as its ssl row)."""
    return {
        "ts": ts,
        "uid": uid,
        "id.orig_h": src,
        "id.orig_p": 50000,
        "id.resp_h": dst,
        "id.resp_p": 443,
        "trans_depth": 1,
        "method": "GET",
        "host": host,
        "uri": uri,
        "version": "1.1",
        "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
        "request_body_len": 0,
        "response_body_len": 2048,
        "status_code": 200,
        "status_msg": "OK",
    }


def _connect(ts: float, uid: str, target: str) -> dict[str, Any]:
    """One http.log row of a CONNECT a sensor saw on its way to PROXY."""
    row = request(ts, uid, TUNNEL_HOST, PROXY, target, f"{target}:443")
    return {**row, "id.resp_p": 3128, "method": "CONNECT", "status_msg": "Connection established"}


def _fronted(src: str, dst: str, sni: str, host: str, times: Iterable[float], fp: str) -> tuple:
    sessions, requests = [], []
    for i, ts in enumerate(times):
        row = tls(ts, src, dst, sni, cert_chain_fps=[fp])
        sessions.append(row)
        requests.append(request(ts + 0.2, row["uid"], src, dst, host, f"/api/v1/poll?id={i}"))
    return sessions, requests


def capture() -> dict[str, tuple[list[str], list[dict[str, Any]]]]:
    """log name -> (fields, rows) of the capture described in the module docstring."""
    day = at("2024-03-05 09:00:00")
    ssl: list[dict[str, Any]] = []
    http: list[dict[str, Any]] = []
    empty_dn = "CN=,OU=,O=,L=,ST=,C="
    x509 = [
        cert(
            CS_SHA256,
            empty_dn,
            empty_dn,
            serial="08BB00EE",
            not_before=at("2015-05-20 18:26:24"),
            not_after=at("2025-05-17 18:26:24"),
        ),
        cert(
            "11" * 32,
            f"CN={EXPIRED_NAME}",
            "CN=Example Issuing CA,O=Example Trust",
            san=[EXPIRED_NAME],
            not_before=at("2022-01-01 00:00:00"),
            not_after=at("2023-01-01 00:00:00"),
        ),
        cert(
            "22" * 32,
            "CN=*.wild.example.com",
            "CN=R3,O=Let's Encrypt,C=US",
            san=["*.wild.example.com"],
        ),
        cert("33" * 32, f"CN={FRONT}", "CN=R3,O=Let's Encrypt,C=US", san=[FRONT]),
        cert(
            "44" * 32,
            "CN=www.example.com",
            "CN=R3,O=Let's Encrypt,C=US",
            san=["www.example.com", "example.com"],
        ),
        cert(
            "55" * 32,
            "CN=shop.customer.com",
            "CN=R3,O=Let's Encrypt,C=US",
            san=["shop.customer.com"],
        ),
    ]
    for i in range(12):  # a 60 s beacon
        ssl.append(
            tls(
                day + 60 * i,
                CS_HOST,
                CS_SERVER,
                None,
                cert_chain_fps=[CS_SHA256],
                validation_status="self signed certificate",
                ja3="72a589da586844d7f0818ce684948eea",
            )
        )
    for i in range(3):
        ssl.append(
            tls(
                day + 900 * i,
                EXPIRED_HOST,
                "198.51.100.7",
                EXPIRED_NAME,
                cert_chain_fps=["11" * 32],
                validation_status="certificate has expired",
            )
        )
    for i in range(5):
        ssl.append(
            tls(
                day + 300 * i,
                WILDCARD_HOST,
                "192.0.2.80",
                WILDCARD_NAME,
                cert_chain_fps=["22" * 32],
            )
        )
    for src, dst, sni, host, fp, n in (
        (FRONTED_HOST, "192.0.2.10", FRONT, FRONTED, "33" * 32, 8),
        (WWW_HOST, "192.0.2.20", "www.example.com", "example.com", "44" * 32, 4),
        (CUSTOMER_HOST, "192.0.2.30", "shop.customer.com", "customer.azureedge.net", "55" * 32, 4),
    ):
        sessions, requests = _fronted(src, dst, sni, host, (day + 120 * i for i in range(n)), fp)
        ssl += sessions
        http += requests
    for i in range(6):
        row = tls(day + 600 * i + 0.1, TUNNEL_HOST, PROXY, HIDDEN, port=3128)
        ssl.append(row)
        http.append(_connect(day + 600 * i, row["uid"], ALLOWED))
    return {
        "ssl": (SSL_FIELDS, ssl),
        "x509": (X509_FIELDS, x509),
        "http": ([f for f, _ in FIELDS["http"]], http),
    }


def store_of(folder: Path) -> Store:
    """The capture written under FOLDER/logs and imported into FOLDER/store."""
    (folder / "logs").mkdir(parents=True)
    for name, (fields, rows) in capture().items():
        write_log(folder / "logs" / f"{name}.log", fields, rows)
    store = Store(folder / "store")
    import_paths([folder / "logs"], store)
    return store
