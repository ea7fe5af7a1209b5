"""What the proxy-log readers (Squid, W3C) share: numbered line chunks, the SQL that turns a
requested URL into host, port and origin-form uri, the record uids, and the http batches.

Files are read in large text chunks (gzip recognised by content), split into numbered lines by
Arrow and parsed by DuckDB over each chunk (string functions, and regular expressions without
capture groups where possible: groups make RE2 several times slower). Columnar speed, and every
record keeps its line number for its uid and for bad-line reports.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from homecall.sources.duck import lit
from homecall.sources.fileio import open_text
from homecall.sources.problems import Problems
from homecall.store.schema import schema_of

__all__ = [
    "CHUNK_CHARS",
    "NOT_BLANK",
    "head_lines",
    "http_batch",
    "is_address",
    "mime_list",
    "numbered_lines",
    "percent_decoded",
    "request_target",
    "uid_prefix",
    "with_steps",
]

CHUNK_CHARS = 1 << 24  # 16 Mi characters a chunk: ~100k proxy lines, one Arrow batch each

_BOM = "\ufeff"
NOT_BLANK = "regexp_matches(text, '[^ \\t\\r]')"  # SQL: the line has a visible character
_SCHEME = r"[A-Za-z][A-Za-z0-9+.-]*"  # RFC 3986 section 3.1; the authority ends at / ? or #
_IPV4 = r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}"
_IPV6 = r"[0-9A-Fa-f]*:[0-9A-Fa-f:.]*(?:%[0-9A-Za-z._~-]+)?"
# RFC 3986 / WHATWG default ports of the schemes a proxy log names
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "ws": 80, "wss": 443}


def numbered_lines(path: Path, chunk_chars: int = CHUNK_CHARS) -> Iterator[pa.Table]:
    """The file's lines in chunks: tables of `line` (1-based int64) and `text` (no newline).

    Each chunk ends at a line end; the last one takes whatever follows the last newline. A
    byte-order mark (IIS writes one) is not part of the first line.
    """
    first = 1
    rest = ""
    with open_text(path) as stream:
        block = stream.read(chunk_chars).removeprefix(_BOM)
        while block:
            following = stream.read(chunk_chars)  # read ahead: the last chunk takes the tail
            text = rest + block
            cut = text.rfind("\n") if following else len(text)
            if cut >= 0:
                rest = text[cut + 1 :]
                chunk = _split(text[:cut] if following else text.removesuffix("\n"), first)
                first += chunk.num_rows
                yield chunk
            else:
                rest = text  # no line end yet
            block = following


def _split(text: str, first: int) -> pa.Table:
    lines = pc.list_flatten(pc.split_pattern(pa.array([text], pa.string()), "\n"))
    numbers = np.arange(first, first + len(lines), dtype=np.int64)
    return pa.table({"line": pa.array(numbers), "text": lines})


def head_lines(head: bytes, count: int) -> list[str]:
    """The first `count` non-blank lines of a file's head (a cut-off last line left out)."""
    text = head.decode("utf-8", "replace").removeprefix(_BOM)
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and not head.endswith((b"\n", b"\r")):
        lines = lines[:-1]
    return lines[:count]


def uid_prefix(letter: str, path: Path) -> str:
    """`letter` + 10 hex digits of the SHA-256 of the path, then "-": the uid is this + line."""
    return letter + hashlib.sha256(str(path).encode("utf-8")).hexdigest()[:10] + "-"


# ---------------------------------------------------------------------- SQL pieces


def percent_decoded(expr: str) -> str:
    """SQL: `expr` with %XX escapes decoded, left as it is when they do not decode to UTF-8."""
    decoded = f"coalesce(try(url_decode({expr})), {expr})"
    return f"CASE WHEN contains({expr}, '%') THEN {decoded} ELSE {expr} END"


def is_address(expr: str) -> str:
    """SQL: true when `expr` is an IPv4 or IPv6 address literal (without brackets)."""
    return f"(regexp_full_match({expr}, {lit(_IPV4)}) OR regexp_full_match({expr}, {lit(_IPV6)}))"


def mime_list(expr: str) -> str:
    """SQL: a logged Content-Type as a one-element list of its essence (`text/html`), or null."""
    essence = f"nullif(lower(trim(split_part({percent_decoded(expr)}, ';', 1))), '')"
    return f"CASE WHEN {essence} IS NULL THEN NULL ELSE [{essence}] END"


def _host_of(authority: str) -> str:
    """SQL: the host of `host[:port]` (userinfo already removed), lower case, IPv6 without
    brackets; null when empty."""
    a = authority
    return (
        f"nullif(lower(CASE WHEN starts_with({a}, '[') THEN split_part(substr({a}, 2), ']', 1)"
        f" WHEN {a} LIKE '%:%:%' THEN {a}"  # a bare IPv6 literal has no port
        f" ELSE split_part({a}, ':', 1) END), '')"
    )


def _port_of(authority: str) -> str:
    """SQL: the explicit port of `host:port` or `[v6]:port`, else null."""
    a = authority
    digits = (
        f"CASE WHEN starts_with({a}, '[') THEN split_part({a}, ']:', 2)"
        f" WHEN {a} NOT LIKE '%:%:%' THEN split_part({a}, ':', 2) END"
    )
    return f"TRY_CAST(nullif({digits}, '') AS INTEGER)"


def _default_port(scheme: str) -> str:
    cases = " ".join(f"WHEN {lit(name)} THEN {port}" for name, port in _DEFAULT_PORTS.items())
    return f"CASE {scheme} {cases} END"


def with_steps(steps: list[tuple[str, str]], select: str) -> str:
    """SQL: `WITH name AS (query), ... select`, each step reading the ones before it."""
    return "WITH " + ", ".join(f"{name} AS ({query})" for name, query in steps) + " " + select


def request_target(source: str) -> list[tuple[str, str]]:
    """SQL steps (for `with_steps`) adding to `source` the requested `host`, `resp_port` and
    origin-form `uri`; the last step is named `target`.

    `source` has VARCHAR columns `method` and `url` (an absolute URL, a CONNECT's host:port,
    or an origin-form target) and, split out by W3C logs, `host_field`, `port_field`,
    `scheme_field`, `path_field`, `query_field` and `server_port`; any may be null. The
    explicit port wins, then `server_port` (a web server's own port), then the scheme's
    default. A CONNECT keeps `host:port` as its uri.
    """
    sep = "strpos(url, '://')"
    scheme = (
        f"CASE WHEN {sep} > 1 AND regexp_full_match(url[:{sep} - 1], {lit(_SCHEME)})"
        f" THEN lower(url[:{sep} - 1]) END"
    )
    rest = f"CASE WHEN _url_scheme IS NOT NULL THEN substr(url, {sep} + 3) END"
    end = (
        "coalesce(least(nullif(strpos(_rest, '/'), 0), nullif(strpos(_rest, '?'), 0),"
        " nullif(strpos(_rest, '#'), 0)) - 1, length(_rest))"
    )
    server = (
        "CASE WHEN _url_scheme IS NOT NULL THEN _rest[:_end]"
        " WHEN _connect AND NOT starts_with(url, '/') THEN url END"
    )
    no_user = "CASE WHEN contains(_server, '@') THEN split_part(_server, '@', -1) ELSE _server END"
    host = f"coalesce({_host_of('host_field')}, {_host_of('_authority')})"
    explicit = (
        "coalesce(TRY_CAST(port_field AS INTEGER), "
        f"{_port_of('host_field')}, {_port_of('_authority')})"
    )
    port = f"coalesce({explicit}, TRY_CAST(server_port AS INTEGER), {_default_port('_scheme')})"
    query = (
        "CASE WHEN starts_with(query_field, '?') THEN substr(query_field, 2) ELSE query_field END"
    )
    hostport = "CASE WHEN contains(host, ':') THEN '[' || host || ']' ELSE host END || ':' || _port"
    target = (
        "CASE WHEN _target = '' THEN '/' WHEN starts_with(_target, '?')"
        " THEN '/' || _target ELSE _target END"
    )
    uri = (
        "CASE WHEN _connect THEN coalesce(CASE WHEN _url_scheme IS NULL THEN url END,"
        f" {hostport}) WHEN path_field IS NOT NULL OR query_field IS NOT NULL"
        f" THEN coalesce(path_field, '/') || coalesce('?' || ({query}), '')"
        f" WHEN _url_scheme IS NOT NULL THEN {target} ELSE url END"
    )
    drop = "_url_scheme, _connect, _rest, _end, _server, _target, _authority, _scheme, _port"
    return [
        (
            "url_scheme",
            f"SELECT *, {scheme} AS _url_scheme,"
            f" upper(coalesce(method, '')) = 'CONNECT' AS _connect FROM {source}",
        ),
        ("url_rest", f"SELECT *, {rest} AS _rest FROM url_scheme"),
        ("url_end", f"SELECT *, {end} AS _end FROM url_rest"),
        (
            "url_server",
            f"SELECT *, {server} AS _server, substr(_rest, _end + 1) AS _target FROM url_end",
        ),
        (
            "url_authority",
            f"SELECT *, {no_user} AS _authority,"
            " lower(coalesce(scheme_field, _url_scheme)) AS _scheme FROM url_server",
        ),
        ("url_host", f"SELECT *, {host} AS host, {port} AS _port FROM url_authority"),
        (
            "target",
            f"SELECT * EXCLUDE ({drop}), {uri} AS uri,"
            " CASE WHEN _port BETWEEN 0 AND 65535 THEN _port END AS resp_port FROM url_host",
        ),
    ]


# -------------------------------------------------------------------- http batches


def http_batch(
    con: duckdb.DuckDBPyConnection, chunk: pa.Table, sql: str, path: Path, problems: Problems
) -> pa.RecordBatch | None:
    """Run `sql` over `chunk` (registered as `chunk`); report its bad lines, return its rows.

    `sql` yields `line`, `problem` (null for a good record, else why the line was not used)
    and any of the http columns; the others are null, `source_file` is the path.
    """
    con.register("chunk", chunk)
    try:
        result = con.sql(sql).to_arrow_table()
    finally:
        con.unregister("chunk")
    bad = pc.is_valid(result.column("problem"))
    if pc.any(bad).as_py():
        rejected = result.filter(bad)
        for line, reason in zip(
            rejected.column("line").to_pylist(), rejected.column("problem").to_pylist(), strict=True
        ):
            problems.add(path, line, reason)
        result = result.filter(pc.invert(bad))
    if result.num_rows == 0:
        return None
    schema = schema_of("http")
    columns = []
    for field in schema:
        if field.name == "source_file":
            columns.append(pa.repeat(pa.scalar(str(path), pa.string()), result.num_rows))
        elif field.name in result.column_names:
            columns.append(result.column(field.name).combine_chunks().cast(field.type))
        else:
            columns.append(pa.nulls(result.num_rows, field.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)
