"""Zeek logs, TSV or JSON, plain or gzip -> the conn, dns, http, tls, x509, smtp and files tables.

Parsing is columnar: DuckDB's CSV reader for TSV (bad lines come back with their line numbers
from its rejects table) and its JSON reader for JSON. Python touches only the header, the rare
values that carry Zeek's `\\xHH` escapes, and the error path.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from homecall.errors import MalformedInputError
from homecall.sources.duck import compression, connect, lit, locate_bad_json
from homecall.sources.fileio import head_of
from homecall.sources.options import DEFAULT_OPTIONS, ReadOptions
from homecall.sources.problems import Problems
from homecall.sources.zeek_fields import DERIVED, ZeekLog, log_for_fields, log_for_path
from homecall.store.schema import TIMESTAMP, Query, schema_of

__all__ = ["FORMAT", "read", "sniff"]

log = logging.getLogger(__name__)

FORMAT = "zeek"
BATCH_ROWS = 1 << 17  # Arrow batches of 131,072 rows: large enough for DuckDB, small for memory
HEADER_MAX_LINES = 64  # a Zeek TSV header is 8 lines; anything longer is not a header
_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")
_PLAIN_TYPES = frozenset({"addr", "subnet", "port", "enum", "count", "int", "double", "bool"})
_ROTATION = re.compile(r"[._-]\d{2}[:_]\d{2}[:_]\d{2}.*$")


@dataclass(frozen=True, slots=True)
class _Header:
    separator: str
    set_separator: str
    empty: str
    unset: str
    path: str | None
    fields: tuple[str, ...]
    types: dict[str, str]
    lines: int


def sniff(head: bytes) -> bool:
    """True for a Zeek TSV header, or a first JSON line with Zeek's `ts` or `_path` key."""
    if head.startswith(b"#separator"):
        return True
    first = head.split(b"\n", 1)[0].strip()
    if not first.startswith(b"{"):
        return False
    try:
        record = json.loads(first)
    except ValueError:
        return False
    return isinstance(record, dict) and ("ts" in record or "_path" in record)


def read(
    path: Path, problems: Problems, options: ReadOptions = DEFAULT_OPTIONS
) -> Iterator[tuple[str, pa.RecordBatch | Query]]:
    """Yield (table, batch) for one Zeek log; log types homecall does not import are skipped."""
    head = head_of(path)
    if head.startswith(b"#separator"):
        yield from _read_tsv(path, problems)
    elif head.lstrip().startswith(b"{"):
        yield from _read_json(path, head, problems)
    elif head.strip():
        raise MalformedInputError(path, 1, "neither a Zeek TSV header nor a JSON record")


_INTERIM = ("open_conn", "conn_long")


def _log_type(
    path: Path, zeek_path: str | None, fields: set[str], problems: Problems
) -> ZeekLog | None:
    stem = _ROTATION.sub("", path.name.split(".")[0])
    # Still-open connections (zeek-open-connections writes open_conn.log with `_path` "conn"):
    # interim conn records go to conn_open for long-connection; the others are skipped.
    if zeek_path in _INTERIM or stem in _INTERIM:
        return log_for_path("open_conn")
    if stem.startswith("open_"):
        problems.skip(path, "still-open connections; http.log and ssl.log have them once closed")
        return None
    name = zeek_path or stem
    found = log_for_path(name) if zeek_path else None
    if found is None and zeek_path is None:
        found = log_for_fields(fields)
    if found is None:
        problems.skip(path, f"Zeek {name!r} log: not a log type homecall imports")
    return found


# ---------------------------------------------------------------------------- TSV


def _parse_header(path: Path, head: bytes) -> _Header:
    meta: dict[str, str] = {}
    lines = head.split(b"\n")
    count = 0
    for count, raw in enumerate(lines[:HEADER_MAX_LINES], start=1):
        if not raw.startswith(b"#"):
            count -= 1
            break
        text = raw.decode("utf-8", "replace").rstrip("\r")
        if text.startswith("#separator "):
            meta["separator"] = _unescape(text.split(" ", 1)[1])
            continue
        key, _, value = text[1:].partition(meta.get("separator", "\t"))
        meta[key] = value
    sep = meta.get("separator", "\t")
    if "fields" not in meta:
        raise MalformedInputError(path, count + 1, "Zeek TSV log without a #fields header line")
    return _Header(
        separator=sep,
        set_separator=meta.get("set_separator", ","),
        empty=meta.get("empty_field", "(empty)"),
        unset=meta.get("unset_field", "-"),
        path=meta.get("path"),
        fields=tuple(meta["fields"].split(sep)),
        types=dict(zip(meta["fields"].split(sep), meta.get("types", "").split(sep), strict=False)),
        lines=count,
    )


def _read_tsv(path: Path, problems: Problems) -> Iterator[tuple[str, pa.RecordBatch | Query]]:
    header = _parse_header(path, head_of(path))
    zlog = _log_type(path, header.path, set(header.fields), problems)
    if zlog is None:
        return
    schema = schema_of(zlog.table)
    present = set(header.fields)
    raw_types = {f: "VARCHAR" for f in header.fields}
    selects = []
    for column, alternatives in zlog.columns.items():
        target = schema.field(column).type
        source = _choose(alternatives, present)
        selects.append(_tsv_select(column, source, target, header, raw_types))
    con = connect()
    rejects = "homecall_rejects"
    sql_types = ", ".join(f"{lit(f)}: {lit(t)}" for f, t in raw_types.items())
    reader = (
        f"read_csv({lit(str(path))}, auto_detect=false, header=false,"
        f" delim={lit(header.separator)},"
        f" comment='#', nullstr={lit(header.unset)}, quote='', escape='', new_line='\\n',"
        f" compression={lit(compression(path))}, columns={{{sql_types}}},"
        f" ignore_errors=true, store_rejects=true, rejects_table={lit(rejects)},"
        f" rejects_scan='homecall_scans', rejects_limit=1000)"
    )
    provenance = f"CAST(NULL AS VARCHAR) AS sensor, {lit(str(path))} AS source_file"
    sql = f"SELECT {', '.join(selects)}, {provenance} FROM {reader}"
    try:
        con.sql(f"DESCRIBE {sql}")  # bind now: a broken header fails here, naming the file
        yield zlog.table, Query(con, sql)
        bad_lines = con.sql(
            f"SELECT line, first(error_message ORDER BY column_idx) FROM {rejects}"
            " GROUP BY line ORDER BY line"
        ).fetchall()
    except duckdb.Error as exc:
        raise MalformedInputError(path, None, f"unreadable as Zeek TSV: {exc}") from exc
    for line, reason in bad_lines:
        problems.add(path, int(line), _reject_reason(reason))


def _reject_reason(message: str) -> str:
    if "Expected Number of Columns" in message:
        return "wrong number of fields (" + message.split(":", 1)[-1].strip() + ")"
    return message.split("\n")[0][:200]


def _tsv_select(
    column: str, source: str | None, target: pa.DataType, header: _Header, raw_types: dict[str, str]
) -> str:
    alias = _ident(column)
    if source is None:
        return f"CAST(NULL AS {_sql_type(target)}) AS {alias}"
    if source in DERIVED:
        return f"{DERIVED[source][0]} AS {alias}"
    name, first = _strip_first(source)
    ref = _ident(name)
    empty, setsep = lit(header.empty), lit(header.set_separator)
    if first:
        element = f"string_split({ref}, {setsep})[1]"
        return f"CASE WHEN {ref} = {empty} THEN NULL ELSE {_unescaped(element)} END AS {alias}"
    if pa.types.is_list(target):
        split = (
            f"CASE WHEN {ref} = {empty} THEN []::VARCHAR[] ELSE string_split({ref}, {setsep}) END"
        )
        if pa.types.is_floating(target.value_type):
            return f"list_transform({split}, lambda x: TRY_CAST(x AS DOUBLE)) AS {alias}"
        return f"list_transform({split}, lambda x: {_unescaped('x')}) AS {alias}"
    if target == TIMESTAMP:
        raw_types[name] = "DOUBLE"
        return f"{_epoch_us(ref)} AS {alias}"
    if pa.types.is_string(target) and header.types.get(name, "string") in _PLAIN_TYPES:
        return f"{ref} AS {alias}"  # addresses, enums and numbers are never empty or escaped
    if pa.types.is_string(target):
        return f"{_unescaped(ref, empty)} AS {alias}"
    raw_types[name] = _sql_type(target)
    return f"{ref} AS {alias}"


# --------------------------------------------------------------------------- JSON


def _read_json(path: Path, head: bytes, problems: Problems) -> Iterator[tuple[str, pa.RecordBatch]]:
    keys: set[str] = set()
    zeek_path = None
    for raw in head.split(b"\n")[:-1][:200]:
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if isinstance(record, dict):
            keys |= record.keys()
            zeek_path = zeek_path or record.get("_path")
    zlog = _log_type(path, zeek_path, keys, problems)
    if zlog is None:
        return
    schema = schema_of(zlog.table)
    raw_types: dict[str, str] = {}
    selects = []
    for column, alternatives in zlog.columns.items():
        target = schema.field(column).type
        selects.append(_json_select(column, alternatives, target, raw_types))
    con = connect()
    columns = ", ".join(f"{lit(f)}: {lit(t)}" for f, t in raw_types.items())
    reader = (
        f"read_json({lit(str(path))}, format='newline_delimited', columns={{{columns}}},"
        f" compression={lit(compression(path))}, ignore_errors=true,"
        " maximum_object_size=16777216)"
    )
    bad = 0
    try:
        relation = con.sql(f"SELECT {', '.join(selects)} FROM {reader}")
        for table, batch in _batches(relation, zlog.table, path):
            valid = pc.is_valid(batch.column("ts"))
            if valid.false_count:
                bad += valid.false_count
                batch = batch.filter(valid)
            yield table, batch
    except duckdb.Error as exc:
        raise MalformedInputError(path, None, f"unreadable as Zeek JSON: {exc}") from exc
    if bad:
        locate_bad_json(path, problems, bad, _zeek_unusable, "record with an unparseable ts")


def _json_select(
    column: str, alternatives: tuple[str, ...], target: pa.DataType, raw_types: dict[str, str]
) -> str:
    exprs = []
    for source in alternatives:
        if source in DERIVED:
            sql, needs = DERIVED[source]
            for name in needs:
                raw_types.setdefault(name, "BOOLEAN" if name == "is_orig" else "VARCHAR")
            exprs.append(sql)
            continue
        name, first = _strip_first(source)
        ref = _ident(name)
        if first:
            raw_types[name] = "VARCHAR[]"
            exprs.append(f"{ref}[1]")
        elif target == TIMESTAMP:
            raw_types[name] = "VARCHAR"
            exprs.append(
                f"coalesce({_epoch_us(f'TRY_CAST({ref} AS DOUBLE)')},"
                f" TRY_CAST({ref} AS TIMESTAMPTZ))"
            )
        else:
            raw_types[name] = _sql_type(target)
            exprs.append(ref)
    if not exprs:
        return f"CAST(NULL AS {_sql_type(target)}) AS {_ident(column)}"
    expr = exprs[0] if len(exprs) == 1 else f"coalesce({', '.join(exprs)})"
    return f"{expr} AS {_ident(column)}"


def _zeek_unusable(record: object) -> str | None:
    if not isinstance(record, dict) or record.get("ts") is None:
        return "record without a usable ts"
    return None


# ------------------------------------------------------------------------- shared


def _batches(
    relation: duckdb.DuckDBPyRelation, table: str, path: Path
) -> Iterator[tuple[str, pa.RecordBatch]]:
    schema = schema_of(table)
    source = pa.scalar(str(path), pa.string())
    for batch in relation.to_arrow_reader(batch_size=BATCH_ROWS):
        n = batch.num_rows
        if n == 0:
            continue
        columns = []
        for field in schema:
            if field.name == "sensor":
                columns.append(pa.nulls(n, pa.string()))
            elif field.name == "source_file":
                columns.append(pa.repeat(source, n))
            else:
                columns.append(batch.column(field.name).cast(field.type))
        yield table, pa.RecordBatch.from_arrays(columns, schema=schema)


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def _unescaped(expr: str, empty: str | None = None) -> str:
    """Decode Zeek's \\xHH escapes in SQL (the split runs only on values that contain one);
    with `empty`, Zeek's empty-string marker becomes ''. One CASE: measured 0.6 s per 10M rows
    cheaper than two nested ones."""
    decode = (
        f"array_to_string(list_transform(string_split({expr}, '\\x'), lambda p, i: CASE WHEN i = 1"
        " THEN p ELSE coalesce(chr(TRY_CAST('0x' || p[1:2] AS INTEGER)) || p[3:], '\\x' || p)"
        " END), '')"
    )
    when_empty = f"WHEN {expr} = {empty} THEN '' " if empty is not None else ""
    return f"CASE {when_empty}WHEN contains({expr}, '\\x') THEN {decode} ELSE {expr} END"


def _epoch_us(expr: str) -> str:
    """Epoch seconds (Zeek's 6-decimal floats) to TIMESTAMPTZ; exact to the microsecond."""
    return f"to_timestamp({expr})"


def _choose(alternatives: tuple[str, ...], present: set[str]) -> str | None:
    for source in alternatives:
        needs = DERIVED[source][1] if source in DERIVED else (_strip_first(source)[0],)
        if all(n in present for n in needs):
            return source
    return None


def _strip_first(source: str) -> tuple[str, bool]:
    return (source[:-3], True) if source.endswith("[1]") else (source, False)


def _sql_type(arrow: pa.DataType) -> str:
    if arrow == TIMESTAMP:
        return "TIMESTAMPTZ"
    if pa.types.is_list(arrow):
        return _sql_type(arrow.value_type) + "[]"
    return {
        pa.string(): "VARCHAR",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.float64(): "DOUBLE",
        pa.bool_(): "BOOLEAN",
    }[arrow]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
