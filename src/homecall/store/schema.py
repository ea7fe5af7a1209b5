"""The normalized tables every reader writes and every detector reads (docs/schema.md).

One declaration per table. Times are UTC microseconds; `orig_*` is the side that opened the
connection and `resp_*` the side that answered (which of them is internal is decided at analysis
time from homecall.toml, so changing the internal networks needs no re-import). Every table ends
with the provenance columns `sensor` and `source_file`. Nulls stay null.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

__all__ = ["SCHEMAS", "TABLES", "TIMESTAMP", "Query", "schema_of"]

TIMESTAMP = pa.timestamp("us", tz="UTC")
_STRINGS = pa.list_(pa.string())

_ENDPOINTS: list[tuple[str, pa.DataType]] = [
    ("ts", TIMESTAMP),
    ("uid", pa.string()),
    ("orig_ip", pa.string()),
    ("orig_port", pa.int32()),
    ("resp_ip", pa.string()),
    ("resp_port", pa.int32()),
]
_PROVENANCE: list[tuple[str, pa.DataType]] = [
    ("sensor", pa.string()),
    ("source_file", pa.string()),
]


def _table(*columns: tuple[str, pa.DataType], endpoints: bool = True) -> pa.Schema:
    head = _ENDPOINTS if endpoints else []
    return pa.schema([*head, *columns, *_PROVENANCE])


_CONN: list[tuple[str, pa.DataType]] = [
    ("proto", pa.string()),
    ("service", pa.string()),
    ("duration_s", pa.float64()),
    ("orig_bytes", pa.int64()),
    ("resp_bytes", pa.int64()),
    ("conn_state", pa.string()),
    ("history", pa.string()),
    ("orig_pkts", pa.int64()),
    ("resp_pkts", pa.int64()),
    ("orig_ip_bytes", pa.int64()),
    ("resp_ip_bytes", pa.int64()),
    ("missed_bytes", pa.int64()),
    ("local_orig", pa.bool_()),
    ("local_resp", pa.bool_()),
]

SCHEMAS: dict[str, pa.Schema] = {
    "conn": _table(*_CONN),
    # Connections still open when the sensor wrote them (Zeek open_conn.log, conn_long.log):
    # interim records, read only by long-connection; conn.log has each once it closes.
    "conn_open": _table(*_CONN),
    "dns": _table(
        ("proto", pa.string()),
        ("trans_id", pa.int32()),
        ("rtt_s", pa.float64()),
        ("query", pa.string()),
        ("qclass", pa.int32()),
        ("qclass_name", pa.string()),
        ("qtype", pa.int32()),
        ("qtype_name", pa.string()),
        ("rcode", pa.int32()),
        ("rcode_name", pa.string()),
        ("aa", pa.bool_()),
        ("tc", pa.bool_()),
        ("rd", pa.bool_()),
        ("ra", pa.bool_()),
        ("answers", _STRINGS),
        ("ttls_s", pa.list_(pa.float64())),
        ("rejected", pa.bool_()),
    ),
    "http": _table(
        ("trans_depth", pa.int32()),
        ("method", pa.string()),
        ("host", pa.string()),
        ("uri", pa.string()),
        ("referrer", pa.string()),
        ("version", pa.string()),
        ("user_agent", pa.string()),
        ("origin", pa.string()),
        ("request_body_len", pa.int64()),
        ("response_body_len", pa.int64()),
        ("status_code", pa.int32()),
        ("status_msg", pa.string()),
        ("username", pa.string()),
        ("proxied", _STRINGS),
        ("orig_mime_types", _STRINGS),
        ("resp_mime_types", _STRINGS),
        ("orig_fuids", _STRINGS),
        ("resp_fuids", _STRINGS),
        # Proxy logs (Squid, W3C/Blue Coat) only; null in records seen on the wire.
        ("proxy", pa.string()),
        ("proxy_action", pa.string()),
        ("denied", pa.bool_()),
        ("duration_s", pa.float64()),
        ("request_bytes", pa.int64()),
        ("response_bytes", pa.int64()),
        ("server_ip", pa.string()),
        ("categories", _STRINGS),
    ),
    "tls": _table(
        ("version", pa.string()),
        ("cipher", pa.string()),
        ("curve", pa.string()),
        ("server_name", pa.string()),
        ("resumed", pa.bool_()),
        ("established", pa.bool_()),
        ("next_protocol", pa.string()),
        ("last_alert", pa.string()),
        ("ssl_history", pa.string()),
        ("ja3", pa.string()),
        ("ja3s", pa.string()),
        ("ja4", pa.string()),
        ("ja4s", pa.string()),
        ("cert_chain", _STRINGS),
        ("client_cert_chain", _STRINGS),
        ("subject", pa.string()),
        ("issuer", pa.string()),
        ("validation_status", pa.string()),
        ("sni_matches_cert", pa.bool_()),
    ),
    "x509": _table(
        ("ts", TIMESTAMP),
        ("cert_id", pa.string()),
        ("version", pa.int32()),
        ("serial", pa.string()),
        ("subject", pa.string()),
        ("issuer", pa.string()),
        ("not_valid_before", TIMESTAMP),
        ("not_valid_after", TIMESTAMP),
        ("key_alg", pa.string()),
        ("sig_alg", pa.string()),
        ("key_type", pa.string()),
        ("key_length", pa.int32()),
        ("san_dns", _STRINGS),
        ("san_ip", _STRINGS),
        ("is_ca", pa.bool_()),
        ("is_host_cert", pa.bool_()),
        endpoints=False,
    ),
    "smtp": _table(
        ("trans_depth", pa.int32()),
        ("helo", pa.string()),
        ("mail_from", pa.string()),
        ("rcpt_to", _STRINGS),
        ("date", pa.string()),
        ("from_header", pa.string()),
        ("to_header", _STRINGS),
        ("cc_header", _STRINGS),
        ("reply_to", pa.string()),
        ("msg_id", pa.string()),
        ("in_reply_to", pa.string()),
        ("subject", pa.string()),
        ("x_originating_ip", pa.string()),
        ("first_received", pa.string()),
        ("second_received", pa.string()),
        ("last_reply", pa.string()),
        ("path", _STRINGS),
        ("user_agent", pa.string()),
        ("tls", pa.bool_()),
        ("fuids", _STRINGS),
        ("is_webmail", pa.bool_()),
    ),
    "files": _table(
        ("ts", TIMESTAMP),
        ("fuid", pa.string()),
        ("uid", pa.string()),
        ("tx_ip", pa.string()),
        ("rx_ip", pa.string()),
        ("source", pa.string()),
        ("depth", pa.int32()),
        ("analyzers", _STRINGS),
        ("mime_type", pa.string()),
        ("filename", pa.string()),
        ("duration_s", pa.float64()),
        ("local_orig", pa.bool_()),
        ("is_orig", pa.bool_()),
        ("seen_bytes", pa.int64()),
        ("total_bytes", pa.int64()),
        ("missing_bytes", pa.int64()),
        ("overflow_bytes", pa.int64()),
        ("timedout", pa.bool_()),
        ("parent_fuid", pa.string()),
        ("md5", pa.string()),
        ("sha1", pa.string()),
        ("sha256", pa.string()),
        ("extracted", pa.string()),
        endpoints=False,
    ),
}

SCHEMAS.update(
    {
        # Allow and deny decisions of firewalls (iptables/netfilter, pfSense filterlog, Cisco ASA):
        # one row per logged packet or connection decision. `action` is "allow" or "deny" (drop,
        # reject and block are deny); the device's own words stay in `reason`.
        "firewall": _table(
            ("proto", pa.string()),
            ("action", pa.string()),
            ("reason", pa.string()),
            ("rule", pa.string()),
            ("direction", pa.string()),
            ("in_interface", pa.string()),
            ("out_interface", pa.string()),
            ("device", pa.string()),
            ("event_id", pa.string()),
            ("packet_length", pa.int32()),
            ("ttl", pa.int32()),
            ("tcp_flags", pa.string()),
            ("bytes", pa.int64()),
            ("duration_s", pa.float64()),
        ),
        # IDS alerts and notices (Suricata alert events, Zeek notice.log).
        "alert": _table(
            ("proto", pa.string()),
            ("engine", pa.string()),
            ("signature", pa.string()),
            ("signature_id", pa.int64()),
            ("signature_rev", pa.int32()),
            ("category", pa.string()),
            ("severity", pa.int32()),
            ("action", pa.string()),
            ("app_proto", pa.string()),
            ("message", pa.string()),
        ),
        # One row per IP packet of a capture (PCAP/pcapng): the flow it belongs to (uid and the
        # flow's orig/resp orientation), its direction, the header fields the covert-channel
        # detectors test, and where its record sits in the capture (`pcap_offset`, `caplen`) so
        # `homecall pcap search` can copy it out without rescanning. `source_file` is absolute.
        "packets": _table(
            ("proto", pa.string()),
            ("from_orig", pa.bool_()),
            ("ip_version", pa.int32()),
            ("ip_len", pa.int32()),
            ("payload_len", pa.int32()),
            ("ttl", pa.int32()),
            ("ip_id", pa.int32()),
            ("ip_flags", pa.int32()),
            ("tos", pa.int32()),
            ("tcp_flags", pa.int32()),
            ("tcp_reserved", pa.int32()),
            ("tcp_window", pa.int32()),
            ("urgent_ptr", pa.int32()),
            ("tcp_options", pa.string()),
            ("pcap_offset", pa.int64()),
            ("caplen", pa.int32()),
        ),
    }
)

TABLES: tuple[str, ...] = tuple(SCHEMAS)


def schema_of(table: str) -> pa.Schema:
    """The Arrow schema of `table`; ValueError for a name that is not a normalized table."""
    try:
        return SCHEMAS[table]
    except KeyError:
        raise ValueError(f"unknown table {table!r}; expected one of {TABLES}") from None


@dataclass(frozen=True, slots=True)
class Query:
    """What a DuckDB-based reader may yield instead of Arrow batches: SQL whose result has exactly
    the table's columns in order, with `ts` as TIMESTAMPTZ. The store runs it straight into
    Parquet on the reader's connection, so rows never cross into Python (the fast path).
    """

    connection: duckdb.DuckDBPyConnection
    sql: str

    def to_arrow(self) -> pa.Table:
        """Run the query into memory (tests and small inputs; imports use the COPY path)."""
        return self.connection.sql(self.sql).to_arrow_table()
