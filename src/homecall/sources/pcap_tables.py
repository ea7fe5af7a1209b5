"""Rows of a capture collected while it is read, and turned into Arrow batches of the tables.

Packets are the bulk: each is packed with one `struct` call into a bytearray and a batch is
made from it with NumPy every `PACKET_BATCH` packets; the flow columns (uid, endpoints, proto)
are taken from the batch's list of flows by index. Other tables collect plain rows.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from homecall.store.schema import schema_of

__all__ = ["CONN_COLUMNS", "PACKET_BATCH", "Collector", "PacketColumns", "rows_batch"]

PACKET_BATCH = 1 << 16
ROW_BATCH = 1 << 15
CONN_COLUMNS = (
    "ts", "uid", "orig_ip", "orig_port", "resp_ip", "resp_port", "proto", "service",
    "duration_s", "orig_bytes", "resp_bytes", "conn_state", "history", "orig_pkts", "resp_pkts",
    "orig_ip_bytes", "resp_ip_bytes", "missed_bytes",
)  # fmt: skip
# One packed packet: (name, struct code); -1 stands for null in the signed nullable fields.
_PACKET_FIELDS = (
    ("ts", "q"), ("slot", "I"), ("from_orig", "B"), ("ip_version", "B"), ("ip_len", "i"),
    ("payload_len", "i"), ("ttl", "B"), ("ip_id", "i"), ("ip_flags", "b"), ("tos", "B"),
    ("tcp_flags", "h"), ("tcp_reserved", "b"), ("tcp_window", "i"), ("urgent_ptr", "i"),
    ("tcp_options", "h"), ("pcap_offset", "q"), ("caplen", "i"),
)  # fmt: skip
PACKET_STRUCT = struct.Struct("<" + "".join(code for _, code in _PACKET_FIELDS))
_PACKET_DTYPE = np.dtype([(name, "<" + code) for name, code in _PACKET_FIELDS])
_NULLABLE = ("ip_id", "ip_flags", "tcp_flags", "tcp_reserved", "tcp_window", "urgent_ptr")
_INT32 = ("ip_version", "ip_len", "payload_len", "ttl", "tos", "caplen", *_NULLABLE)


class PacketColumns:
    """Packed packet rows of the current batch and the flows they belong to."""

    __slots__ = ("buffer", "count", "flows", "gen", "option_index", "options")

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.count = 0
        self.flows: list[tuple[str | None, str, int | None, str, int | None, str]] = []
        self.gen = 0
        self.options: list[str] = []
        self.option_index: dict[str, int] = {}

    def option(self, kinds: str) -> int:
        """The dictionary index of a TCP option list."""
        index = self.option_index.get(kinds)
        if index is None:
            index = self.option_index[kinds] = len(self.options)
            self.options.append(kinds)
        return index

    def batch(self, source_file: str) -> pa.RecordBatch:
        """The packets collected since the last batch; starts a new one."""
        schema = schema_of("packets")
        rows = np.frombuffer(bytes(self.buffer), dtype=_PACKET_DTYPE, count=self.count)
        slots = pa.array(rows["slot"].astype(np.int32))
        uid, orig_ip, orig_port, resp_ip, resp_port, proto = (
            pa.array(column) for column in zip(*self.flows, strict=True)
        )
        columns: dict[str, pa.Array] = {
            "ts": pa.array(rows["ts"], type=schema.field("ts").type),
            "uid": uid.take(slots),
            "orig_ip": orig_ip.take(slots),
            "orig_port": orig_port.cast(pa.int32()).take(slots),
            "resp_ip": resp_ip.take(slots),
            "resp_port": resp_port.cast(pa.int32()).take(slots),
            "proto": proto.take(slots),
            "from_orig": pa.array(rows["from_orig"].astype(bool)),
            "pcap_offset": pa.array(rows["pcap_offset"]),
        }
        for name in _INT32:
            values = rows[name].astype(np.int32)
            mask = values == -1 if name in _NULLABLE else None
            columns[name] = pa.array(values, type=pa.int32(), mask=mask)
        kinds = rows["tcp_options"].astype(np.int32)
        options = pa.DictionaryArray.from_arrays(
            pa.array(kinds, mask=kinds < 0), pa.array(self.options, pa.string())
        )
        columns["tcp_options"] = options.cast(pa.string())
        columns["sensor"] = pa.nulls(self.count, pa.string())
        columns["source_file"] = pa.repeat(pa.scalar(source_file), self.count)
        batch = pa.RecordBatch.from_arrays([columns[f.name] for f in schema], schema=schema)
        self.buffer = bytearray()
        self.count = 0
        self.flows = []
        self.gen += 1
        return batch


def rows_batch(table: str, rows: list[dict[str, Any]], source_file: str) -> pa.RecordBatch:
    """A batch of `table` from row dicts keyed by column; absent keys are null, times are
    microseconds since the epoch."""
    schema = schema_of(table)
    columns = []
    for f in schema:
        if f.name == "source_file":
            columns.append(pa.repeat(pa.scalar(source_file), len(rows)))
        else:
            columns.append(pa.array([row.get(f.name) for row in rows], type=f.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def conn_batch(rows: list[tuple[Any, ...]], source_file: str) -> pa.RecordBatch:
    """A conn batch from tuples in CONN_COLUMNS order."""
    schema = schema_of("conn")
    given = dict(zip(CONN_COLUMNS, zip(*rows, strict=True), strict=True))
    columns = []
    for f in schema:
        if f.name in given:
            columns.append(pa.array(given[f.name], type=f.type))
        elif f.name == "source_file":
            columns.append(pa.repeat(pa.scalar(source_file), len(rows)))
        else:
            columns.append(pa.nulls(len(rows), f.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


@dataclass(slots=True)
class Collector:
    """What the application analyzers write: rows per table, and the certificates already
    written (one x509 row per certificate and UTC day, as the Suricata reader writes them)."""

    source_file: str
    rows: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {"dns": [], "http": [], "tls": [], "x509": []}
    )
    certificates: set[tuple[str, int]] = field(default_factory=set)

    def full(self) -> list[str]:
        """The tables with enough rows for a batch."""
        return [table for table, rows in self.rows.items() if len(rows) >= ROW_BATCH]

    def take(self, table: str) -> pa.RecordBatch | None:
        """A batch of the rows collected for `table` (None when there are none)."""
        rows = self.rows[table]
        if not rows:
            return None
        self.rows[table] = []
        return rows_batch(table, rows, self.source_file)
