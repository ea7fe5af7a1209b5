"""Hand-built Zeek dns.log (JSON lines) for the DNS detector tests, imported like a real log."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from homecall.config import Config
from homecall.pipeline import import_paths
from homecall.store import Store
from homecall.store.tables import WHOLE_STORE, Tables, connect, open_tables

QTYPES = {"A": 1, "CNAME": 5, "NULL": 10, "MX": 15, "TXT": 16, "AAAA": 28, "ANY": 255}
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


@dataclass
class Lookup:
    """One dns.log record: who asked whom for what, and the answer."""

    ts: float
    src: str
    query: str
    qtype: str = "A"
    resolver: str = "10.0.0.53"
    answers: Sequence[str] = ()
    ttls: Sequence[float] = ()
    rcode: int = 0
    extra: dict[str, object] = field(default_factory=dict)


def record(n: int, lookup: Lookup) -> dict[str, object]:
    """The Zeek JSON object of `lookup`; `n` makes the uid unique."""
    out: dict[str, object] = {
        "ts": lookup.ts,
        "uid": f"CDNS{n:012d}",
        "id.orig_h": lookup.src,
        "id.orig_p": 40000 + n % 20000,
        "id.resp_h": lookup.resolver,
        "id.resp_p": 53,
        "proto": "udp",
        "trans_id": n % 65536,
        "query": lookup.query,
        "qclass": 1,
        "qclass_name": "C_INTERNET",
        "qtype": QTYPES[lookup.qtype],
        "qtype_name": lookup.qtype,
        "rcode": lookup.rcode,
        "rcode_name": {0: "NOERROR", 3: "NXDOMAIN"}[lookup.rcode],
        "AA": False,
        "TC": False,
        "RD": True,
        "RA": True,
        "Z": 0,
        "rejected": False,
    }
    if lookup.answers:
        out["answers"] = list(lookup.answers)
        out["TTLs"] = list(lookup.ttls) or [300.0] * len(lookup.answers)
    out.update(lookup.extra)
    return out


def write_log(path: Path, lookups: Iterable[Lookup]) -> Path:
    """Write `lookups` as a Zeek JSON dns.log at `path` (sorted by time, as Zeek writes)."""
    rows = sorted(lookups, key=lambda x: (x.ts, x.src, x.query))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for n, lookup in enumerate(rows):
            out.write(json.dumps(record(n, lookup)) + "\n")
    return path


def tables_of(paths: Sequence[Path], root: Path) -> Tables:
    """Import `paths` into a new store under `root` and open its tables on DuckDB."""
    store = Store(root / "store")
    result = import_paths(list(paths), store)
    assert not result.errors, result.errors
    return open_tables(store, Config().internal, connect(), WHOLE_STORE)
