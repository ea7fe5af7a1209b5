"""Squid access.log (native format, and the common and combined logformats) -> the http table.

Native lines are ``time elapsed client code/status bytes method URL ident hierarchy/peer type``
(https://wiki.squid-cache.org/Features/LogFormat; fields past the type are ignored); common and
combined are Apache's ``client ident user [dd/Mon/yyyy:HH:MM:SS +zzzz] "METHOD URL HTTP/x.y"
status bytes`` with combined's ``"referer" "user-agent"``, each optionally followed by Squid's
``code:hierarchy``. A record's uid is ``S`` + 10 hex digits of the SHA-256 of the file's path +
``-`` + its line number, so evidence leads back to the line. See docs/schema.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from homecall.sources.duck import connect, lit
from homecall.sources.options import DEFAULT_OPTIONS, ReadOptions
from homecall.sources.problems import Problems
from homecall.sources.proxy_logs import (
    NOT_BLANK,
    head_lines,
    http_batch,
    is_address,
    mime_list,
    numbered_lines,
    percent_decoded,
    request_target,
    uid_prefix,
    with_steps,
)

__all__ = ["FORMAT", "read", "sniff"]

FORMAT = "squid"
SNIFF_LINES = 20  # non-blank lines looked at; more than half must be Squid lines

# Native lines (tabs read as spaces), for Python's re (sniffing) and DuckDB's RE2 (a full
# match without groups runs as a DFA; the fields are then taken by splitting on spaces).
_NATIVE = (
    r" *[0-9]+(?:\.[0-9]+)? +-?[0-9]+ +[^ ]+ +[^ /]+/[0-9]+ +(?:-|[0-9]+) +[^ ]+ +[^ ]+ +[^ ]+"
    r" +[^ /]+/[^ ]+ +[^ ]+(?: .*)?"
)
_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_COMMON = (
    r"^([^ ]+) +([^ ]+) +([^ ]+) +\[([^\]]+)\] +\"([^ ]+) +([^ ]+)(?: +HTTP/([^\" ]+))?\" +"
    rf"([0-9]+) +(-|[0-9]+)(?: +{_QUOTED} +{_QUOTED})?(?: +([A-Z][A-Z_]*):([A-Z][A-Z_]*))? *$"
)
_COMMON_GROUPS = (
    "client", "ident", "user", "time", "method", "url", "version", "status", "size",
    "referrer", "user_agent", "code", "hier",
)  # fmt: skip
_NATIVE_RE = re.compile(_NATIVE)
_COMMON_RE = re.compile(_COMMON)
_PROXY_TARGET = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://|[^/ ]+:[0-9]+$)")


def sniff(head: bytes) -> bool:
    """True when most of the first lines are Squid native lines, or common/combined lines that
    a proxy wrote (a trailing ``code:hierarchy``, or an absolute or CONNECT request target)."""
    lines = head_lines(head, SNIFF_LINES)
    return sum(_is_squid_line(line) for line in lines) * 2 > len(lines)


def _is_squid_line(line: str) -> bool:
    line = line.replace("\t", " ")
    if _NATIVE_RE.fullmatch(line):
        return True
    common = _COMMON_RE.match(line)
    if common is None:
        return False
    return common[12] is not None or _PROXY_TARGET.match(common[6]) is not None


def read(
    path: Path, problems: Problems, options: ReadOptions = DEFAULT_OPTIONS
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Yield ("http", batch) for one Squid access.log; lines that are not Squid lines, or whose
    time cannot be read, go to `problems` with their line numbers."""
    del options  # epoch seconds, or a time with its offset: no zone to assume
    con = connect()
    sql = _sql(path)
    for chunk in numbered_lines(path):
        batch = http_batch(con, chunk, sql, path, problems)
        if batch is not None:
            yield "http", batch


# Squid names the requested URL only; nothing is split out for request_target
_NO_SPLIT = ", ".join(
    f"CAST(NULL AS VARCHAR) AS {name}"
    for name in ("host_field", "port_field", "scheme_field", "path_field", "query_field")
)
_NOT_LOGGED = "CAST(NULL AS VARCHAR)"


def _native_fields() -> str:
    """SQL over `native` (line, t: the tokens of a native line) -> the common columns."""
    # t: 1 time, 2 elapsed, 3 client, 4 code/status, 5 size, 6 method, 7 url, 8 user,
    # 9 hierarchy/peer, 10 type
    epoch_us = (
        "TRY_CAST(split_part(t[1], '.', 1) AS BIGINT) * 1000000"
        " + TRY_CAST(rpad(split_part(t[1], '.', 2), 6, '0')[:6] AS BIGINT)"
    )
    peer = "substr(t[9], strpos(t[9], '/') + 1)"
    return (
        f"SELECT line, true AS parsed, make_timestamp({epoch_us})::TIMESTAMPTZ AS ts,"
        " t[3] AS orig_ip, t[6] AS method, t[7] AS url, split_part(t[4], '/', 2) AS status,"
        " t[5] AS size, nullif(t[8], '-') AS _user, split_part(t[4], '/', 1) AS proxy_action,"
        " TRY_CAST(t[2] AS DOUBLE) / 1000 AS duration_s,"
        f" nullif({peer}, '-') AS _peer, nullif(t[10], '-') AS _mime,"
        f" {_NOT_LOGGED} AS version, {_NOT_LOGGED} AS referrer, {_NOT_LOGGED} AS user_agent"
        " FROM native"
    )


def _common_fields() -> str:
    """SQL over `common` (line, c: the groups of a common/combined line) -> the same columns."""
    unquoted = "nullif(nullif(replace(c.{}, '\\\"', '\"'), ''), '-')"
    return (
        "SELECT line, c.client <> '' AS parsed,"
        " try_strptime(c.time, '%d/%b/%Y:%H:%M:%S %z') AS ts, c.client AS orig_ip,"
        " c.method, c.url, c.status, c.size,"
        " nullif(coalesce(nullif(c.user, '-'), c.ident), '-') AS _user,"
        " nullif(c.code, '') AS proxy_action, CAST(NULL AS DOUBLE) AS duration_s,"
        f" {_NOT_LOGGED} AS _peer, {_NOT_LOGGED} AS _mime, nullif(c.version, '') AS version,"
        f" {unquoted.format('referrer')} AS referrer,"
        f" {unquoted.format('user_agent')} AS user_agent FROM common"
    )


def _sql(path: Path) -> str:
    """The query over `chunk` (line, text): one http record per Squid line."""
    text = "CASE WHEN contains(text, chr(9)) THEN replace(text, chr(9), ' ') ELSE text END"
    common = f"regexp_extract(text, {lit(_COMMON)}, {list(_COMMON_GROUPS)})"
    denied = (
        "CASE WHEN proxy_action IS NOT NULL THEN contains(proxy_action, 'DENIED')"
        " WHEN status_code = 407 THEN true END"  # 407 is the proxy's own answer
    )
    problem = (
        "CASE WHEN NOT parsed THEN"
        " 'not a Squid access.log line (native, common or combined format)'"
        " WHEN ts IS NULL THEN 'unreadable time' END"
    )
    steps = [
        ("lines", f"SELECT line, {text} AS text FROM chunk WHERE {NOT_BLANK}"),
        ("matched", f"SELECT *, regexp_full_match(text, {lit(_NATIVE)}) AS is_native FROM lines"),
        (
            "native",
            "SELECT line, list_filter(string_split(text, ' '), lambda x: x <> '') AS t"
            " FROM matched WHERE is_native",
        ),
        ("common", f"SELECT line, {common} AS c FROM matched WHERE NOT is_native"),
        (
            "fields",
            f"SELECT *, nullif(TRY_CAST(status AS INTEGER), 0) AS status_code,"  # 000: no reply
            " TRY_CAST(nullif(size, '-') AS BIGINT) AS response_bytes,"
            f" {_NO_SPLIT}, CAST(NULL AS VARCHAR) AS server_port"
            f" FROM ({_native_fields()} UNION ALL BY NAME {_common_fields()})",
        ),
        *request_target("fields"),
    ]
    return with_steps(
        steps,
        f"SELECT line, {problem} AS problem, ts,"
        f" {lit(uid_prefix('S', path))} || line AS uid, orig_ip, host AS resp_ip, resp_port,"
        " method, host, uri, referrer, version, user_agent, status_code,"
        f" {percent_decoded('_user')} AS username,"
        f" {mime_list('_mime')} AS resp_mime_types, 'squid' AS proxy, proxy_action,"
        f" {denied} AS denied, duration_s, response_bytes,"
        f" CASE WHEN {is_address('_peer')} THEN _peer END AS server_ip FROM target",
    )
