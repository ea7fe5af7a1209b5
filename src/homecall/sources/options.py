"""How to read what a log does not say: the time zone of local-time syslog stamps."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["DEFAULT_OPTIONS", "ReadOptions", "zone_named"]


def zone_named(name: str) -> ZoneInfo:
    """The IANA time zone `name` ("UTC", "Europe/Berlin"); ValueError when it is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as 'UTC'") from exc


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """Reader settings from [import] in homecall.toml or `--timezone` on the command line.

    `timezone` is the zone in which syslog-style logs without a zone (BIND, dnsmasq, Pi-hole)
    were written; their times are converted from it to UTC. Logs that carry a zone or epoch
    times (Zeek, Suricata, RFC 3339 syslog) ignore it.
    """

    timezone: str = "UTC"

    def __post_init__(self) -> None:
        zone_named(self.timezone)  # fail at load time, not in the middle of an import


DEFAULT_OPTIONS = ReadOptions()
