"""W3C extended log files (Blue Coat / Symantec ProxySG, Microsoft IIS) -> the http table.

Fields are named by ``#Fields:`` directives, which may change mid-file and then apply to the
lines that follow; values are space-separated, ``"quoted"`` when they hold spaces, ``-`` when
absent. Lines before any ``#Fields:`` are read when they fit one of ProxySG's default layouts
(`LAYOUTS`), as in logs forwarded without their header. date and time are UTC (W3C and both
vendors say so); time-taken is in milliseconds (ProxySG, IIS). A log with proxy fields
(s-action, cs-host, ...) is read as a proxy's: resp_ip is the requested host and `proxy` the
proxy's s-ip; one without (IIS) as a web server's: resp_ip is s-ip and `proxy` null. A record's
uid is ``W`` + 10 hex digits of the SHA-256 of the file's path + ``-`` + its line number.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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

__all__ = ["FORMAT", "LAYOUTS", "read", "sniff"]

FORMAT = "w3c"
SNIFF_LINES = 20  # headerless files: more than half of these lines must fit a layout

_MAIN = (
    "date time time-taken c-ip sc-status s-action sc-bytes cs-bytes cs-method cs-uri-scheme"
    " cs-host cs-uri-port cs-uri-path cs-uri-query cs-username cs-auth-group s-hierarchy"
    " s-supplier-name rs(Content-Type) cs(Referer) cs(User-Agent) sc-filter-result"
    " cs-categories x-virus-id s-ip"
)
_BCREPORTERMAIN = (
    "date time time-taken c-ip cs-username cs-auth-group x-exception-id sc-filter-result"
    " cs-categories cs(Referer) sc-status s-action cs-method rs(Content-Type) cs-uri-scheme"
    " cs-host cs-uri-port cs-uri-path cs-uri-query cs-uri-extension cs(User-Agent) s-ip"
    " sc-bytes cs-bytes x-virus-id"
)
_MAIN_SGOS6 = (
    "date time time-taken c-ip cs-username cs-auth-group s-supplier-name s-supplier-ip"
    " s-supplier-country s-supplier-failures x-exception-id sc-filter-result cs-categories"
    " cs(Referer) sc-status s-action cs-method rs(Content-Type) cs-uri-scheme cs-host"
    " cs-uri-port cs-uri-path cs-uri-query cs-uri-extension cs(User-Agent) s-ip sc-bytes"
    " cs-bytes x-virus-id x-bluecoat-application-name x-bluecoat-application-operation"
)
# ProxySG's default access-log layouts, tried in this order on lines without a #Fields: header.
LAYOUTS: dict[str, tuple[str, ...]] = {
    # SGOS 5 `main` (Apache Metron's BLUECOAT grok pattern), with and without the cs-auth-type
    # that Metron's sample lines end with
    "main": tuple(_MAIN.split()),
    "main+cs-auth-type": (*_MAIN.split(), "cs-auth-type"),
    "bcreportermain_v1": tuple(_BCREPORTERMAIN.split()),
    # SGOS 6 and later `main` (Broadcom KB 168187), with and without cs-threat-risk
    "main-sgos6": tuple(_MAIN_SGOS6.split()),
    "main-sgos6+cs-threat-risk": (*_MAIN_SGOS6.split(), "cs-threat-risk"),
}

# W3C field (lower case) -> what it means here; the first field of a role in #Fields: wins.
_ROLES: dict[str, str] = {
    "date": "date", "time": "time", "time-taken": "time_taken", "c-ip": "client",
    "c-port": "client_port", "cs-username": "user", "cs-userdn": "user",
    "sc-filter-result": "filter_result", "cs-categories": "categories",
    "cs(referer)": "referrer", "sc-status": "status", "s-action": "action",
    "cs-method": "method", "rs(content-type)": "mime", "cs-uri-scheme": "scheme_field",
    "cs-host": "host_field", "cs(host)": "host_field", "cs-uri-port": "port_field",
    "s-port": "server_port", "cs-uri-path": "path_field", "cs-uri-stem": "path_field",
    "cs-uri-query": "query_field", "cs(user-agent)": "user_agent", "s-ip": "server_address",
    "sc-bytes": "sc_bytes", "cs-bytes": "cs_bytes", "s-supplier-ip": "supplier_ip",
    "s-supplier-name": "supplier_name", "cs-uri": "url", "cs-version": "version",
}  # fmt: skip
# Fields only a proxy writes: a log with one of them is read as a proxy's log.
_PROXY_FIELDS = frozenset(
    {
        "s-action", "sc-filter-result", "cs-categories", "s-supplier-ip", "s-supplier-name",
        "s-hierarchy", "x-exception-id", "cs-uri-scheme", "cs-host",
    }
)  # fmt: skip
_NUMBER = r"-|[0-9]+(?:\.[0-9]+)?"
_WORD = r"-|[A-Za-z_]+"
# What a value of these fields looks like; a line whose values do not is not that layout.
_SHAPES: dict[str, str] = {
    "date": r"[0-9]{4}-[0-9]{2}-[0-9]{2}", "time": r"[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?",
    "time-taken": _NUMBER, "sc-status": _NUMBER, "sc-bytes": _NUMBER, "cs-bytes": _NUMBER,
    "cs-uri-port": _NUMBER, "s-port": _NUMBER, "c-port": _NUMBER, "s-action": _WORD,
    "sc-filter-result": _WORD,
}  # fmt: skip
_SHAPE_RES = {name: re.compile(shape) for name, shape in _SHAPES.items()}
_DIRECTIVE = re.compile(
    r"^#\s*(?:Software|Version|Fields|Date|Start-Date|End-Date|Remark)\s*:", re.IGNORECASE
)
_FIELDS = re.compile(r"^#\s*Fields\s*:(.*)$", re.IGNORECASE)


def sniff(head: bytes) -> bool:
    """True when the file starts with a W3C directive (#Software:, #Version:, #Fields: ...), or
    when most of its first lines fit one of ProxySG's default layouts."""
    lines = head_lines(head, SNIFF_LINES)
    if lines and lines[0].startswith("#"):
        return _DIRECTIVE.match(lines[0]) is not None
    return sum(_layout_of(_tokens(line)) is not None for line in lines) * 2 > len(lines)


def _tokens(line: str) -> list[str]:
    """The values of a line, as the SQL reads them: quoted parts whole, the rest split on spaces."""
    values: list[str] = []
    for i, part in enumerate(line.replace("\t", " ").split('"')):
        if i % 2:
            values.append(part)
        else:
            values.extend(v for v in part.split(" ") if v)
    return values


def _fits(values: Sequence[str], fields: Sequence[str]) -> bool:
    if len(values) != len(fields):
        return False
    for value, field in zip(values, fields, strict=True):
        shape = _SHAPE_RES.get(field.lower())
        if shape is not None and not shape.fullmatch(value):
            return False
    return True


def _layout_of(values: Sequence[str]) -> str | None:
    return next((name for name, fields in LAYOUTS.items() if _fits(values, fields)), None)


def read(
    path: Path, problems: Problems, options: ReadOptions = DEFAULT_OPTIONS
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Yield ("http", batch) for one W3C log; lines that fit neither the #Fields: in force nor
    (before any) a known ProxySG layout go to `problems` with their line numbers."""
    del options  # W3C times are UTC
    con = connect()
    queries: dict[tuple[str, ...] | None, str] = {}
    fields: tuple[str, ...] | None = None
    for chunk in numbered_lines(path):
        directives = np.flatnonzero(
            pc.starts_with(chunk.column("text"), "#").to_numpy(zero_copy_only=False)
        )
        start = 0
        for end in [*directives.tolist(), chunk.num_rows]:
            if end > start:
                if fields not in queries:
                    queries[fields] = _sql(fields, path)
                segment = chunk.slice(start, end - start)
                batch = http_batch(con, segment, queries[fields], path, problems)
                if batch is not None:
                    yield "http", batch
            if end < chunk.num_rows:
                declared = _FIELDS.match(chunk.column("text")[end].as_py())
                if declared is not None:
                    fields = tuple(declared[1].split())
            start = end + 1


def _is_proxy_log(fields: Sequence[str]) -> bool:
    return not _PROXY_FIELDS.isdisjoint(f.lower() for f in fields)


def _role_columns(layouts: Sequence[tuple[str, ...]]) -> str:
    """SQL: one VARCHAR column per role, its field's value in the line's layout (else null),
    and `is_proxy`. A proxy's s-port is its own port, not the requested one: left out."""
    columns = []
    for role in sorted(set(_ROLES.values())):
        cases = {}
        for index, fields in enumerate(layouts):
            if role == "server_port" and _is_proxy_log(fields):
                continue
            names = [f.lower() for f in fields]
            position = next((i for i, f in enumerate(names, start=1) if _ROLES.get(f) == role), 0)
            if position:
                cases[index] = f"nullif(nullif(t[{position}], '-'), '')"
        columns.append(f"CAST({_by_layout(cases, len(layouts))} AS VARCHAR) AS {role}")
    proxy = {index: str(_is_proxy_log(fields)).lower() for index, fields in enumerate(layouts)}
    columns.append(f"{_by_layout(proxy, len(layouts))} AS is_proxy")
    return ", ".join(columns)


def _by_layout(values: dict[int, str], layouts: int) -> str:
    """SQL: the value for the line's layout; without a CASE when there is a single layout (a
    line that fits none is rejected anyway)."""
    if layouts == 1:
        return values.get(0, "NULL")
    cases = " ".join(f"WHEN {index} THEN {value}" for index, value in values.items())
    return f"CASE layout {cases} END" if values else "NULL"


def _layout_case(layouts: Sequence[tuple[str, ...]]) -> str:
    """SQL: the index of the first layout the tokens `t` fit, else null."""
    cases = []
    for index, fields in enumerate(layouts):
        checks = [f"len(t) = {len(fields)}"]
        for i, field in enumerate(fields, start=1):
            shape = _SHAPES.get(field.lower())
            if shape is not None:
                checks.append(f"regexp_full_match(t[{i}], {lit(shape)})")
        cases.append(f"WHEN {' AND '.join(checks)} THEN {index}")
    return f"CASE {' '.join(cases)} END"


def _sql(fields: tuple[str, ...] | None, path: Path) -> str:
    """The query over `chunk` (line, text) for lines under `fields` (None: no #Fields: yet)."""
    layouts = list(LAYOUTS.values()) if fields is None else [fields]
    if fields is None:
        unfit = "'no #Fields: header, and not a known ProxySG layout'"
    else:
        unfit = f"'has ' || _count || ' values where #Fields: names {len(fields)}'"
    text = "CASE WHEN contains(text, chr(9)) THEN replace(text, chr(9), ' ') ELSE text END"
    tokens = (
        "flatten(list_transform(string_split(text, '\"'), lambda p, i:"
        " CASE WHEN i % 2 = 0 THEN [p]"  # between quotes: one value
        " ELSE list_filter(string_split(p, ' '), lambda x: x <> '') END))"
    )
    categories = (  # decoded before the split: categories name no ';' of their own
        f"list_filter(string_split({percent_decoded('categories')}, ';'), lambda c: c <> '')"
    )
    denied = (
        "CASE WHEN filter_result IS NULL AND action IS NULL THEN NULL"
        " ELSE coalesce(upper(filter_result) = 'DENIED', false)"
        " OR coalesce(contains(upper(action), 'DENIED'), false) END"
    )
    supplier = (
        f"CASE WHEN {is_address('supplier_ip')} THEN supplier_ip"
        f" WHEN {is_address('supplier_name')} THEN supplier_name END"
    )
    ts = "TRY_CAST(date || ' ' || time AS TIMESTAMP)::TIMESTAMPTZ"
    problem = (
        f"CASE WHEN layout IS NULL THEN {unfit}"
        " WHEN date IS NULL OR time IS NULL THEN 'no date and time'"
        f" WHEN {ts} IS NULL THEN 'unreadable date or time' END"
    )
    steps = [
        ("lines", f"SELECT line, {text} AS text FROM chunk WHERE {NOT_BLANK}"),
        ("tokens", f"SELECT line, {tokens} AS t FROM lines"),
        ("typed", f"SELECT line, t, {_layout_case(layouts)} AS layout FROM tokens"),
        ("fields", f"SELECT line, layout, len(t) AS _count, {_role_columns(layouts)} FROM typed"),
        *request_target("fields"),
    ]
    return with_steps(
        steps,
        f"SELECT line, {problem} AS problem, {ts} AS ts,"
        f" {lit(uid_prefix('W', path))} || line AS uid, client AS orig_ip,"
        " TRY_CAST(client_port AS INTEGER) AS orig_port,"
        " CASE WHEN is_proxy THEN host ELSE coalesce(server_address, host) END AS resp_ip,"
        " resp_port, method, host, uri, referrer,"
        " CASE WHEN starts_with(upper(version), 'HTTP/') THEN substr(version, 6)"
        " ELSE version END AS version, user_agent,"
        " nullif(TRY_CAST(status AS INTEGER), 0) AS status_code,"  # ProxySG 0: no reply
        f" {percent_decoded('user')} AS username, {mime_list('mime')} AS resp_mime_types,"
        " CASE WHEN is_proxy THEN coalesce(server_address, 'w3c') END AS proxy,"
        f" action AS proxy_action, {denied} AS denied,"
        " TRY_CAST(time_taken AS DOUBLE) / 1000 AS duration_s,"
        " TRY_CAST(cs_bytes AS BIGINT) AS request_bytes,"
        " TRY_CAST(sc_bytes AS BIGINT) AS response_bytes,"
        f" {supplier} AS server_ip, {categories} AS categories FROM target",
    )
