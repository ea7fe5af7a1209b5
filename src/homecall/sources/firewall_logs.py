"""What the firewall-log readers (iptables, pfSense, Cisco ASA) share: protocol names, the
allow/deny words of log prefixes, memoised syslog times, and row batches.

Firewall logs repeat each second's timestamp on many lines, so a stamp is converted to UTC once
and remembered (`Stamps`); conversion itself is homecall.sources.syslog_time's: year-less stamps
get their year from the file's mtime, zone-less stamps are read in `[import] timezone`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa

from homecall.sources.fileio import parsed_lines
from homecall.sources.options import ReadOptions, zone_named
from homecall.sources.problems import Problems
from homecall.sources.syslog_time import MONTHS, SyslogClock, rfc3339
from homecall.store.schema import TIMESTAMP, schema_of

__all__ = [
    "BATCH_ROWS",
    "Row",
    "Stamps",
    "SyslogParts",
    "action_of",
    "number_of",
    "port_of",
    "protocol_name",
    "read_lines",
    "syslog_parts",
    "table_batch",
]

BATCH_ROWS = 100_000  # rows per Arrow batch: bounded memory, few Parquet row groups

# IANA protocol numbers of the protocols firewalls log by number. ICMPv6 is "icmp", as Zeek's
# conn.log writes it, so one filter finds both.
_PROTOCOLS: dict[int, str] = {
    1: "icmp", 2: "igmp", 4: "ipip", 6: "tcp", 17: "udp", 41: "ipv6", 47: "gre", 50: "esp",
    51: "ah", 58: "icmp", 89: "ospf", 103: "pim", 112: "vrrp", 132: "sctp", 136: "udplite",
}  # fmt: skip
_NAMES = {"icmpv6": "icmp", "ipv6-icmp": "icmp", "carp": "vrrp"}  # CARP reuses VRRP's number

# Words of a log prefix or action field that say what the firewall did with the packet.
_DENY_WORDS = frozenset(
    {"block", "blocked", "drop", "dropped", "deny", "denied", "reject", "rejected", "refused"}
)
_ALLOW_WORDS = frozenset(
    {"accept", "accepted", "acc", "allow", "allowed", "pass", "passed", "permit", "permitted"}
)
_WORD = re.compile(r"[A-Za-z]+")
_MAX_PORT = 65535
_MAX_INT32 = 2**31 - 1

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_BSD = re.compile(
    r"^(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2})(?: (?P<year>\d{4}))?"
    r" (?P<hms>\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)$"
)
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?P<zone>Z|[+-]\d{2}:?\d{2})?$")
_APACHE = re.compile(
    r"^(?P<day>\d{2})/(?P<mon>[A-Z][a-z]{2})/(?P<year>\d{4}):(?P<hms>\d{2}:\d{2}:\d{2})"
    r" (?P<zone>[+-]\d{4})$"
)
_CTIME = re.compile(
    r"^[A-Z][a-z]{2} (?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<hms>\d{2}:\d{2}:\d{2})"
    r" (?P<year>\d{4})$"
)
_KEEP_STAMPS = 100_000  # memoised stamps; the memo starts over beyond this

_STAMP = (
    r"[A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2}(?:\.\d{1,6})?"
    r"|\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?"
)
_BSD_LINE = re.compile(
    rf"^(?:<\d{{1,3}}>)?(?P<stamp>{_STAMP}) (?:(?P<host>\S+) )??"
    r"(?P<program>[^\s\[\]:]+)(?:\[\d+\])?: ?(?P<message>.*)$"
)
_RFC5424_LINE = re.compile(
    rf"^<\d{{1,3}}>1 (?P<stamp>{_STAMP}) (?P<host>\S+) (?P<program>\S+) \S+ \S+"
    r' (?:-|(?:\[(?:[^\]"\\]|"(?:[^"\\]|\\.)*")*\])+) ?(?P<message>.*)$'
)


class SyslogParts(NamedTuple):
    """A syslog line's header fields (the stamp as text) and its message."""

    stamp: str
    host: str | None
    program: str
    message: str


def syslog_parts(line: str) -> SyslogParts | None:
    """The header of a BSD (RFC 3164) or RFC 5424 syslog line; None when it has none.

    The BSD host field is optional (files written by the daemon itself omit it).
    """
    match = _RFC5424_LINE.match(line) if line.startswith("<") else None
    if match is None:
        match = _BSD_LINE.match(line)
        if match is None:
            return None
    return SyslogParts(match["stamp"], match["host"], match["program"], match["message"])


def port_of(text: str | None) -> int | None:
    """A logged TCP/UDP port; None when absent; ValueError when it is not 0..65535."""
    if not text:
        return None
    if not text.isdigit() or len(text) > 5 or int(text) > _MAX_PORT:
        raise ValueError(f"bad port {text!r}")
    return int(text)


def number_of(text: str | None) -> int | None:
    """A logged length or TTL; None when absent; ValueError when it is not a 32-bit count."""
    if not text:
        return None
    if not text.isdigit() or len(text) > 10 or int(text) > _MAX_INT32:
        raise ValueError(f"bad number {text!r}")
    return int(text)


@lru_cache(maxsize=256)
def protocol_name(text: str) -> str:
    """A logged protocol (``TCP``, ``icmpv6``, ``47``) as stored: lower-case name."""
    if text.isdigit():
        return _PROTOCOLS.get(int(text), text)
    lower = text.lower()
    return _NAMES.get(lower, lower)


@lru_cache(maxsize=4096)  # a log repeats a few prefixes on every line
def action_of(words: str | None) -> str | None:
    """ "deny" or "allow" from the words of a log prefix or action field; None when they say
    neither, or both (``[UFW AUDIT]``, ``INVALID``, ``ACCEPT-then-DROP``)."""
    if not words:
        return None
    found = {word.lower() for word in _WORD.findall(words)}
    deny, allow = bool(found & _DENY_WORDS), bool(found & _ALLOW_WORDS)
    if deny == allow:
        return None
    return "deny" if deny else "allow"


class Stamps:
    """Logged timestamps -> UTC epoch microseconds, each distinct stamp converted once.

    Understood: syslog's ``Jun  8 14:34:33[.ffffff]`` (year from the clock's reference, as
    SyslogClock infers it), the same with a year (``Aug 06 2016 20:39:42``, Cisco's own stamp),
    RFC 3339 (``2022-09-06T18:37:34+02:00``; without a zone, local), Apache's
    ``20/Jun/2022:13:09:14 +0200`` (Proxmox) and ctime's ``Mon Jun  8 14:34:33 2020`` (dmesg -T).
    Times without a zone are in the clock's zone. ValueError for anything else or an impossible
    date.
    """

    __slots__ = ("_clock", "_known")

    def __init__(self, clock: SyslogClock) -> None:
        self._clock = clock
        self._known: dict[str, int] = {}

    def micros(self, stamp: str) -> int:
        """UTC epoch microseconds of `stamp`; ValueError when it is not a time."""
        known = self._known.get(stamp)
        if known is not None:
            return known
        try:
            value = (self._convert(stamp) - _EPOCH) // _MICROSECOND
        except ValueError as exc:
            raise ValueError(f"bad timestamp {stamp!r}: {exc}") from None
        if len(self._known) >= _KEEP_STAMPS:
            self._known.clear()
        self._known[stamp] = value
        return value

    def _convert(self, stamp: str) -> datetime:
        bsd = _BSD.match(stamp)
        if bsd is not None:
            if bsd["year"] is None:
                return self._clock.bsd(bsd["mon"], int(bsd["day"]), bsd["hms"])
            return self._local(int(bsd["year"]), bsd["mon"], int(bsd["day"]), bsd["hms"])
        iso = _ISO.match(stamp)
        if iso is not None:
            if iso["zone"] is not None:
                return rfc3339(stamp)
            return datetime.fromisoformat(stamp).replace(tzinfo=self._clock.zone).astimezone(UTC)
        apache = _APACHE.match(stamp)
        if apache is not None:
            return datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S %z").astimezone(UTC)
        ctime = _CTIME.match(stamp)
        if ctime is not None:
            return self._local(int(ctime["year"]), ctime["mon"], int(ctime["day"]), ctime["hms"])
        raise ValueError("not a timestamp this reader knows")

    def _local(self, year: int, month: str, day: int, hms: str) -> datetime:
        number = MONTHS.get(month)
        if number is None:
            raise ValueError(f"unknown month {month!r}")
        clock, _, fraction = hms.partition(".")
        hour, minute, second = (int(part) for part in clock.split(":"))
        micros = int(fraction.ljust(6, "0")[:6]) if fraction else 0
        local = datetime(year, number, day, hour, minute, second, micros, tzinfo=self._clock.zone)
        return local.astimezone(UTC)


def table_batch(table: str, rows: Sequence[Sequence[object]], path: Path) -> pa.RecordBatch:
    """A batch of `table` from row tuples holding every column before the provenance ones, in
    schema order, with ``ts`` as UTC epoch microseconds; ``sensor`` is null and
    ``source_file`` the file's path."""
    schema = schema_of(table)
    count = len(rows)
    values = list(zip(*rows, strict=True)) if rows else [()] * (len(schema) - 2)
    if len(values) != len(schema) - 2:
        raise ValueError(f"{table} rows need {len(schema) - 2} values, got {len(values)}")
    columns: list[pa.Array] = []
    for index, field in enumerate(schema):
        if field.name == "sensor":
            columns.append(pa.nulls(count, field.type))
        elif field.name == "source_file":
            columns.append(pa.array([str(path)] * count, field.type))
        elif field.type == TIMESTAMP:
            columns.append(pa.array(values[index], pa.int64()).cast(TIMESTAMP))
        else:
            columns.append(pa.array(values[index], field.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


Row = tuple[object, ...]  # store.schema "firewall" without provenance, in order


def read_lines(
    path: Path,
    problems: Problems,
    options: ReadOptions,
    parse: Callable[[str, Stamps], Row | None],
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Yield ("firewall", batch) from a log of one row per line: `parse` gives a line's row,
    None for a line of another kind, or ValueError for a bad one (reported with its number)."""
    stamps = Stamps(SyslogClock.for_file(path, zone_named(options.timezone)))
    for rows in parsed_lines(path, problems, lambda line: parse(line, stamps), BATCH_ROWS):
        yield "firewall", table_batch("firewall", rows, path)
