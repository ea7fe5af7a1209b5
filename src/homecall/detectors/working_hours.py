"""Working hours as the engines see them: local wall-clock time from UTC timestamps in an Ibis
expression, for any IANA zone, with weekend days and holidays (docs/detection.md#off-hours).

The zone's UTC offsets over a window come from `zoneinfo` (one per daylight-saving period) and
become one CASE expression that adds a constant interval per period: no engine time-zone
function (their names and zone databases differ between DuckDB and Spark), one comparison per
period (two a year), and no timestamp leaves the engine.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import ibis
import ibis.expr.types as ir
import numpy as np
import numpy.typing as npt

__all__ = ["WEEKDAYS", "Schedule", "is_off_hours", "local_time", "off_time_ratio", "utc_offsets"]

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_PRIOR_SAMPLES = 100_000  # clock samples for a window's off-hours share (5 min apart at most)


@dataclass(frozen=True, slots=True)
class Schedule:
    """Working hours as numbers: minutes of the local day, weekdays off (Monday = 0), holidays."""

    zone: ZoneInfo
    start_min: int
    end_min: int
    weekend: frozenset[int]
    holidays: tuple[date, ...]

    @classmethod
    def parse(
        cls,
        working_hours: str,
        timezone: str,
        weekend_days: Sequence[str],
        holidays: Sequence[str],
    ) -> Schedule:
        """Parse and check settings as homecall.toml writes them; ValueError names the bad one."""
        match = _HOURS.match(working_hours)
        if match is None:
            raise ValueError(f"working_hours must be 'HH:MM-HH:MM', got {working_hours!r}")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if not (0 <= start < 1440 and 0 < end <= 1440 and m1 < 60 and m2 < 60) or start == end:
            raise ValueError(f"working_hours: not a span of the day: {working_hours!r}")
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"timezone: unknown IANA zone {timezone!r}") from exc
        names = [d.strip().lower() for d in weekend_days]
        unknown = [d for d in names if d not in WEEKDAYS]
        if unknown:
            raise ValueError(f"weekend_days: not weekday names: {unknown}")
        try:
            days_off = tuple(sorted({date.fromisoformat(d) for d in holidays}))
        except ValueError as exc:
            raise ValueError(f"holidays: dates are 'YYYY-MM-DD': {exc}") from exc
        weekend = frozenset(WEEKDAYS.index(d) for d in names)
        return cls(zone, start, end % 1440, weekend, days_off)

    def is_overnight(self) -> bool:
        """Working hours that cross midnight ("22:00-06:00")."""
        return self.end_min <= self.start_min


def utc_offsets(zone: ZoneInfo, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """[(from, offset_s)]: the zone's UTC offset from each instant on, the first from `start`,
    covering start..end (changes found day by day, then to the second by bisection)."""

    def offset(seconds: int) -> int:
        moment = datetime.fromtimestamp(seconds, UTC).astimezone(zone)
        delta = moment.utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    lo_s, hi_s = math.floor(start.timestamp()), math.ceil(end.timestamp())
    periods = [(lo_s, offset(lo_s))]
    t = lo_s
    while t < hi_s:
        step = min(t + 86_400, hi_s)
        if offset(step) != periods[-1][1]:
            a, b = t, step
            while b - a > 1:
                mid = (a + b) // 2
                a, b = (mid, b) if offset(mid) == periods[-1][1] else (a, mid)
            periods.append((b, offset(b)))
        t = step
    return [(datetime.fromtimestamp(s, UTC), o) for s, o in periods]


def local_time(ts: ir.TimestampValue, periods: Sequence[tuple[datetime, int]]) -> ir.Value:
    """`ts` (UTC) as local wall-clock time: a constant interval added per offset period."""
    shifted = [ts + ibis.interval(seconds=o) if o else ts for _, o in periods]
    if len(periods) == 1:
        return shifted[0]
    limits = [ibis.literal(when, type="timestamp('UTC', 6)") for when, _ in periods[1:]]
    return ibis.cases(
        *zip((ts < limit for limit in limits), shifted[:-1], strict=True), else_=shifted[-1]
    )


def is_off_hours(local: ir.TimestampValue, schedule: Schedule) -> ir.BooleanValue:
    """True for local times outside working hours, on a weekend day or on a holiday."""
    minute = local.hour() * 60 + local.minute()
    start, end = schedule.start_min, schedule.end_min
    if schedule.is_overnight():
        working = (minute >= start) | (minute < end)
    else:
        working = (minute >= start) & (minute < end)
    workday = ~local.day_of_week.index().isin(sorted(schedule.weekend))
    if schedule.holidays:
        workday = workday & ~local.date().isin(list(schedule.holidays))
    return ~(workday & working)


def off_time_ratio(
    schedule: Schedule, periods: Sequence[tuple[datetime, int]], start: datetime, end: datetime
) -> float:
    """Share of start..end that is out of hours, from evenly spaced clock samples (NumPy)."""
    lo, hi = start.timestamp(), end.timestamp()
    if hi - lo < 60:
        hi = lo + 60
    count = int(min(_PRIOR_SAMPLES, max(2, (hi - lo) // 300)))
    seconds: npt.NDArray[np.int64] = np.linspace(lo, hi, count).astype(np.int64)
    limits = np.array([w.timestamp() for w, _ in periods], dtype=np.int64)
    offsets = np.array([o for _, o in periods], dtype=np.int64)
    index = np.clip(np.searchsorted(limits, seconds, side="right") - 1, 0, len(periods) - 1)
    local = seconds + offsets[index]
    minute = (local // 60) % 1440
    weekday = (local // 86_400 + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0
    if schedule.is_overnight():
        working = (minute >= schedule.start_min) | (minute < schedule.end_min)
    else:
        working = (minute >= schedule.start_min) & (minute < schedule.end_min)
    workday = ~np.isin(weekday, sorted(schedule.weekend))
    if schedule.holidays:
        days = [(d - date(1970, 1, 1)).days for d in schedule.holidays]
        workday &= ~np.isin(local // 86_400, days)
    return float(1.0 - np.mean(workday & working))
