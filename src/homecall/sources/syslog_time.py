"""Syslog line headers and their timestamps, shared by the DNS-server log readers.

A classic (RFC 3164) syslog prefix such as ``Jun 19 21:30:43`` has neither a year nor a zone.
The year is taken from the file's modification time: a log is written up to its mtime, so a
line whose month is later than the mtime's month must be from the year before (a file written
from December into January). Times without a zone are read in the zone the user configured
(`[import] timezone` or `--timezone`, default UTC) and converted to UTC; an hour that a
daylight-saving change skipped or repeated is read with the offset before the change. rsyslog's
RFC 3339 timestamps (``2022-10-19T05:34:02.425+02:00``) carry their zone and are converted to
UTC whatever the setting.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path

__all__ = ["MONTHS", "SyslogClock", "SyslogLine", "head_lines", "parse_syslog", "rfc3339"]

MONTHS: dict[str, int] = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}

_HEADER = re.compile(
    r"^(?:<\d{1,3}>)?"  # optional priority, as in forwarded syslog (Infoblox)
    r"(?:(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<hms>\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)"
    r"|(?P<iso>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})))"
    r"(?: (?P<host>\S+))??"  # the host field is optional (dnsmasq/Pi-hole log files omit it)
    r" (?P<prog>[^\s\[\]:]+)(?:\[(?P<pid>\d+)\])?: ?(?P<msg>.*)$"
)


@dataclass(frozen=True, slots=True)
class SyslogLine:
    """One syslog line split into its header fields and its message."""

    ts: datetime
    host: str | None
    program: str
    pid: int | None
    message: str


class SyslogClock:
    """Turns year-less syslog timestamps into UTC datetimes, the year inferred from a reference.

    The reference is normally the file's modification time: the year is the reference's, except
    for months later than the reference's month, which belong to the previous year.
    """

    __slots__ = ("_reference", "_zone")

    def __init__(self, reference: datetime, zone: tzinfo = UTC) -> None:
        self._zone = zone
        self._reference = reference.astimezone(zone)

    @property
    def zone(self) -> tzinfo:
        """The zone the log's times were written in."""
        return self._zone

    @classmethod
    def for_file(cls, path: Path, zone: tzinfo = UTC) -> SyslogClock:
        """A clock whose reference is the file's mtime, for a log written in `zone`."""
        return cls(datetime.fromtimestamp(path.stat().st_mtime, tz=UTC), zone)

    def bsd(self, month: str, day: int, hms: str) -> datetime:
        """``Jun``, 19, ``21:30:43[.ffffff]`` (local to the clock's zone) as a UTC datetime;
        ValueError when impossible."""
        number = MONTHS.get(month)
        if number is None:
            raise ValueError(f"unknown month {month!r}")
        year = self._reference.year - (1 if number > self._reference.month else 0)
        clock, _, fraction = hms.partition(".")
        hour, minute, second = (int(part) for part in clock.split(":"))
        micros = int(fraction.ljust(6, "0")[:6]) if fraction else 0
        local = datetime(year, number, day, hour, minute, second, micros, tzinfo=self._zone)
        return local.astimezone(UTC)


def rfc3339(text: str) -> datetime:
    """An RFC 3339 timestamp with zone, converted to UTC; ValueError when malformed."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def parse_syslog(line: str, clock: SyslogClock) -> SyslogLine | None:
    """The header fields of a syslog line; None when it has no syslog header.

    ValueError when the header is there but its date is impossible (for example ``Feb 30``).
    """
    match = _HEADER.match(line)
    if match is None:
        return None
    iso = match["iso"]
    if iso is not None:
        ts = rfc3339(iso)
    else:
        ts = clock.bsd(match["mon"], int(match["day"]), match["hms"])
    pid = match["pid"]
    return SyslogLine(
        ts=ts,
        host=match["host"],
        program=match["prog"],
        pid=int(pid) if pid is not None else None,
        message=match["msg"],
    )


def head_lines(head: bytes, limit: int) -> Iterator[tuple[str, SyslogLine | None]]:
    """For sniffing: the first `limit` non-blank lines of a file's head, each with its syslog
    header (None when it has none or its date is impossible). The year does not matter here,
    so the clock is today's."""
    clock = SyslogClock(datetime.now(UTC))
    for line in head.decode("utf-8", "replace").splitlines()[:limit]:
        if not line.strip():
            continue
        try:
            yield line, parse_syslog(line, clock)
        except ValueError:
            yield line, None
