"""Hand-built Zeek TSV logs (the samples' header: #separator ... #types, then #close), imported
through the pipeline like a capture. Rows are dicts keyed by Zeek field name; absent is "-"."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

from homecall.pipeline import import_paths
from homecall.simulator.zeeklog import FIELDS
from homecall.store import Store

Row = Mapping[str, Any]
# log file stem -> the field list it is written with (open_conn.log carries conn's fields)
_LOG_FIELDS = {"conn": "conn", "open_conn": "conn", "http": "http", "ssl": "ssl"}
_uid = count(1)


def uid() -> str:
    """A fresh connection uid, Zeek-style."""
    return f"C{next(_uid):017d}"


def at(text: str) -> float:
    """'2024-03-05 14:00:00' (UTC) -> epoch seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def cell(value: Any) -> str:
    """A value as Zeek writes it: "-" unset, T/F, six decimals, "(empty)" for an empty set."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, float):
        return f"{value:.6f}"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) if value else "(empty)"
    return str(value)


def write_tsv(
    path: Path, fields: Sequence[tuple[str, str]], rows: Iterable[Row], *, by_time: bool = True
) -> Path:
    """One Zeek TSV log at `path` (#path from its stem) with `fields` as (name, type) pairs, in
    Zeek's default header; absent fields are unset ("-"), rows sorted by ts unless told."""
    ordered = sorted(rows, key=lambda r: float(r["ts"])) if by_time else list(rows)
    stamp = "2024-01-01-00-00-00"
    head = [
        "#separator \\x09",
        "#set_separator\t,",
        "#empty_field\t(empty)",
        "#unset_field\t-",
        f"#path\t{path.stem}",
        f"#open\t{stamp}",
        "#fields\t" + "\t".join(f for f, _ in fields),
        "#types\t" + "\t".join(t for _, t in fields),
    ]
    body = ["\t".join(cell(r.get(f)) for f, _ in fields) for r in ordered]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([*head, *body, f"#close\t{stamp}"]) + "\n", encoding="utf-8")
    return path


def write_log(folder: Path, name: str, rows: Iterable[Row]) -> Path:
    """FOLDER/NAME.log with the simulator's Zeek 6 fields of that log, rows sorted by ts."""
    return write_tsv(folder / f"{name}.log", FIELDS[_LOG_FIELDS[name]], rows)


def store_of(folder: Path, logs: Mapping[str, Iterable[Row]]) -> Store:
    """Write each log under FOLDER/logs and import them into FOLDER/store."""
    (folder / "logs").mkdir(parents=True)
    for name, rows in logs.items():
        write_log(folder / "logs", name, rows)
    store = Store(folder / "store")
    import_paths([folder / "logs"], store)
    return store


def conn(ts: float, src: str, dst: str, port: int, **fields: Any) -> dict[str, Any]:
    """One conn.log row (tcp, 1 s, a few hundred bytes unless given)."""
    return {
        "ts": ts,
        "uid": fields.pop("uid", None) or uid(),
        "id.orig_h": src,
        "id.orig_p": fields.pop("sport", 50000),
        "id.resp_h": dst,
        "id.resp_p": port,
        "proto": fields.pop("proto", "tcp"),
        "duration": fields.pop("duration", 1.0),
        "orig_bytes": fields.pop("orig_bytes", 300),
        "resp_bytes": fields.pop("resp_bytes", 700),
        "conn_state": fields.pop("conn_state", "SF"),
        "orig_pkts": 5,
        "resp_pkts": 5,
        **fields,
    }


def connect(ts: float, src: str, proxy: str, target: str, **fields: Any) -> dict[str, Any]:
    """One http.log row of a CONNECT a sensor saw on its way to a proxy (rita-proxy-beacon's)."""
    host = target.rsplit(":", 1)[0]
    return {
        "ts": ts,
        "uid": fields.pop("uid", None) or uid(),
        "id.orig_h": src,
        "id.orig_p": 50000,
        "id.resp_h": proxy,
        "id.resp_p": fields.pop("proxy_port", 3128),
        "trans_depth": 1,
        "method": "CONNECT",
        "host": host,
        "uri": target,
        "version": "1.1",
        "user_agent": fields.pop("user_agent", "Mozilla/5.0"),
        "request_body_len": 0,
        "response_body_len": 0,
        "status_code": fields.pop("status_code", 200),
        "status_msg": fields.pop("status_msg", "Connection established"),
        **fields,
    }


def request(ts: float, src: str, dst: str, host: str, **fields: Any) -> dict[str, Any]:
    """One http.log row of a GET straight to a server."""
    return {
        "ts": ts,
        "uid": fields.pop("uid", None) or uid(),
        "id.orig_h": src,
        "id.orig_p": 50000,
        "id.resp_h": dst,
        "id.resp_p": fields.pop("port", 80),
        "trans_depth": 1,
        "method": fields.pop("method", "GET"),
        "host": host,
        "uri": fields.pop("uri", "/"),
        "version": "1.1",
        "user_agent": fields.pop("user_agent", "Mozilla/5.0"),
        "request_body_len": 0,
        "response_body_len": fields.pop("response_body_len", 512),
        "status_code": fields.pop("status_code", 200),
        "status_msg": "OK",
        **fields,
    }


def tls(ts: float, src: str, dst: str, name: str | None, **fields: Any) -> dict[str, Any]:
    """One ssl.log row (TLS 1.3, established)."""
    return {
        "ts": ts,
        "uid": fields.pop("uid", None) or uid(),
        "id.orig_h": src,
        "id.orig_p": 50000,
        "id.resp_h": dst,
        "id.resp_p": fields.pop("port", 443),
        "version": "TLSv13",
        "cipher": "TLS_AES_128_GCM_SHA256",
        "server_name": name,
        "established": True,
        **fields,
    }
