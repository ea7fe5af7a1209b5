"""BIND named query logs (also Infoblox NIOS, which is named) -> the dns table.

Two kinds of line become dns rows: the query log (``client [@0x..] ip#port [(name)]: query:
name IN A +E(0)K (server)``) and denied queries (``query [(cache)] 'name/ANY/IN' denied``), the
latter with ``rejected`` true and rcode REFUSED. Every other named line (zone transfers, updates,
notifies, resolver errors) is about no client query and is skipped without complaint. Lines may
be plain named log-file lines, syslog-wrapped, or both; named's own timestamp
(``19-Oct-2022 05:34:02.425``, which has a year) wins over the syslog prefix. Both are read in
the configured zone, default UTC (see homecall.sources.syslog_time). Query logs carry no
answers, so ``answers`` stays null.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, tzinfo
from pathlib import Path

import pyarrow as pa

from homecall.sources.dns_records import (
    BATCH_ROWS,
    RCODES,
    Row,
    dns_batch,
    normalize_name,
    qtype_of,
)
from homecall.sources.fileio import parsed_lines
from homecall.sources.options import DEFAULT_OPTIONS, ReadOptions, zone_named
from homecall.sources.problems import Problems
from homecall.sources.syslog_time import MONTHS, SyslogClock, head_lines, parse_syslog

__all__ = ["FORMAT", "read", "sniff"]

FORMAT = "bind"
SNIFF_LINES = 50
QCLASSES: dict[str, int] = {"IN": 1, "CH": 3, "HS": 4, "NONE": 254, "ANY": 255}

_TIME = re.compile(
    r"^(?P<day>\d{2})-(?P<mon>[A-Z][a-z]{2})-(?P<year>\d{4}) "
    r"(?P<hms>\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d{1,6}))? (?P<rest>.*)$"
)
_CLIENT = re.compile(
    r"^(?:[a-z][\w-]*: )*"  # category and severity, e.g. "queries: info: "
    r"client (?:@0x[0-9a-fA-F]+ )?(?P<ip>[^\s#]+)#(?P<port>\d+)(?:/key \S+)?"
    r"(?: \([^)]*\))?: (?P<rest>.*)$"
)
_QUERY = re.compile(
    r"^(?:view \S+: )?query: (?P<name>\S+) (?P<qclass>\S+) (?P<qtype>\S+) (?P<flags>[+-]\S*)"
    r"(?: \((?P<server>[^)\s]+)\))?\s*$"
)
_DENIED = re.compile(
    r"^(?:view \S+: )?query(?: \(cache\))? '(?P<name>.*)/(?P<qtype>[^/']+)/(?P<qclass>[^/']+)'"
    r" denied\b.*$"
)

_QUERYISH = re.compile(r"^(?:view \S+: )?query(?::| '| \(cache\))")
_CLIENT_QUERYISH = re.compile(r"\bclient\b.*: (?:view \S+: )?query(?::| '| \(cache\))")


def sniff(head: bytes) -> bool:
    """True for named's own log lines, or when the first dnsmasq/named syslog line is named's."""
    for line, parsed in head_lines(head, SNIFF_LINES):
        if _TIME.match(line) or _CLIENT.match(line):
            return True
        if parsed is None:
            continue
        if parsed.program == "named":
            return True
        if parsed.program.startswith("dnsmasq"):
            return False
    return False


def read(
    path: Path, problems: Problems, options: ReadOptions = DEFAULT_OPTIONS
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Yield ("dns", batch) for one named log; unreadable query lines go to `problems`."""
    clock = SyslogClock.for_file(path, zone_named(options.timezone))
    for rows in parsed_lines(path, problems, lambda line: _parse(line, clock), BATCH_ROWS):
        yield "dns", dns_batch(rows, path)


def _parse(line: str, clock: SyslogClock) -> Row | None:
    """The dns row of one line; None for a line about no query; ValueError for a bad one."""
    ts: datetime | None = None
    try:
        syslog = parse_syslog(line, clock)
    except ValueError as exc:
        raise ValueError(f"bad syslog timestamp: {exc}") from None
    body = line
    if syslog is not None:
        if syslog.program != "named":
            return None  # dhcpd and other daemons in a shared syslog file
        ts, body = syslog.ts, syslog.message
    stamped = _TIME.match(body)
    if stamped is not None:
        ts, body = _named_time(stamped, clock.zone), stamped["rest"]
    client = _CLIENT.match(body)
    if client is None:
        if _CLIENT_QUERYISH.search(body):
            raise ValueError("query line not understood")
        return None
    rest = client["rest"]
    query = _QUERY.match(rest)
    denied = _DENIED.match(rest) if query is None else None
    if query is None and denied is None:
        if _QUERYISH.match(rest):
            raise ValueError("query line not understood")
        return None  # zone transfer, update, notify: no client query
    if ts is None:
        raise ValueError("query line without a timestamp")
    match = query if query is not None else denied
    assert match is not None
    qtype, qtype_name = qtype_of(match["qtype"])
    qclass_name = match["qclass"].upper()
    row: Row = {
        "ts": ts,
        "orig_ip": client["ip"],
        "orig_port": int(client["port"]),
        "resp_port": 53,
        "query": normalize_name(match["name"]),
        "qclass": QCLASSES.get(qclass_name),
        "qclass_name": qclass_name,
        "qtype": qtype,
        "qtype_name": qtype_name,
    }
    if query is not None:
        flags = query["flags"]
        row["rd"] = flags.startswith("+")
        row["resp_ip"] = query["server"]
        if "T" in flags:
            row["proto"] = "tcp"
    else:
        row["rejected"] = True
        row["rcode_name"], row["rcode"] = "REFUSED", RCODES["REFUSED"]
    return row


def _named_time(match: re.Match[str], zone: tzinfo) -> datetime:
    """named's ``19-Oct-2022 05:34:02.425``, written in `zone`, as UTC; ValueError if impossible."""
    month = MONTHS.get(match["mon"])
    if month is None:
        raise ValueError(f"bad named timestamp: unknown month {match['mon']!r}")
    hour, minute, second = (int(part) for part in match["hms"].split(":"))
    frac = match["frac"]
    micros = int(frac.ljust(6, "0")) if frac else 0
    try:
        return datetime(
            int(match["year"]), month, int(match["day"]), hour, minute, second, micros, tzinfo=zone
        ).astimezone(UTC)
    except ValueError as exc:
        raise ValueError(f"bad named timestamp: {exc}") from None
