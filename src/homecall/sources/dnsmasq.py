"""dnsmasq and Pi-hole (pihole.log) query logs -> the dns table.

dnsmasq with ``log-queries`` writes one line per event: ``query[A] name from client``, then
``forwarded``, ``reply``/``cached``/``config`` lines (and Pi-hole's ``gravity blocked`` lines)
carrying the answers. One dns row is made per query line; the answer lines that follow are
correlated back to it: by the serial number when ``log-queries=extra`` logs one, otherwise by
name within the same dnsmasq process (a reply goes to the latest open query for that name,
preferring a forwarded query for ``reply`` lines and the matching type for an address, since
dnsmasq does not repeat the query type). CNAME chains (``reply x is <CNAME>`` followed by the
target's lines) add the target names and the final addresses to the query's answers, as Zeek
does. The logs carry no TTLs, no transaction ids and no server address, so those stay null.

Parsing is line by line in Python: these logs are small and have no columnar reader.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from datetime import datetime, tzinfo
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
from homecall.sources.fileio import open_text
from homecall.sources.options import DEFAULT_OPTIONS, ReadOptions, zone_named
from homecall.sources.problems import Problems
from homecall.sources.syslog_time import SyslogClock, head_lines, parse_syslog

__all__ = ["FORMAT", "read", "sniff"]

FORMAT = "dnsmasq"
_TAIL = 1_000  # rows held back at a batch boundary, so late replies still find their query
SNIFF_LINES = 50

_REJECTING = ("blocked", "blacklisted", "blocklist", "denied")

_SERIAL = re.compile(r"^(?P<serial>\d+) (?P<client>[0-9A-Fa-f:.%\w]+)/(?P<port>\d+) (?P<body>.*)$")
_QUERY = re.compile(r"^query\[(?P<type>[^\]]+)\] (?P<name>\S+) from (?P<client>\S+)$")
_ANSWER = re.compile(r"^(?P<kind>.+?) (?P<name>\S+) is (?P<value>\S+)$")
_FORWARDED = re.compile(r"^forwarded (?P<name>\S+) to \S+$")


def sniff(head: bytes) -> bool:
    """True when the first syslog-style line from dnsmasq or named is from dnsmasq (Pi-hole)."""
    for _, parsed in head_lines(head, SNIFF_LINES):
        if parsed is None:
            continue
        if parsed.program.startswith("dnsmasq") or parsed.program == "pihole-FTL":
            return True
        if parsed.program == "named":
            return False
    return False


def read(
    path: Path, problems: Problems, options: ReadOptions = DEFAULT_OPTIONS
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Yield ("dns", batch) for one dnsmasq/Pi-hole log; bad query lines go to `problems`."""
    parser = _Parser(path, problems, zone_named(options.timezone))
    with open_text(path) as stream:
        for number, line in enumerate(stream, start=1):
            parser.line(number, line.rstrip("\r\n"))
            if len(parser.rows) >= BATCH_ROWS:
                yield "dns", dns_batch(parser.flush(BATCH_ROWS - _TAIL), path)
    if parser.rows:
        yield "dns", dns_batch(parser.flush(len(parser.rows)), path)


class _Parser:
    """The correlation state of one file: open queries by serial and by name, per process."""

    def __init__(self, path: Path, problems: Problems, zone: tzinfo) -> None:
        self.path = path
        self.problems = problems
        self.clock = SyslogClock.for_file(path, zone)
        self.rows: list[Row] = []
        self.by_serial: dict[tuple[int | None, str], Row] = {}
        self.by_name: dict[tuple[int | None, str], list[Row]] = {}
        self.chain: dict[int | None, tuple[Row, str]] = {}  # pid -> (row, kind) of a CNAME chain

    def flush(self, count: int) -> list[Row]:
        """Hand out the first `count` rows and forget their correlation state."""
        out, self.rows = self.rows[:count], self.rows[count:]
        kept = {id(row) for row in self.rows}
        self.by_serial = {k: r for k, r in self.by_serial.items() if id(r) in kept}
        self.by_name = {
            k: live
            for k, rows in self.by_name.items()
            if (live := [r for r in rows if id(r) in kept])
        }
        self.chain = {k: v for k, v in self.chain.items() if id(v[0]) in kept}
        return out

    def line(self, number: int, line: str) -> None:
        if not line.strip():
            return
        try:
            parsed = parse_syslog(line, self.clock)
        except ValueError as exc:
            self.problems.add(self.path, number, f"bad syslog timestamp: {exc}")
            return
        if parsed is None:
            self.problems.add(self.path, number, "not a syslog line")
            return
        if parsed.program != "dnsmasq" and parsed.program != "pihole-FTL":
            return  # dnsmasq-dhcp and other daemons sharing the file
        pid, body = parsed.pid, parsed.message
        serial: str | None = None
        port: int | None = None
        extra = _SERIAL.match(body)
        if extra is not None:
            serial, port, body = extra["serial"], int(extra["port"]), extra["body"]
        if body.startswith("query["):
            self.chain.pop(pid, None)
            query = _QUERY.match(body)
            if query is None:
                self.problems.add(self.path, number, "query line not understood")
                return
            self._query(parsed.ts, pid, serial, port, query)
            return
        forwarded = _FORWARDED.match(body)
        if forwarded is not None:
            self.chain.pop(pid, None)
            row = self._find(pid, serial, normalize_name(forwarded["name"]), "forwarded", "")
            if row is not None:
                row["_forwarded"] = True
            return
        answer = _ANSWER.match(body)
        if answer is None:
            self.chain.pop(pid, None)
            return  # startup, cache and server messages: not about a query
        self._answer(pid, serial, answer["kind"], normalize_name(answer["name"]), answer["value"])

    def _query(
        self,
        ts: datetime,
        pid: int | None,
        serial: str | None,
        port: int | None,
        match: re.Match[str],
    ) -> None:
        qtype, qtype_name = qtype_of(match["type"])
        name = normalize_name(match["name"])
        row: Row = {
            "ts": ts,
            "orig_ip": match["client"],
            "orig_port": port,
            "resp_port": 53,
            "proto": "udp",
            "query": name,
            "qtype": qtype,
            "qtype_name": qtype_name,
        }
        self.rows.append(row)
        if serial is not None:
            self.by_serial[(pid, serial)] = row
        open_rows = self.by_name.setdefault((pid, name), [])
        open_rows[:] = [r for r in open_rows if r.get("qtype_name") != qtype_name]
        open_rows.append(row)

    def _find(
        self, pid: int | None, serial: str | None, name: str, kind: str, value: str
    ) -> Row | None:
        if serial is not None:
            return self.by_serial.get((pid, serial))
        pool = self.by_name.get((pid, name))
        if not pool:
            return None
        if kind in ("reply", "forwarded"):
            waiting = [r for r in pool if r.get("_forwarded") and not r.get("_replied")]
            if kind == "forwarded":
                waiting = [r for r in pool if not r.get("_forwarded")]
            pool = waiting or pool
        wanted = _answer_type(value)
        if wanted is not None:
            pool = [r for r in pool if r.get("qtype_name") == wanted] or pool
        return pool[-1]

    def _answer(
        self, pid: int | None, serial: str | None, kind: str, name: str, value: str
    ) -> None:
        chain = self.chain.pop(pid, None)
        row: Row | None
        if chain is not None and chain[1] == kind and chain[0].get("query") != name:
            row = chain[0]
            _add_answer(row, name)  # the target of the previous line's CNAME
        else:
            row = self._find(pid, serial, name, kind, value)
        if row is None:
            return  # the query was before the start of the file
        if kind == "reply":
            row["_replied"] = True
        if any(word in kind for word in _REJECTING):
            row["rejected"] = True
        upper = value.upper()
        if upper in RCODES:
            row["rcode_name"], row["rcode"] = upper, RCODES[upper]
            return
        if value == "duplicate":
            return
        row["rcode_name"], row["rcode"] = "NOERROR", 0
        if upper == "<CNAME>":
            self.chain[pid] = (row, kind)
        elif not upper.startswith("NODATA") and not value.startswith("<"):
            _add_answer(row, value.lower() if not _is_address(value) else value)


def _add_answer(row: Row, value: str) -> None:
    answers: list[str] | None = row.get("answers")
    if answers is None:
        row["answers"] = [value]
    else:
        answers.append(value)


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _answer_type(value: str) -> str | None:
    """The query type an answer value implies, when it implies one."""
    if value.startswith("<") and value.endswith(">"):
        inner = value[1:-1].upper()
        return None if inner == "CNAME" else inner
    if value == "NODATA-IPv4":
        return "A"
    if value == "NODATA-IPv6":
        return "AAAA"
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    return "A" if address.version == 4 else "AAAA"
