"""The normalized store: Parquet partitioned by table and day, with an atomic manifest."""

from __future__ import annotations

from homecall.store.schema import SCHEMAS, TABLES, TIMESTAMP, Query, schema_of
from homecall.store.store import (
    DEFAULT_STORE,
    WHOLE_STORE,
    Import,
    SourceRecord,
    Store,
    Window,
    content_hash,
    quick_fingerprint,
)

__all__ = [
    "DEFAULT_STORE",
    "SCHEMAS",
    "TABLES",
    "TIMESTAMP",
    "WHOLE_STORE",
    "Import",
    "Query",
    "SourceRecord",
    "Store",
    "Window",
    "content_hash",
    "quick_fingerprint",
    "schema_of",
]
