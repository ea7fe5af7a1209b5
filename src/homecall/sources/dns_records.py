"""What the DNS readers share: type and response codes, names as stored, row batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from homecall.store.schema import schema_of

__all__ = ["BATCH_ROWS", "QTYPES", "RCODES", "Row", "dns_batch", "normalize_name", "qtype_of"]

BATCH_ROWS = 100_000

# IANA DNS parameters: resource record types and response codes.
QTYPES: dict[str, int] = {
    "A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "NULL": 10, "PTR": 12, "MX": 15, "TXT": 16,
    "AAAA": 28, "SRV": 33, "NAPTR": 35, "DS": 43, "DNSKEY": 48, "SVCB": 64, "HTTPS": 65,
    "AXFR": 252, "ANY": 255, "CAA": 257,
}  # fmt: skip
RCODES: dict[str, int] = {
    "NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5,
    "YXDOMAIN": 6, "YXRRSET": 7, "NXRRSET": 8, "NOTAUTH": 9, "NOTZONE": 10,
}  # fmt: skip
_QTYPE_NAMES = {number: name for name, number in QTYPES.items()}

Row = dict[str, Any]


def dns_batch(rows: list[Row], path: Path) -> pa.RecordBatch:
    """A dns-table batch from row dicts keyed by column name; absent keys become null.

    Provenance as in the Zeek reader: ``sensor`` null, ``source_file`` the file's path.
    """
    schema = schema_of("dns")
    columns = []
    for field in schema:
        if field.name == "source_file":
            columns.append(pa.array([str(path)] * len(rows), pa.string()))
        else:
            columns.append(pa.array([row.get(field.name) for row in rows], type=field.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def normalize_name(name: str) -> str:
    """A query name as stored: lowercase, without the trailing root dot."""
    lowered = name.lower()
    return lowered[:-1] if lowered.endswith(".") and len(lowered) > 1 else lowered


def qtype_of(name: str) -> tuple[int | None, str | None]:
    """(qtype, qtype_name) from a logged type: a mnemonic (``AAAA``) or ``type=NNN``."""
    upper = name.upper()
    if upper.startswith("TYPE"):
        digits = upper.removeprefix("TYPE").removeprefix("=")
        if digits.isdigit():
            number = int(digits)
            return number, _QTYPE_NAMES.get(number)
    return QTYPES.get(upper), upper
