"""Suricata EVE `http` and `tls` events -> the http, tls and x509 tables.

Helper of `sources/suricata.py`, which reads the file once into its `ev` table (one row per
dns, http or tls event, `ts` already in UTC); the queries here run on that table. Each event
is one row, as in Zeek's http.log and ssl.log; the server certificate (and a client
certificate, when logged) becomes an x509 row keyed by its SHA-1 fingerprint, so the
analysis-time join by `cert_chain[0]` gives the tls rows their `cert_*` columns.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from homecall.sources.duck import lit

__all__ = ["EVENTS", "PARSED", "RAW_COLUMNS", "USABLE", "batches", "tls_version", "unusable"]

EVENTS = ("http", "tls")
BATCH_ROWS = 1 << 17  # same Arrow batch size as the Zeek reader
RAW_COLUMNS = {
    "tx_id": "VARCHAR",
    "direction": "VARCHAR",  # "to_client": src_ip/src_port are the server's (LOG_DIR_FLOW_TOCLIENT)
    "http": "JSON",
    "tls": "JSON",
}
# Parsed once, while the file is read, with from_json: every leaf is VARCHAR (numbers and other
# JSON types convert; casts come later), and a mismatched object or list becomes null. Measured
# on 500k lines: faster than declaring these STRUCTs in read_json.
_HEADERS = '[{"name": "VARCHAR", "value": "VARCHAR"}]'
_HTTP = (
    '{"hostname": "VARCHAR", "http_port": "VARCHAR", "url": "VARCHAR",'
    ' "http_user_agent": "VARCHAR", "http_method": "VARCHAR", "protocol": "VARCHAR",'
    ' "status": "VARCHAR", "length": "VARCHAR", "http_refer": "VARCHAR",'
    ' "http_referer": "VARCHAR", "http_content_type": "VARCHAR", "xff": "VARCHAR",'
    f' "request_headers": {_HEADERS}}}'
)
_CERT = (
    '"subject": "VARCHAR", "issuerdn": "VARCHAR", "serial": "VARCHAR",'
    ' "fingerprint": "VARCHAR", "notbefore": "VARCHAR", "notafter": "VARCHAR"'
)
_TLS = (
    f'{{{_CERT}, "sni": "VARCHAR", "version": "VARCHAR", "session_resumed": "VARCHAR",'
    ' "ja3": {"hash": "VARCHAR"}, "ja3s": {"hash": "VARCHAR"}, "ja4": "VARCHAR",'
    f' "server_alpns": ["VARCHAR"], "subjectaltname": ["VARCHAR"], "client": {{{_CERT}}}}}'
)
# SQL for `SELECT * REPLACE (...)` over read_json: the http and tls objects as STRUCTs; null
# when the event has no object there.
PARSED = ", ".join(
    f"CASE WHEN json_type({kind}) = 'OBJECT' THEN from_json({kind}, {lit(spec)}) END AS {kind}"
    for kind, spec in (("http", _HTTP), ("tls", _TLS))
)
# SQL over `ev`: false for an http or tls event without its object (reported as a bad line).
USABLE = (
    "((event_type = 'http' AND http IS NOT NULL) OR (event_type = 'tls' AND tls IS NOT NULL)"
    " OR event_type NOT IN ('http', 'tls'))"
)

# Zeek's HTTP::proxy_headers, logged in `proxied` as "NAME -> value".
_PROXY_HEADERS = (
    "FORWARDED",
    "X-FORWARDED-FOR",
    "X-FORWARDED-FROM",
    "CLIENT-IP",
    "VIA",
    "XROXY-CONNECTION",
    "PROXY-CONNECTION",
)


def unusable(record: dict[str, object]) -> str | None:
    """Why an http or tls event cannot be stored (the Python side of USABLE), else None."""
    kind = record.get("event_type")
    if kind in EVENTS and not isinstance(record.get(kind), dict):
        return f"{kind} event without its {kind} object"
    return None


def batches(con: duckdb.DuckDBPyConnection) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Yield (table, batch) for the http, tls and x509 tables from the `ev` table.

    Batches carry only the columns the events fill; the caller adds the others as nulls.
    """
    for table, sql in (("http", _HTTP_SQL), ("tls", _TLS_SQL), ("x509", _X509_SQL)):
        for batch in con.sql(sql).to_arrow_reader(batch_size=BATCH_ROWS):
            if batch.num_rows:
                yield table, _with_zeek_versions(batch) if table == "tls" else batch


def _header(name: str) -> str:
    """SQL: the first value of request header `name` (only with Suricata's dump-all-headers)."""
    return f"list_filter(h.request_headers, x -> upper(x.name) = {lit(name.upper())})[1].value"


# Suricata logs http and tls transactions in flow direction (src = the client) unless it says
# "direction": "to_client".
_ENDPOINTS = """
    ts, flow_id AS uid,
    CASE WHEN direction = 'to_client' THEN dest_ip ELSE src_ip END AS orig_ip,
    TRY_CAST(CASE WHEN direction = 'to_client' THEN dest_port ELSE src_port END AS INTEGER)
        AS orig_port,
    CASE WHEN direction = 'to_client' THEN src_ip ELSE dest_ip END AS resp_ip,
    TRY_CAST(CASE WHEN direction = 'to_client' THEN src_port ELSE dest_port END AS INTEGER)
        AS resp_port"""

_PROXIED = f"""list_transform(
        list_filter(h.request_headers,
                    x -> upper(x.name) IN ({", ".join(map(lit, _PROXY_HEADERS))})),
        x -> upper(x.name) || ' -> ' || x.value)"""

_HTTP_SQL = f"""
WITH e AS (
    SELECT {_ENDPOINTS}, TRY_CAST(tx_id AS BIGINT) AS tx_id, http AS h
    FROM ev WHERE event_type = 'http' AND ts IS NOT NULL AND http IS NOT NULL
), p AS (
    SELECT *, TRY_CAST(h.http_port AS INTEGER) AS http_port, {_PROXIED} AS proxied FROM e
)
SELECT ts, uid, orig_ip, orig_port, resp_ip, resp_port,
    CAST(tx_id + 1 AS INTEGER) AS trans_depth,
    h.http_method AS method,
    CASE WHEN http_port IS NOT NULL AND http_port IS DISTINCT FROM resp_port
         THEN CASE WHEN contains(h.hostname, ':') THEN '[' || h.hostname || ']'
                   ELSE h.hostname END || ':' || http_port
         ELSE h.hostname END AS host,
    h.url AS uri,
    coalesce(h.http_refer, h.http_referer, {_header("referer")}) AS referrer,
    regexp_replace(h.protocol, '^HTTP/', '', 'i') AS version,
    coalesce(h.http_user_agent, {_header("user-agent")}) AS user_agent,
    {_header("origin")} AS origin,
    TRY_CAST(h.length AS BIGINT) AS response_body_len,
    TRY_CAST(h.status AS INTEGER) AS status_code,
    CASE WHEN len(proxied) > 0 THEN proxied
         WHEN h.xff IS NOT NULL THEN ['X-FORWARDED-FOR -> ' || h.xff] END AS proxied,
    CASE WHEN h.http_content_type IS NOT NULL THEN [h.http_content_type] END AS resp_mime_types
FROM p
"""

# One parsed row per tls event, for both the tls and the x509 queries.
_TLS_EVENTS = f"""
    SELECT {_ENDPOINTS}, tls AS t
    FROM ev WHERE event_type = 'tls' AND ts IS NOT NULL AND tls IS NOT NULL
"""


def _cert_id(fingerprint: str) -> str:
    """SQL: Suricata's "2d:d1:9f:..." SHA-1 fingerprint as a cert_id, "2dd19f..."."""
    return f"nullif(lower(replace({fingerprint}, ':', '')), '')"


_TLS_SQL = f"""
SELECT ts, uid, orig_ip, orig_port, resp_ip, resp_port,
    t.version AS version,
    t.sni AS server_name,
    CASE WHEN TRY_CAST(t.session_resumed AS BOOLEAN) THEN true
         WHEN t.subject IS NOT NULL OR t.fingerprint IS NOT NULL THEN false END AS resumed,
    t.server_alpns[1] AS next_protocol,
    t.ja3.hash AS ja3,
    t.ja3s.hash AS ja3s,
    t.ja4 AS ja4,
    CASE WHEN {_cert_id("t.fingerprint")} IS NOT NULL
         THEN [{_cert_id("t.fingerprint")}] END AS cert_chain,
    CASE WHEN {_cert_id("t.client.fingerprint")} IS NOT NULL
         THEN [{_cert_id("t.client.fingerprint")}] END AS client_cert_chain,
    t.subject AS subject,
    t.issuerdn AS issuer
FROM ({_TLS_EVENTS})
"""

# One row per certificate and UTC day (the store's partition), so that an analysis window
# holding a day's sessions also holds their certificates. Serials lose Suricata's colons and
# are upper case, as Zeek writes them; notbefore/notafter are UTC without a zone.
_X509_SQL = f"""
WITH c AS (
    SELECT ts, t.subject, t.issuerdn, t.serial, t.fingerprint, t.notbefore, t.notafter,
        t.subjectaltname AS san FROM ({_TLS_EVENTS})
    UNION ALL
    SELECT ts, t.client.subject, t.client.issuerdn, t.client.serial, t.client.fingerprint,
        t.client.notbefore, t.client.notafter, NULL FROM ({_TLS_EVENTS})
), k AS (
    SELECT *, {_cert_id("fingerprint")} AS cert_id FROM c
)
SELECT min(ts) AS ts, cert_id,
    arg_min(upper(replace(serial, ':', '')), ts) AS serial,
    arg_min(subject, ts) AS subject,
    arg_min(issuerdn, ts) AS issuer,
    arg_min(TRY_CAST(notbefore AS TIMESTAMPTZ), ts) AS not_valid_before,
    arg_min(TRY_CAST(notafter AS TIMESTAMPTZ), ts) AS not_valid_after,
    arg_min(san, ts) AS san_dns,
    true AS is_host_cert
FROM k WHERE cert_id IS NOT NULL
GROUP BY cert_id, CAST(ts AS DATE)
ORDER BY ts, cert_id
"""

# ------------------------------------------------------------------ TLS version names

_ZEEK_VERSIONS = {
    0x0002: "SSLv2",
    0x0200: "SSLv2",
    0x0300: "SSLv3",
    0x0301: "TLSv10",
    0x0302: "TLSv11",
    0x0303: "TLSv12",
    0x0304: "TLSv13",
    0xFEFF: "DTLSv10",
    0xFEFD: "DTLSv12",
    0xFEFC: "DTLSv13",
}
_NAMED = re.compile(
    r"^(?P<kind>DTLS|TLS|SSL)\s*v?(?P<major>\d)(?:\.(?P<minor>\d))?"
    r"(?:\s*draft[-\s]?(?P<draft>\d+))?$",
    re.IGNORECASE,
)


def tls_version(text: str | None) -> str | None:
    """Suricata's TLS version name as Zeek spells it: "TLS 1.2" -> "TLSv12", "TLSv1" -> "TLSv10".

    "SSLv3" stays, "TLS 1.3 draft-28" -> "TLSv13-draft28", a hex code such as "0x7f1c" is
    named as Zeek names it ("TLSv13-draft28", "unknown-<decimal>"), "UNDETERMINED" -> None;
    anything else is kept as logged.
    """
    if text is None:
        return None
    raw = text.strip()
    if not raw or raw.upper() == "UNDETERMINED":
        return None
    if raw.lower().startswith("0x"):
        try:
            code = int(raw, 16)
        except ValueError:
            return raw
        if code >> 8 == 0x7F:
            return f"TLSv13-draft{code & 0xFF}"
        return _ZEEK_VERSIONS.get(code, f"unknown-{code}")
    match = _NAMED.match(raw)
    if match is None:
        return raw
    kind, major, minor, draft = match.group("kind", "major", "minor", "draft")
    kind = kind.upper()
    name = f"SSLv{major}" if kind == "SSL" else f"{kind}v{major}{minor or '0'}"
    return f"{name}-draft{int(draft)}" if draft else name


def _with_zeek_versions(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Rename the `version` column's values with tls_version (a handful of distinct names)."""
    index = batch.schema.get_field_index("version")
    encoded = pc.dictionary_encode(batch.column(index).cast(pa.string()))
    names = pa.array([tls_version(v) for v in encoded.dictionary.to_pylist()], pa.string())
    renamed = pc.take(names, encoded.indices)
    return batch.set_column(index, "version", renamed)
