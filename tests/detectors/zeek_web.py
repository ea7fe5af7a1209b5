"""Small Zeek TSV http.log and ssl.log files with the exact header of the rita-proxy-beacon
sample (its `#fields` and `#types` lines, ja3/ja3s included), for hand-built web stores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import count
from pathlib import Path
from typing import Any

from tests.detectors.zeek_tsv import write_tsv

HEADERS = {
    "http": (
        "ts uid id.orig_h id.orig_p id.resp_h id.resp_p trans_depth method host uri referrer "
        "version user_agent origin request_body_len response_body_len status_code status_msg "
        "info_code info_msg tags username password proxied orig_fuids orig_filenames "
        "orig_mime_types resp_fuids resp_filenames resp_mime_types",
        "time string addr port addr port count string string string string string string "
        "string count count count string count string set[enum] string string set[string] "
        "vector[string] vector[string] vector[string] vector[string] vector[string] "
        "vector[string]",
    ),
    "ssl": (
        "ts uid id.orig_h id.orig_p id.resp_h id.resp_p version cipher curve server_name "
        "resumed last_alert next_protocol established cert_chain_fuids client_cert_chain_fuids "
        "subject issuer client_subject client_issuer validation_status ja3 ja3s",
        "time string addr port addr port string string string string bool string string bool "
        "vector[string] vector[string] string string string string string string string",
    ),
}
_uids = count(1)


def get(ts: float, src: str, server: str, host: str, agent: str | None) -> dict[str, Any]:
    """One GET / on port 80 straight to `server` with Host `host` and User-Agent `agent`."""
    return {
        "ts": ts,
        "uid": f"CW{next(_uids):016d}",
        "id.orig_h": src,
        "id.orig_p": 40000 + int(ts) % 20000,
        "id.resp_h": server,
        "id.resp_p": 80,
        "trans_depth": 1,
        "method": "GET",
        "host": host,
        "uri": "/",
        "version": "1.1",
        "user_agent": agent,
        "request_body_len": 0,
        "response_body_len": 1024,
        "status_code": 200,
        "status_msg": "OK",
    }


def hello(ts: float, src: str, server: str, name: str, ja3: str) -> dict[str, Any]:
    """One established TLS 1.3 session to `server`:443 with SNI `name` and client hash `ja3`."""
    return {
        "ts": ts,
        "uid": f"CT{next(_uids):016d}",
        "id.orig_h": src,
        "id.orig_p": 40000 + int(ts) % 20000,
        "id.resp_h": server,
        "id.resp_p": 443,
        "version": "TLSv13",
        "cipher": "TLS_AES_256_GCM_SHA384",
        "curve": "x25519",
        "server_name": name,
        "resumed": False,
        "established": True,
        "ja3": ja3,
    }


def write(folder: Path, name: str, rows: Sequence[Mapping[str, Any]]) -> Path:
    """FOLDER/NAME.log (http or ssl) in Zeek's TSV format; unset fields are "-"."""
    fields, types = (h.split() for h in HEADERS[name])
    return write_tsv(folder / f"{name}.log", list(zip(fields, types, strict=True)), rows)
