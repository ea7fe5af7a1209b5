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

HEADER = (
    "#separator \\x09\n"
    "#set_separator\t,\n"
    "#empty_field\t(empty)\n"
    "#unset_field\t-\n"
    "#path\thttp\n"
    "#open\t2026-11-23-09-00-00\n"
    "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\ttrans_depth\tmethod\thost\turi"
    "\treferrer\tversion\tuser_agent\torigin\trequest_body_len\tresponse_body_len\tstatus_code"
    "\tstatus_msg\tinfo_code\tinfo_msg\ttags\tusername\tpassword\tproxied\torig_fuids"
    "\torig_filenames\torig_mime_types\tresp_fuids\tresp_filenames\tresp_mime_types\n"
    "#types\ttime\tstring\taddr\tport\taddr\tport\tcount\tstring\tstring\tstring\tstring\tstring"
    "\tstring\tstring\tcount\tcount\tcount\tstring\tcount\tstring\tset[enum]\tstring\tstring"
    "\tset[string]\tvector[string]\tvector[string]\tvector[string]\tvector[string]"
    "\tvector[string]\tvector[string]\n"
)
FOOTER = "#close\t2026-11-23-18-00-00\n"
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


def line(r: Request, n: int) -> str:
    """The TSV line of `r`, the n-th of its log (uid and client port derived from n)."""

    def cell(value: object) -> str:
        return "-" if value is None else str(value)

    fields = [
        f"{r.ts:.6f}", f"Ch{n:016d}", r.orig, str(40000 + n % 20000), r.resp, str(r.resp_port),
        "1", cell(r.method), cell(r.host), r.uri, "-", cell(r.version), r.user_agent, "-",
        str(r.request_bytes), str(r.response_bytes), cell(r.status),
        "OK" if r.status == 200 else cell(None), "-", "-", "(empty)", "-", "-", "-", "-", "-",
        "-", "-", "-", "text/html",
    ]  # fmt: skip
    return "\t".join(fields) + "\n"


def http_store(folder: Path, requests: Iterable[Request]) -> Store:
    """FOLDER/logs/http.log with `requests` (sorted by time), imported into FOLDER/store."""
    (folder / "logs").mkdir(parents=True)
    ordered = sorted(requests, key=lambda r: r.ts)
    body = "".join(line(r, n) for n, r in enumerate(ordered))
    (folder / "logs" / "http.log").write_text(HEADER + body + FOOTER, encoding="utf-8")
    store = Store(folder / "store")
    import_paths([folder / "logs"], store)
    return store


def http_tables(folder: Path, requests: Iterable[Request]) -> Tables:
    """`http_store` then its tables on DuckDB."""
    return open_store(http_store(folder, requests))
