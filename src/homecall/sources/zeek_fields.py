"""Which Zeek field feeds which normalized column, declared once per Zeek log type.

A value is a tuple of alternatives, first present wins: Zeek renamed fields across versions
(`cert_chain_fuids` became `cert_chain_fps` in Zeek 5, files.log swapped `conn_uids`/`tx_hosts`
for `uid`/`id.*`). `name[1]` takes the first element of a set or vector field. The conversion
follows the normalized column's type in `homecall.store.schema`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ZEEK_LOGS", "ZeekLog", "log_for_fields", "log_for_path"]

_ENDPOINTS: dict[str, tuple[str, ...]] = {
    "ts": ("ts",),
    "uid": ("uid",),
    "orig_ip": ("id.orig_h",),
    "orig_port": ("id.orig_p",),
    "resp_ip": ("id.resp_h",),
    "resp_port": ("id.resp_p",),
}


_PROXY_ONLY = (
    "proxy",
    "proxy_action",
    "denied",
    "duration_s",
    "request_bytes",
    "response_bytes",
    "server_ip",
    "categories",
)


@dataclass(frozen=True, slots=True)
class ZeekLog:
    """A Zeek log type: its `#path` names, the table it feeds and the column sources."""

    paths: tuple[str, ...]
    table: str
    columns: dict[str, tuple[str, ...]]
    signature: frozenset[str]  # fields whose presence identifies the log when there is no #path


_CONN_COLUMNS: dict[str, tuple[str, ...]] = {
    **_ENDPOINTS,
    "proto": ("proto",),
    "service": ("service",),
    "duration_s": ("duration",),
    "orig_bytes": ("orig_bytes",),
    "resp_bytes": ("resp_bytes",),
    "conn_state": ("conn_state",),
    "history": ("history",),
    "orig_pkts": ("orig_pkts",),
    "resp_pkts": ("resp_pkts",),
    "orig_ip_bytes": ("orig_ip_bytes",),
    "resp_ip_bytes": ("resp_ip_bytes",),
    "missed_bytes": ("missed_bytes",),
    "local_orig": ("local_orig",),
    "local_resp": ("local_resp",),
}

ZEEK_LOGS: tuple[ZeekLog, ...] = (
    ZeekLog(
        paths=("conn",),
        table="conn",
        signature=frozenset({"conn_state", "orig_bytes"}),
        columns=_CONN_COLUMNS,
    ),
    # Interim records of connections still open (zeek-open-connections' open_conn.log, the
    # long-connections package's conn_long.log): never guessed from fields, they look like conn.
    ZeekLog(
        paths=("open_conn", "conn_long"),
        table="conn_open",
        signature=frozenset(),
        columns=_CONN_COLUMNS,
    ),
    ZeekLog(
        paths=("dns",),
        table="dns",
        signature=frozenset({"query", "qtype"}),
        columns={
            **_ENDPOINTS,
            "proto": ("proto",),
            "trans_id": ("trans_id",),
            "rtt_s": ("rtt",),
            "query": ("query",),
            "qclass": ("qclass",),
            "qclass_name": ("qclass_name",),
            "qtype": ("qtype",),
            "qtype_name": ("qtype_name",),
            "rcode": ("rcode",),
            "rcode_name": ("rcode_name",),
            "aa": ("AA",),
            "tc": ("TC",),
            "rd": ("RD",),
            "ra": ("RA",),
            "answers": ("answers",),
            "ttls_s": ("TTLs",),
            "rejected": ("rejected",),
        },
    ),
    ZeekLog(
        paths=("http",),
        table="http",
        signature=frozenset({"method", "uri"}),
        columns={
            **_ENDPOINTS,
            "trans_depth": ("trans_depth",),
            "method": ("method",),
            "host": ("host",),
            "uri": ("uri",),
            "referrer": ("referrer",),
            "version": ("version",),
            "user_agent": ("user_agent",),
            "origin": ("origin",),
            "request_body_len": ("request_body_len",),
            "response_body_len": ("response_body_len",),
            "status_code": ("status_code",),
            "status_msg": ("status_msg",),
            "username": ("username",),
            "proxied": ("proxied",),
            "orig_mime_types": ("orig_mime_types",),
            "resp_mime_types": ("resp_mime_types",),
            "orig_fuids": ("orig_fuids",),
            "resp_fuids": ("resp_fuids",),
            # what only proxy logs have
            **{c: () for c in _PROXY_ONLY},
        },
    ),
    ZeekLog(
        paths=("ssl",),
        table="tls",
        signature=frozenset({"cipher", "server_name"}),
        columns={
            **_ENDPOINTS,
            "version": ("version",),
            "cipher": ("cipher",),
            "curve": ("curve",),
            "server_name": ("server_name",),
            "resumed": ("resumed",),
            "established": ("established",),
            "next_protocol": ("next_protocol",),
            "last_alert": ("last_alert",),
            "ssl_history": ("ssl_history",),
            "ja3": ("ja3",),
            "ja3s": ("ja3s",),
            "ja4": ("ja4",),
            "ja4s": ("ja4s",),
            "cert_chain": ("cert_chain_fps", "cert_chain_fuids"),
            "client_cert_chain": ("client_cert_chain_fps", "client_cert_chain_fuids"),
            "subject": ("subject",),
            "issuer": ("issuer",),
            "validation_status": ("validation_status",),
            "sni_matches_cert": ("sni_matches_cert",),
        },
    ),
    ZeekLog(
        paths=("x509",),
        table="x509",
        signature=frozenset({"certificate.subject"}),
        columns={
            "ts": ("ts",),
            "cert_id": ("fingerprint", "id"),
            "version": ("certificate.version",),
            "serial": ("certificate.serial",),
            "subject": ("certificate.subject",),
            "issuer": ("certificate.issuer",),
            "not_valid_before": ("certificate.not_valid_before",),
            "not_valid_after": ("certificate.not_valid_after",),
            "key_alg": ("certificate.key_alg",),
            "sig_alg": ("certificate.sig_alg",),
            "key_type": ("certificate.key_type",),
            "key_length": ("certificate.key_length",),
            "san_dns": ("san.dns",),
            "san_ip": ("san.ip",),
            "is_ca": ("basic_constraints.ca",),
            "is_host_cert": ("host_cert",),
        },
    ),
    ZeekLog(
        paths=("smtp",),
        table="smtp",
        signature=frozenset({"helo", "mailfrom"}),
        columns={
            **_ENDPOINTS,
            "trans_depth": ("trans_depth",),
            "helo": ("helo",),
            "mail_from": ("mailfrom",),
            "rcpt_to": ("rcptto",),
            "date": ("date",),
            "from_header": ("from",),
            "to_header": ("to",),
            "cc_header": ("cc",),
            "reply_to": ("reply_to",),
            "msg_id": ("msg_id",),
            "in_reply_to": ("in_reply_to",),
            "subject": ("subject",),
            "x_originating_ip": ("x_originating_ip",),
            "first_received": ("first_received",),
            "second_received": ("second_received",),
            "last_reply": ("last_reply",),
            "path": ("path",),
            "user_agent": ("user_agent",),
            "tls": ("tls",),
            "fuids": ("fuids",),
            "is_webmail": ("is_webmail",),
        },
    ),
    ZeekLog(
        paths=("files",),
        table="files",
        signature=frozenset({"fuid", "seen_bytes"}),
        columns={
            "ts": ("ts",),
            "fuid": ("fuid",),
            "uid": ("uid", "conn_uids[1]"),
            "tx_ip": ("tx_hosts[1]", "<tx>"),
            "rx_ip": ("rx_hosts[1]", "<rx>"),
            "source": ("source",),
            "depth": ("depth",),
            "analyzers": ("analyzers",),
            "mime_type": ("mime_type",),
            "filename": ("filename",),
            "duration_s": ("duration",),
            "local_orig": ("local_orig",),
            "is_orig": ("is_orig",),
            "seen_bytes": ("seen_bytes",),
            "total_bytes": ("total_bytes",),
            "missing_bytes": ("missing_bytes",),
            "overflow_bytes": ("overflow_bytes",),
            "timedout": ("timedout",),
            "parent_fuid": ("parent_fuid",),
            "md5": ("md5",),
            "sha1": ("sha1",),
            "sha256": ("sha256",),
            "extracted": ("extracted",),
        },
    ),
    # Notices (Notice::Info): `note` is the kind, `msg` and `sub` say what and why. Notices
    # about a host rather than a connection have no id.*, only src/dst (and `p`, which Zeek
    # fills from id.resp_p when there is a connection).
    ZeekLog(
        paths=("notice",),
        table="alert",
        signature=frozenset({"note", "msg"}),
        columns={
            "ts": ("ts",),
            "uid": ("uid",),
            "orig_ip": ("<notice_orig_ip>", "id.orig_h", "src"),
            "orig_port": ("id.orig_p",),
            "resp_ip": ("<notice_resp_ip>", "id.resp_h", "dst"),
            "resp_port": ("<notice_resp_port>", "id.resp_p", "p"),
            "proto": ("proto",),
            "engine": ("<zeek>",),
            "signature": ("note",),
            "signature_id": (),
            "signature_rev": (),
            "category": (),
            "severity": (),
            "action": (),
            "app_proto": (),
            "message": ("<notice_message>", "msg"),
        },
    ),
)

# Columns computed from several fields, and the fields they need. Zeek >= 5 files.log: the
# sender is the originator when is_orig, else the responder.
DERIVED: dict[str, tuple[str, tuple[str, ...]]] = {
    "<tx>": (
        'CASE WHEN "is_orig" THEN "id.orig_h" ELSE "id.resp_h" END',
        ("is_orig", "id.orig_h", "id.resp_h"),
    ),
    "<rx>": (
        'CASE WHEN "is_orig" THEN "id.resp_h" ELSE "id.orig_h" END',
        ("is_orig", "id.orig_h", "id.resp_h"),
    ),
    # notice.log: a row's id.* when it has them, else the notice's own src, dst and p.
    "<notice_orig_ip>": ('coalesce("id.orig_h", "src")', ("id.orig_h", "src")),
    "<notice_resp_ip>": ('coalesce("id.resp_h", "dst")', ("id.resp_h", "dst")),
    "<notice_resp_port>": (
        'coalesce(TRY_CAST("id.resp_p" AS INTEGER), TRY_CAST("p" AS INTEGER))',
        ("id.resp_p", "p"),
    ),
    # msg, then " / " and sub when sub says something.
    "<notice_message>": (
        'CASE WHEN "sub" IS NULL OR "sub" = \'\' THEN "msg" WHEN "msg" IS NULL THEN "sub"'
        ' ELSE "msg" || \' / \' || "sub" END',
        ("msg", "sub"),
    ),
    "<zeek>": ("'zeek'", ()),  # the alert table's engine
}

_BY_PATH = {p: log for log in ZEEK_LOGS for p in log.paths}


def log_for_path(path: str) -> ZeekLog | None:
    """The log type for a `#path`/`_path` value such as "conn" or "ssl"; None if not imported."""
    return _BY_PATH.get(path)


def log_for_fields(fields: set[str]) -> ZeekLog | None:
    """Guess the log type from its field names when no `#path` or `_path` says it."""
    for log in ZEEK_LOGS:
        if log.signature and log.signature <= fields:
            return log
    return None
