"""The normalized store: Parquet partitioned by table and day, with an atomic manifest."""

from __future__ import annotations

from homecall.store.schema import SCHEMAS, TABLES, TIMESTAMP, schema_of
from homecall.store.store import DEFAULT_STORE, Import, SourceRecord, Store, content_hash

__all__ = [
    "DEFAULT_STORE",
    "SCHEMAS",
    "TABLES",
    "TIMESTAMP",
    "Import",
    "SourceRecord",
    "Store",
    "content_hash",
    "schema_of",
]
