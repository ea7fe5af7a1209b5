"""Hand-built Zeek TSV http.logs, in the exact header format of the samples (Zeek 6, as
zeek-tsv/rita-proxy-beacon/http.log), imported through the pipeline like any capture."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from homecall.pipeline import import_paths
from homecall.store import Store
from homecall.store.tables import Tables
from tests.detectors.zeek_logs import open_store
from tests.detectors.zeek_tsv import write_tsv
from tests.detectors.zeek_web import HEADERS

_HTTP = list(zip(*(h.split() for h in HEADERS["http"]), strict=True))  # as the samples
T0 = 1_795_424_400.0  # 2026-11-23 09:00 UTC
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"


@dataclass(frozen=True)
class Request:
    """One http.log line; None is written as Zeek's unset "-"."""

    ts: float
    orig: str
    resp: str
    uri: str
    host: str | None = "www.example.com"
    method: str | None = "GET"
    version: str | None = "1.1"
    status: int | None = 200
    request_bytes: int = 0
    response_bytes: int = 512
    resp_port: int = 80
    user_agent: str = UA


def row(r: Request, n: int) -> dict[str, object]:
    """The http.log record of `r`, the n-th of its log (uid and client port derived from n)."""
    return {
        "ts": r.ts,
        "uid": f"Ch{n:016d}",
        "id.orig_h": r.orig,
        "id.orig_p": 40000 + n % 20000,
        "id.resp_h": r.resp,
        "id.resp_p": r.resp_port,
        "trans_depth": 1,
        "method": r.method,
        "host": r.host,
        "uri": r.uri,
        "version": r.version,
        "user_agent": r.user_agent,
        "request_body_len": r.request_bytes,
        "response_body_len": r.response_bytes,
        "status_code": r.status,
        "status_msg": "OK" if r.status == 200 else None,
        "tags": [],
        "resp_mime_types": "text/html",
    }


def http_store(folder: Path, requests: Iterable[Request]) -> Store:
    """FOLDER/logs/http.log with `requests` (sorted by time), imported into FOLDER/store."""
    ordered = sorted(requests, key=lambda r: r.ts)
    rows = [row(r, n) for n, r in enumerate(ordered)]
    write_tsv(folder / "logs" / "http.log", _HTTP, rows)
    store = Store(folder / "store")
    import_paths([folder / "logs"], store)
    return store


def http_tables(folder: Path, requests: Iterable[Request]) -> Tables:
    """`http_store` then its tables on DuckDB."""
    return open_store(http_store(folder, requests))
