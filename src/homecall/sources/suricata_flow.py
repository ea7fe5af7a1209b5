"""Suricata EVE `flow`, `netflow`, `alert` and `fileinfo` events -> the conn, alert and files.

Helper of `sources/suricata.py`, which reads the file once into its `ev` table (`ts` already in
UTC); the queries here run on that table. A flow event is one conn row, as in Zeek's conn.log;
the two one-way netflow records of a flow are paired into one; an alert is one alert row and a
fileinfo event one files row. How EVE fields become Zeek's columns, the conn_state mapping
included, is in docs/schema.md ("Other sources of the conn, alert and files tables").
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pyarrow as pa

from homecall.sources.duck import lit

__all__ = ["EVENTS", "PARSED", "RAW_COLUMNS", "USABLE", "batches", "unusable"]

EVENTS = ("flow", "netflow", "alert", "fileinfo")
BATCH_ROWS = 1 << 17  # same Arrow batch size as the Zeek reader
RAW_COLUMNS = {
    "app_proto": "VARCHAR",
    "app_proto_orig": "VARCHAR",  # the protocol before a change (HTTP CONNECT, STARTTLS)
    "icmp_type": "VARCHAR",
    "icmp_code": "VARCHAR",
    "flow": "JSON",
    "tcp": "JSON",
    "netflow": "JSON",
    "alert": "JSON",
    "fileinfo": "JSON",
}
# Parsed while the file is read, as in suricata_web: every leaf VARCHAR, cast later.
_FLOW = (
    '{"pkts_toserver": "VARCHAR", "pkts_toclient": "VARCHAR", "bytes_toserver": "VARCHAR",'
    ' "bytes_toclient": "VARCHAR", "start": "VARCHAR", "end": "VARCHAR", "state": "VARCHAR",'
    ' "src_ip": "VARCHAR", "dest_ip": "VARCHAR", "src_port": "VARCHAR", "dest_port": "VARCHAR"}'
)
_TCP = '{"tcp_flags": "VARCHAR", "tcp_flags_ts": "VARCHAR", "tcp_flags_tc": "VARCHAR"}'
_NETFLOW = '{"pkts": "VARCHAR", "bytes": "VARCHAR", "start": "VARCHAR", "end": "VARCHAR"}'
_ALERT = (
    '{"action": "VARCHAR", "signature_id": "VARCHAR", "rev": "VARCHAR", "signature": "VARCHAR",'
    ' "category": "VARCHAR", "severity": "VARCHAR"}'
)
_FILEINFO = (
    '{"filename": "VARCHAR", "magic": "VARCHAR", "state": "VARCHAR", "gaps": "VARCHAR",'
    ' "stored": "VARCHAR", "file_id": "VARCHAR", "size": "VARCHAR", "tx_id": "VARCHAR",'
    ' "md5": "VARCHAR", "sha1": "VARCHAR", "sha256": "VARCHAR"}'
)
# SQL for `SELECT * REPLACE (...)` over read_json: the objects as STRUCTs, null when absent.
PARSED = ", ".join(
    f"CASE WHEN json_type({kind}) = 'OBJECT' THEN from_json({kind}, {lit(spec)}) END AS {kind}"
    for kind, spec in (
        ("flow", _FLOW),
        ("tcp", _TCP),
        ("netflow", _NETFLOW),
        ("alert", _ALERT),
        ("fileinfo", _FILEINFO),
    )
)
# SQL over `ev`: false for an event of these types that cannot be stored (a bad line).
USABLE = (
    "CASE event_type"
    " WHEN 'flow' THEN TRY_CAST(flow.start AS TIMESTAMPTZ) IS NOT NULL"
    " WHEN 'netflow' THEN TRY_CAST(netflow.start AS TIMESTAMPTZ) IS NOT NULL"
    " WHEN 'alert' THEN alert IS NOT NULL"
    " WHEN 'fileinfo' THEN fileinfo IS NOT NULL"
    " ELSE true END"
)

# Suricata's app_proto names that Zeek spells differently in conn.log's `service`; the others
# (dns, http, smtp, ftp, ftp-data, ssh, imap, pop3, smb, dhcp, ntp, snmp, sip, rdp, ...) agree.
_SERVICES = {"tls": "ssl", "http1": "http", "dcerpc": "dce_rpc"}
_NO_SERVICE = ("failed", "unknown")  # detection gave up, or never ran
# TCP flag bits in Suricata's hex `tcp_flags*` fields.
_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10


def unusable(record: dict[str, object]) -> str | None:
    """Why a flow, netflow, alert or fileinfo event cannot be stored (USABLE's Python side)."""
    kind = record.get("event_type")
    if kind not in EVENTS:
        return None
    body = record.get(kind)
    if not isinstance(body, dict):
        return f"{kind} event without its {kind} object"
    if kind in ("flow", "netflow") and not isinstance(body.get("start"), str):
        return f"{kind} event without {kind}.start"
    return None


def batches(con: duckdb.DuckDBPyConnection) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Yield (table, batch) for the conn, alert and files tables from the `ev` table.

    Batches carry only the columns the events fill; the caller adds the others as nulls.
    """
    for table, sql in (
        ("conn", _FLOW_SQL),
        ("conn", _NETFLOW_SQL),
        ("alert", _ALERT_SQL),
        ("files", _FILES_SQL),
    ):
        for batch in con.sql(sql).to_arrow_reader(batch_size=BATCH_ROWS):
            if batch.num_rows:
                yield table, batch


# Zeek's `proto`: Suricata writes TCP, UDP, ICMP, IPv6-ICMP, SCTP, ...; Zeek's icmp covers both.
_PROTO = "CASE WHEN upper(proto) = 'IPV6-ICMP' THEN 'icmp' ELSE lower(proto) END"


def _service(app: str, proto: str) -> str:
    """SQL: a Suricata app_proto name as Zeek names the service (krb5 by transport)."""
    low = f"lower({app})"
    none = ", ".join(map(lit, _NO_SERVICE))
    renamed = " ".join(f"WHEN {low} = {lit(k)} THEN {lit(v)}" for k, v in _SERVICES.items())
    krb = f"CASE WHEN {proto} = 'tcp' THEN 'krb_tcp' ELSE 'krb' END"
    return (
        f"CASE WHEN {low} IN ({none}) THEN NULL {renamed}"
        f" WHEN {low} = 'krb5' THEN {krb} ELSE {low} END"
    )


def _services(app: str, before: str, proto: str) -> str:
    """SQL: Zeek's comma-separated `service` from the protocol before a change and after it."""
    now, then = _service(app, proto), _service(before, proto)
    return (
        f"CASE WHEN ({then}) IS NULL OR ({then}) = ({now}) THEN {now}"
        f" WHEN ({now}) IS NULL THEN {then} ELSE ({then}) || ',' || ({now}) END"
    )


def _has(flags: str, bit: int) -> str:
    return f"({flags} & {bit}) <> 0"


def _conn_state(proto: str, orig: str, resp: str, orig_pkts: str, resp_pkts: str) -> str:
    """SQL: Zeek's conn_state from each side's OR-ed TCP flags (`orig`, `resp`), or for UDP from
    which sides sent packets; null when the flags were not logged. Zeek's own rules, with
    "sent a SYN" standing for Zeek's "not inactive" (docs/schema.md has the table)."""
    o_syn, o_fin, o_rst, o_ack = (_has(orig, b) for b in (_SYN, _FIN, _RST, _ACK))
    r_syn, r_fin, r_rst = (_has(resp, b) for b in (_SYN, _FIN, _RST))
    tcp = f"""CASE WHEN {orig} IS NULL OR {resp} IS NULL THEN NULL
        WHEN {r_rst} THEN CASE WHEN {o_syn} AND NOT {r_syn} THEN 'REJ'
                               WHEN NOT {o_syn} THEN 'RSTRH' ELSE 'RSTR' END
        WHEN {o_rst} THEN CASE WHEN {r_syn} THEN 'RSTO' WHEN {o_syn} THEN 'RSTOS0' ELSE 'OTH' END
        WHEN {o_fin} AND {r_fin} THEN 'SF'
        WHEN {o_fin} THEN CASE WHEN {r_syn} THEN 'S2' ELSE 'SH' END
        WHEN {r_fin} THEN CASE WHEN {o_syn} THEN 'S3' ELSE 'SHR' END
        WHEN {o_syn} AND {resp} = 0 THEN 'S0'
        WHEN {o_syn} AND {o_ack} AND {r_syn} THEN 'S1'
        ELSE 'OTH' END"""
    udp = f"""CASE WHEN {orig_pkts} IS NULL OR {resp_pkts} IS NULL THEN NULL
        WHEN {orig_pkts} > 0 AND {resp_pkts} > 0 THEN 'SF' WHEN {orig_pkts} > 0 THEN 'S0'
        WHEN {resp_pkts} > 0 THEN 'SHR' ELSE 'OTH' END"""
    return (
        f"CASE {proto} WHEN 'tcp' THEN {tcp} WHEN 'udp' THEN {udp}"
        f" ELSE CASE WHEN {proto} IS NOT NULL THEN 'OTH' END END"
    )


def _duration(start: str, end: str) -> str:
    """SQL: seconds from start to end; null when the end is missing or before the start."""
    return f"CASE WHEN {end} >= {start} THEN (epoch_us({end}) - epoch_us({start})) / 1e6 END"


def _hex(flags: str) -> str:
    return f"TRY_CAST('0x' || {flags} AS INTEGER)"


# ICMP has no ports: like Zeek, orig_port is the ICMP type and resp_port the code.
_PORTS = """
    coalesce(TRY_CAST(src_port AS INTEGER), TRY_CAST(icmp_type AS INTEGER)) AS src_port,
    coalesce(TRY_CAST(dest_port AS INTEGER), TRY_CAST(icmp_code AS INTEGER)) AS dest_port"""

# One row per flow event, oriented as Suricata logs it (src = the sender of the first packet).
_FLOW_SQL = f"""
WITH f AS (
    SELECT flow_id AS uid, src_ip, dest_ip, {_PORTS}, {_PROTO} AS proto, app_proto,
        app_proto_orig,
        TRY_CAST(flow.start AS TIMESTAMPTZ) AS t0, TRY_CAST(flow."end" AS TIMESTAMPTZ) AS t1,
        TRY_CAST(flow.pkts_toserver AS BIGINT) AS orig_pkts,
        TRY_CAST(flow.pkts_toclient AS BIGINT) AS resp_pkts,
        TRY_CAST(flow.bytes_toserver AS BIGINT) AS orig_ip_bytes,
        TRY_CAST(flow.bytes_toclient AS BIGINT) AS resp_ip_bytes,
        {_hex("tcp.tcp_flags_ts")} AS o, {_hex("tcp.tcp_flags_tc")} AS r,
        flow.state = 'bypassed' AS bypassed
    FROM ev WHERE event_type = 'flow' AND ts IS NOT NULL
)
SELECT t0 AS ts, uid, src_ip AS orig_ip, src_port AS orig_port, dest_ip AS resp_ip,
    dest_port AS resp_port, proto,
    {_services("app_proto", "app_proto_orig", "proto")} AS service,
    {_duration("t0", "t1")} AS duration_s,
    CASE WHEN NOT coalesce(bypassed, false)
         THEN {_conn_state("proto", "o", "r", "orig_pkts", "resp_pkts")} END AS conn_state,
    orig_pkts, resp_pkts, orig_ip_bytes, resp_ip_bytes
FROM f WHERE t0 IS NOT NULL
"""

# The to-server record of a flow comes first and the to-client record (written only when the
# server sent packets) next, its endpoints swapped. Flows that also have a flow event in the
# file are left to it.
_NETFLOW_SQL = f"""
WITH h AS (
    SELECT rowid AS n, coalesce(flow_id, 'row ' || rowid) AS fkey, flow_id, src_ip, dest_ip,
        {_PORTS}, {_PROTO} AS proto, app_proto,
        TRY_CAST(netflow.start AS TIMESTAMPTZ) AS t0,
        TRY_CAST(netflow."end" AS TIMESTAMPTZ) AS t1,
        TRY_CAST(netflow.pkts AS BIGINT) AS pkts, TRY_CAST(netflow.bytes AS BIGINT) AS bytes,
        {_hex("tcp.tcp_flags")} AS flags
    FROM ev WHERE event_type = 'netflow' AND ts IS NOT NULL
        AND TRY_CAST(netflow.start AS TIMESTAMPTZ) IS NOT NULL
), k AS (
    SELECT *, row_number() OVER (PARTITION BY fkey ORDER BY n) AS k FROM h
    WHERE fkey NOT IN (SELECT flow_id FROM ev WHERE event_type = 'flow' AND flow_id IS NOT NULL)
), p AS (
    SELECT a.*, b.pkts AS resp_pkts_logged, b.bytes AS resp_bytes_logged,
        b.flags AS resp_flags, b.app_proto AS resp_app_proto, b.n IS NOT NULL AS answered
    FROM (SELECT * FROM k WHERE k = 1) a
    LEFT JOIN (SELECT * FROM k WHERE k = 2) b
        ON a.fkey = b.fkey AND b.src_ip = a.dest_ip AND b.dest_ip = a.src_ip
        AND b.src_port IS NOT DISTINCT FROM a.dest_port
)
SELECT t0 AS ts, flow_id AS uid, src_ip AS orig_ip, src_port AS orig_port, dest_ip AS resp_ip,
    dest_port AS resp_port, proto,
    {_service("coalesce(app_proto, resp_app_proto)", "proto")} AS service,
    {_duration("t0", "t1")} AS duration_s,
    {_conn_state("proto", "flags", "coalesce(resp_flags, 0)", "pkts", "resp_pkts")} AS conn_state,
    pkts AS orig_pkts, resp_pkts, bytes AS orig_ip_bytes, resp_ip_bytes
FROM (SELECT *, CASE WHEN answered THEN resp_pkts_logged ELSE 0 END AS resp_pkts,
             CASE WHEN answered THEN resp_bytes_logged ELSE 0 END AS resp_ip_bytes FROM p)
"""

# Alerts are logged in the direction of the packet that matched; Suricata 7 adds the flow's own
# endpoints (flow.src_ip, ...) and "direction", which orient the row like the flow.
_ALERT_SQL = f"""
SELECT ts, flow_id AS uid,
    coalesce(flow.src_ip, CASE WHEN direction = 'to_client' THEN dest_ip ELSE src_ip END)
        AS orig_ip,
    coalesce(TRY_CAST(flow.src_port AS INTEGER),
             TRY_CAST(CASE WHEN direction = 'to_client' THEN dest_port ELSE src_port END
                      AS INTEGER)) AS orig_port,
    coalesce(flow.dest_ip, CASE WHEN direction = 'to_client' THEN src_ip ELSE dest_ip END)
        AS resp_ip,
    coalesce(TRY_CAST(flow.dest_port AS INTEGER),
             TRY_CAST(CASE WHEN direction = 'to_client' THEN src_port ELSE dest_port END
                      AS INTEGER)) AS resp_port,
    {_PROTO} AS proto,
    'suricata' AS engine,
    alert.signature AS signature,
    TRY_CAST(alert.signature_id AS BIGINT) AS signature_id,
    TRY_CAST(alert.rev AS INTEGER) AS signature_rev,
    alert.category AS category,
    TRY_CAST(alert.severity AS INTEGER) AS severity,
    alert.action AS action,
    app_proto
FROM ev WHERE event_type = 'alert' AND ts IS NOT NULL AND alert IS NOT NULL
"""

# fileinfo events are logged in the file's direction: src is the sender. Whether the sender
# opened the connection comes from "direction" (Suricata 7) or from the flow event of the same
# flow in the file. Suricata's file_id counts stored files per run, so it is no fuid.
_FILES_SQL = f"""
WITH e AS (
    SELECT rowid AS n, ts, flow_id, src_ip, dest_ip, TRY_CAST(src_port AS INTEGER) AS src_port,
        direction, lower(app_proto) AS app, fileinfo AS fi
    FROM ev WHERE event_type = 'fileinfo' AND ts IS NOT NULL AND fileinfo IS NOT NULL
), o AS (
    SELECT flow_id, first(src_ip) AS flow_src_ip,
        first(TRY_CAST(src_port AS INTEGER)) AS flow_src_port
    FROM ev WHERE event_type = 'flow' AND flow_id IN (SELECT flow_id FROM e)
    GROUP BY flow_id
)
SELECT ts,
    'F' || coalesce(flow_id, '') || '-' || coalesce(fi.tx_id, '') || '-'
        || row_number() OVER (PARTITION BY flow_id, fi.tx_id ORDER BY n) AS fuid,
    flow_id AS uid, src_ip AS tx_ip, dest_ip AS rx_ip,
    CASE WHEN app NOT IN ({", ".join(map(lit, _NO_SERVICE))})
         THEN upper(replace(app, '-', '_')) END AS source,
    CASE WHEN app IN ('http', 'http1') THEN TRY_CAST(fi.tx_id AS INTEGER) + 1 END AS depth,
    fi.magic AS mime_type,
    fi.filename AS filename,
    CASE WHEN direction = 'to_server' THEN true WHEN direction = 'to_client' THEN false
         WHEN flow_src_ip IS NOT NULL
         THEN src_ip = flow_src_ip AND src_port IS NOT DISTINCT FROM flow_src_port END AS is_orig,
    TRY_CAST(fi.size AS BIGINT) AS seen_bytes,
    CASE WHEN fi.state = 'CLOSED' AND NOT coalesce(TRY_CAST(fi.gaps AS BOOLEAN), true)
         THEN TRY_CAST(fi.size AS BIGINT) END AS total_bytes,
    fi.md5 AS md5, fi.sha1 AS sha1, fi.sha256 AS sha256,
    CASE WHEN TRY_CAST(fi.stored AS BOOLEAN)
         THEN coalesce(fi.sha256, 'file.' || fi.file_id) END AS extracted
FROM e LEFT JOIN o USING (flow_id)
"""
