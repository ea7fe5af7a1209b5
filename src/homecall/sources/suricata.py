"""Suricata EVE JSON (eve.json), plain or gzip -> dns, http, tls, x509, conn, alert and files.

Suricata logs a DNS transaction as separate events: one per query and, for the answer, either
one event holding every record (eve dns version 2, the default since Suricata 5; version 3 in
Suricata 8 uses `queries`/`answers` arrays) or one event per answer record (version 1). The
dns table has one row per transaction, like Zeek's dns.log, so the events are joined on
(flow_id, dns id). http and tls events are one row each (`sources/suricata_web.py`); flow,
netflow, alert and fileinfo events feed conn, alert and files (`sources/suricata_flow.py`). The
file is read once: DuckDB's read_json keeps the imported events in a temporary table, and the
per-table queries run on it; Python touches only the first line (sniffing) and, on the error
path, the lines DuckDB could not use. Other event types (stats, anomaly, dhcp, ...) are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

import duckdb
import pyarrow as pa

from homecall.errors import MalformedInputError
from homecall.sources import suricata_flow, suricata_web
from homecall.sources.dns_records import QTYPES, RCODES
from homecall.sources.duck import compression, connect, lit, locate_bad_json
from homecall.sources.options import DEFAULT_OPTIONS, ReadOptions
from homecall.sources.problems import Problems
from homecall.store.schema import schema_of

__all__ = ["FORMAT", "read", "sniff"]

FORMAT = "suricata-eve"
BATCH_ROWS = 1 << 17  # same Arrow batch size as the Zeek reader
MAX_OBJECT = 1 << 24  # 16 MiB: alert events with payloads can be large

# DNS header flag bits, as in Suricata's hex `flags` field (e.g. "8180").
_AA, _TC, _RD, _RA = 0x0400, 0x0200, 0x0100, 0x0080
_RECORDS = '[{"rrname": "VARCHAR", "rrtype": "VARCHAR", "ttl": "DOUBLE", "rdata": "VARCHAR",' \
    ' "soa": {"mname": "VARCHAR"}}]'  # fmt: skip
_RAW_COLUMNS = {
    "timestamp": "VARCHAR",
    "event_type": "VARCHAR",
    "flow_id": "VARCHAR",  # uid = str(flow_id); VARCHAR also keeps ids above 2**63 intact
    "src_ip": "VARCHAR",
    "src_port": "VARCHAR",
    "dest_ip": "VARCHAR",
    "dest_port": "VARCHAR",
    "proto": "VARCHAR",
    "dns": "JSON",
    **suricata_web.RAW_COLUMNS,
    **suricata_flow.RAW_COLUMNS,
}
_KEPT = ("dns", *suricata_web.EVENTS, *suricata_flow.EVENTS)


def sniff(head: bytes) -> bool:
    """True when the first line is a JSON object with EVE's `event_type` and `timestamp` keys.

    Zeek JSON has `ts` and no `event_type`, and Zeek TSV starts with `#separator`, so neither
    matches. A first line longer than the head cannot be parsed; its key names decide then.
    """
    stripped = head.lstrip()
    first, newline, _ = stripped.partition(b"\n")
    first = first.strip()
    if not first.startswith(b"{"):
        return False
    try:
        record = json.loads(first)
    except ValueError:
        if newline:
            return False
        return b'"event_type"' in first and b'"timestamp"' in first  # truncated first line
    return isinstance(record, dict) and "event_type" in record and "timestamp" in record


def read(
    path: Path, problems: Problems, options: ReadOptions = DEFAULT_OPTIONS
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Yield (table, batch) for one EVE file: dns (one row per transaction), http, tls, x509,
    conn (flow and netflow events), alert and files (fileinfo events).

    Lines that are not JSON objects with a usable `event_type` and `timestamp`, and events of
    these types without their object (or a flow without its start), are reported in `problems`
    with their line numbers; events of other types are skipped silently.
    """
    con = connect()
    reader = (
        f"read_json({lit(str(path))}, format='newline_delimited',"
        f" columns={{{', '.join(f'{lit(k)}: {lit(v)}' for k, v in _RAW_COLUMNS.items())}}},"
        f" compression={lit(compression(path))}, ignore_errors=true,"
        f" maximum_object_size={MAX_OBJECT})"
    )
    kept = ", ".join(lit(kind) for kind in _KEPT)
    # Only the imported event types and unusable lines (all-NULL rows from ignore_errors) are
    # kept, in file order: DuckDB preserves insertion order, so `rowid` is the order in the
    # file, which keeps version-1 dns answers in logged order (measured 1.6 s less per 500k
    # mixed lines than numbering them with row_number()).
    try:
        con.execute(
            f"CREATE TEMP TABLE ev AS SELECT * REPLACE ({suricata_web.PARSED},"
            f" {suricata_flow.PARSED}),"
            f" TRY_CAST(timestamp AS TIMESTAMPTZ) AS ts FROM {reader}"
            f" WHERE event_type IN ({kept}) OR event_type IS NULL OR ts IS NULL"
        )
        row = con.sql(
            "SELECT count(*) FROM ev WHERE event_type IS NULL OR ts IS NULL"
            f" OR NOT {suricata_web.USABLE} OR NOT ({suricata_flow.USABLE})"
        ).fetchone()
        bad = int(row[0]) if row else 0
        dns = (("dns", b) for b in con.sql(_DNS_SQL).to_arrow_reader(batch_size=BATCH_ROWS))
        for table, batch in chain(dns, suricata_web.batches(con), suricata_flow.batches(con)):
            if batch.num_rows:
                yield table, _conform(batch, table, path)
    except duckdb.Error as exc:
        raise MalformedInputError(path, None, f"unreadable as Suricata EVE JSON: {exc}") from exc
    finally:
        con.close()
    if bad:
        locate_bad_json(path, problems, bad, _eve_unusable, "record with an unparseable timestamp")


def _eve_unusable(record: object) -> str | None:
    if not isinstance(record, dict) or not isinstance(record.get("event_type"), str):
        return "record without an event_type"
    if record.get("timestamp") is None:
        return "record without a timestamp"
    return suricata_web.unusable(record) or suricata_flow.unusable(record)


def _conform(batch: pa.RecordBatch, table: str, path: Path) -> pa.RecordBatch:
    """Cast to the table's schema (columns the batch lacks are null) and add the provenance
    columns the way the Zeek reader does."""
    schema = schema_of(table)
    n = batch.num_rows
    names = set(batch.schema.names)
    columns = []
    for field in schema:
        if field.name == "source_file":
            columns.append(pa.repeat(pa.scalar(str(path), pa.string()), n))
        elif field.name in names and field.name != "sensor":
            columns.append(batch.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(n, field.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _code(name: str, codes: dict[str, int], numeric: str) -> str:
    """SQL: the number for a DNS name (`A` -> 1); Suricata's `TYPE123`-style names -> 123."""
    whens = " ".join(f"WHEN {lit(k)} THEN {v}" for k, v in codes.items())
    fallback = f"TRY_CAST(regexp_extract({name}, '^{numeric}(\\d+)$', 1) AS INTEGER)"
    return f"CASE upper({name}) {whens} ELSE {fallback} END"


def _flag(bit: int, name: str) -> str:
    """SQL: a header flag from the hex `flags` field, else from Suricata's boolean key."""
    return (
        f"CASE WHEN flags IS NOT NULL THEN (flags & {bit}) <> 0"
        f" ELSE TRY_CAST(dns->>'{name}' AS BOOLEAN) END AS {name}"
    )


# One row per (flow_id, dns id). q is the first query event, a the first answer event of any
# version, a2 the first grouped (version >= 2) answer; version-1 answers contribute one record
# per event, de-duplicated (duplicated packets log the same records twice).
_DNS_SQL = f"""
WITH e AS (
    SELECT n, ts, flow_id, coalesce(flow_id, 'line ' || n) AS fkey,
        src_ip, TRY_CAST(src_port AS INTEGER) AS src_port,
        dest_ip, TRY_CAST(dest_port AS INTEGER) AS dest_port, lower(proto) AS proto,
        CASE WHEN dns->>'type' IN ('query', 'request') THEN 'q'
             WHEN dns->>'type' IN ('answer', 'response') THEN 'a' END AS side,
        TRY_CAST(dns->>'version' AS INTEGER) AS version,
        TRY_CAST(dns->>'id' AS INTEGER) AS id,
        coalesce(dns->>'rrname', dns->'queries'->0->>'rrname') AS rrname,
        coalesce(dns->>'rrtype', dns->'queries'->0->>'rrtype') AS rrtype,
        dns->>'rcode' AS rcode,
        TRY_CAST('0x' || (dns->>'flags') AS INTEGER) AS flags,
        list_filter(
            list_transform(from_json(dns->'answers', '{_RECORDS}'),
                r -> {{'rrname': r.rrname, 'rrtype': r.rrtype, 'ttl': r.ttl,
                       'rdata': coalesce(r.rdata, r.soa.mname)}}),
            r -> r.rdata IS NOT NULL) AS records,
        dns->>'rdata' AS rdata, TRY_CAST(dns->>'ttl' AS DOUBLE) AS ttl,
        dns
    FROM (SELECT rowid AS n, * FROM ev) WHERE event_type = 'dns' AND ts IS NOT NULL
), f AS (
    SELECT * EXCLUDE (dns, flags), {_flag(_AA, "aa")}, {_flag(_TC, "tc")},
        {_flag(_RD, "rd")}, {_flag(_RA, "ra")},
        side = 'a' AND records IS NULL AND coalesce(version, 1) < 2 AS v1
    FROM e WHERE side IS NOT NULL
), v1 AS (
    SELECT fkey, id, list({{'rdata': rdata, 'ttl': ttl}} ORDER BY n) AS records
    FROM (SELECT fkey, id, rrname, rrtype, rdata, ttl, min(n) AS n FROM f
          WHERE v1 AND rdata IS NOT NULL GROUP BY ALL)
    GROUP BY fkey, id
), g AS (
    SELECT fkey, id,
        arg_min(f, (ts, n)) FILTER (WHERE side = 'q') AS q,
        arg_min(f, (ts, n)) FILTER (WHERE side = 'a') AS a,
        arg_min(f, (ts, n)) FILTER (WHERE side = 'a' AND NOT v1) AS a2
    FROM f GROUP BY fkey, id
), t AS (
    SELECT g.*,
        CASE WHEN a2 IS NOT NULL
             THEN list_transform(a2.records, r -> {{'rdata': r.rdata, 'ttl': r.ttl}})
             ELSE v1.records END AS records,
        coalesce(q.rrtype, a.rrtype) AS qtype_name,
        a.rcode AS rcode_name
    FROM g LEFT JOIN v1 USING (fkey, id)
)
SELECT
    coalesce(q.ts, a.ts) AS ts,
    coalesce(q.flow_id, a.flow_id) AS uid,
    CASE WHEN q IS NOT NULL THEN q.src_ip ELSE a.dest_ip END AS orig_ip,
    CASE WHEN q IS NOT NULL THEN q.src_port ELSE a.dest_port END AS orig_port,
    CASE WHEN q IS NOT NULL THEN q.dest_ip ELSE a.src_ip END AS resp_ip,
    CASE WHEN q IS NOT NULL THEN q.dest_port ELSE a.src_port END AS resp_port,
    coalesce(q.proto, a.proto) AS proto,
    id AS trans_id,
    CASE WHEN q IS NOT NULL AND a IS NOT NULL
         THEN (epoch_us(a.ts) - epoch_us(q.ts)) / 1e6 END AS rtt_s,
    lower(rtrim(coalesce(q.rrname, a.rrname), '.')) AS query,
    CAST(NULL AS INTEGER) AS qclass,
    CAST(NULL AS VARCHAR) AS qclass_name,
    {_code("qtype_name", QTYPES, "(?:TYPE)?")} AS qtype,
    qtype_name,
    {_code("rcode_name", RCODES, "(?:RCODE)?")} AS rcode,
    rcode_name,
    coalesce(a.aa, q.aa) AS aa,
    coalesce(a.tc, q.tc) AS tc,
    coalesce(a.rd, q.rd) AS rd,
    coalesce(a.ra, q.ra) AS ra,
    CASE WHEN len(records) > 0 THEN list_transform(records, r -> r.rdata) END AS answers,
    CASE WHEN len(records) > 0 THEN list_transform(records, r -> r.ttl) END AS ttls_s,
    CAST(NULL AS BOOLEAN) AS rejected
FROM t
ORDER BY ts, uid, trans_id
"""
