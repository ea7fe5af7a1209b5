from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import ibis
import pyarrow as pa
import pytest

from homecall.config import build_section
from homecall.detectors import off_hours
from homecall.detectors.off_hours import OffHoursConfig, off_hours_score, schedule_of
from homecall.detectors.working_hours import (
    is_off_hours,
    local_time,
    off_time_ratio,
    utc_offsets,
)
from homecall.errors import ConfigError
from homecall.findings import Finding
from homecall.pipeline import import_paths
from homecall.store import Store
from homecall.store.tables import Tables, connect
from tests.detectors.zeek_logs import assert_contract, assert_spark_agrees, open_store
from tests.detectors.zeek_tsv import at, conn, store_of, tls, uid

CFG = OffHoursConfig()
SITES = [
    ("93.184.216.34", "www.example.com"),
    ("198.51.100.20", "intranet-saas.example.org"),
    ("198.51.100.21", "docs.example.net"),
    ("198.51.100.22", "crm.example.io"),
]
EVIL = ("203.0.113.50", "files.evil-example.net")

Logs = dict[str, list[dict[str, Any]]]


def _run(tables: Tables, cfg: OffHoursConfig = CFG) -> list[Finding]:
    return list(off_hours.DETECTOR.run(tables, cfg))


def _contact(logs: Logs, ts: float, src: str, ip: str, name: str | None, **kw: Any) -> None:
    """One HTTPS connection: its conn.log row and, when named, its ssl.log row (same uid)."""
    c = uid()
    logs.setdefault("conn", []).append(conn(ts, src, ip, kw.get("port", 443), uid=c))
    if name is not None:
        logs.setdefault("ssl", []).append(tls(ts, src, ip, name, uid=c))


def _workday(logs: Logs, src: str, day: str, start: str = "09:00", end: str = "17:00") -> None:
    """A person at work: a connection every 5 minutes to one of SITES, start..end UTC."""
    t, stop = at(f"{day} {start}:00"), at(f"{day} {end}:00")
    i = 0
    while t < stop:
        _contact(logs, t, src, *SITES[i % len(SITES)])
        t += 300.0
        i += 1


def _around_the_clock(logs: Logs, src: str, first: str, days: int) -> None:
    """A server: a connection every 10 minutes, day and night, to one of SITES."""
    t = at(f"{first} 00:00:00")
    for i in range(days * 144):
        _contact(logs, t + 600.0 * i, src, *SITES[i % 3])


def _burst(logs: Logs, src: str, when: str, n: int, ip: str, name: str | None) -> None:
    t = at(when)
    for i in range(n):
        _contact(logs, t + 30.0 * i, src, ip, name)


WEEK = ["2024-03-04", "2024-03-05", "2024-03-06", "2024-03-07", "2024-03-08"]  # Mon..Fri


def _by_dst(found: list[Finding], src: str) -> dict[str, Finding]:
    return {f.dst or "": f for f in found if f.src == src}


# ---------------------------------------------------------------------------- local time


def test_utc_offsets_find_the_eu_daylight_saving_change_to_the_second() -> None:
    zone = ZoneInfo("Europe/Berlin")  # EU rule: last Sunday of March, 01:00 UTC
    periods = utc_offsets(zone, datetime(2024, 3, 25, tzinfo=UTC), datetime(2024, 4, 5, tzinfo=UTC))
    assert [o for _, o in periods] == [3600, 7200]
    assert periods[1][0] == datetime(2024, 3, 31, 1, 0, tzinfo=UTC)
    assert utc_offsets(ZoneInfo("UTC"), periods[0][0], periods[1][0])[0][1] == 0


@pytest.mark.parametrize(
    ("zone", "hours", "weekend", "holidays"),
    [
        ("Europe/Berlin", "08:00-18:00", ("Saturday", "Sunday"), ("2024-04-01",)),
        ("America/New_York", "09:30-17:00", ("Saturday", "Sunday"), ()),
        ("Asia/Kolkata", "22:00-06:00", ("Friday",), ("2024-03-28",)),  # +05:30, a night shift
    ],
)
def test_engine_classification_matches_zoneinfo_per_timestamp(
    zone: str, hours: str, weekend: tuple[str, ...], holidays: tuple[str, ...]
) -> None:
    cfg = OffHoursConfig(
        timezone=zone, working_hours=hours, weekend_days=weekend, holidays=holidays
    )
    schedule = schedule_of(cfg)
    start = datetime(2024, 3, 7, tzinfo=UTC)  # US DST starts Mar 10, EU Mar 31
    stamps = [start + timedelta(minutes=37 * i) for i in range(1200)]  # 31 days
    periods = utc_offsets(schedule.zone, stamps[0], stamps[-1])
    t = ibis.memtable(pa.table({"ts": pa.array(stamps, pa.timestamp("us", tz="UTC"))}))
    expr = t.select("ts", off=is_off_hours(local_time(t.ts, periods), schedule)).order_by("ts")
    got = connect().to_pyarrow(expr).column("off").to_pylist()
    (h1, m1), (h2, m2) = (map(int, part.split(":")) for part in hours.split("-"))
    begin, end = h1 * 60 + m1, h2 * 60 + m2
    days_off = {d.lower() for d in weekend}
    expected = []
    for moment in stamps:
        local = moment.astimezone(ZoneInfo(zone))
        minute = local.hour * 60 + local.minute
        in_hours = begin <= minute < end if begin < end else (minute >= begin or minute < end)
        workday = local.strftime("%A").lower() not in days_off
        workday = workday and local.date().isoformat() not in holidays
        expected.append(not (workday and in_hours))
    assert got == expected


def test_window_off_share_of_a_plain_week() -> None:
    schedule = schedule_of(CFG)
    start, end = datetime(2024, 3, 4, tzinfo=UTC), datetime(2024, 3, 11, tzinfo=UTC)
    periods = utc_offsets(schedule.zone, start, end)
    # 10 working hours on 5 of 7 days
    assert off_time_ratio(schedule, periods, start, end) == pytest.approx(1 - 50 / 168, abs=2e-3)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("working_hours", "8-18"),
        ("working_hours", "18:00-18:00"),
        ("working_hours", "08:00-25:00"),
        ("timezone", "Mars/Olympus_Mons"),
        ("weekend_days", ["Caturday"]),
        ("holidays", ["2024-13-01"]),
    ],
)
def test_bad_settings_are_config_errors(setting: str, value: object) -> None:
    with pytest.raises(ConfigError, match=setting):
        build_section(OffHoursConfig, {setting: value}, where="detectors.off-hours", path=None)


# ---------------------------------------------------------------------------- the score


def test_score_judges_a_destination_against_the_hosts_own_other_traffic() -> None:
    prior = 0.7

    def score(dst_off: int, dst_total: int, other_off: int, other_total: int) -> float:
        found = off_hours_score(dst_off, dst_total, other_off, other_total, 1, prior=prior, cfg=CFG)
        assert 0.0 <= found.score <= CFG.max_score
        return found.score

    quiet_workstation = score(40, 40, 5, 960)
    busy_server = score(40, 40, 660, 960)
    uniform_on_server = score(28, 40, 672, 960)
    assert quiet_workstation > busy_server > 0
    assert uniform_on_server == 0.0  # as much out of hours as everything else the host does
    assert score(40, 40, 0, 0) < quiet_workstation  # no traffic of its own: no baseline
    assert score(400, 400, 5, 960) > quiet_workstation  # more of it


# ---------------------------------------------------------------------------- hand-built logs


def _office_week(tmp_path: Path) -> Store:
    logs: Logs = {}
    for day in WEEK:
        _workday(logs, "10.0.0.10", day)
    _burst(logs, "10.0.0.10", "2024-03-06 03:00:00", 40, *EVIL)
    _around_the_clock(logs, "10.0.0.20", WEEK[0], 5)
    return store_of(tmp_path, logs)


def test_daytime_workstation_burst_at_3am_is_flagged_and_the_server_is_not(
    tmp_path: Path,
) -> None:
    found = _run(open_store(_office_week(tmp_path)))
    assert [(f.src, f.dst) for f in found] == [("10.0.0.10", "evil-example.net")]
    (finding,) = found
    assert finding.evidence["off_hours_contacts"] == 40
    assert finding.evidence["dst_off_hours_ratio"] == 1.0
    assert finding.evidence["host_off_hours_ratio"] == 0.0  # it works 09-17 on weekdays
    assert finding.evidence["example_name"] == EVIL[1]
    assert finding.first_seen == datetime(2024, 3, 6, 3, 0, tzinfo=UTC)
    assert finding.severity in {"low", "medium"}  # off hours is context, never high alone
    assert "10.0.0.10" in finding.summary
    assert "evil-example.net" in finding.summary
    assert len(finding.evidence["uids"]) == 20


def test_time_zone_moves_the_working_day(tmp_path: Path) -> None:
    # New York office, January (UTC-5): work 09-17 local = 14-22 UTC, burst 03:00 local = 08 UTC
    logs: Logs = {}
    for day in ["2024-01-08", "2024-01-09", "2024-01-10", "2024-01-11", "2024-01-12"]:
        _workday(logs, "10.0.0.30", day, "14:00", "22:00")
    _burst(logs, "10.0.0.30", "2024-01-10 08:00:00", 40, *EVIL)
    tables = open_store(store_of(tmp_path, logs))
    in_utc = _by_dst(_run(tables), "10.0.0.30")
    assert "evil-example.net" not in in_utc  # 08:00 UTC is inside UTC working hours
    local = _run(tables, OffHoursConfig(timezone="America/New_York"))
    assert [(f.src, f.dst) for f in local] == [("10.0.0.30", "evil-example.net")]


def test_holidays_are_days_off(tmp_path: Path) -> None:
    logs: Logs = {}
    for day in WEEK[:3] + WEEK[4:]:
        _workday(logs, "10.0.0.10", day)
    _burst(logs, "10.0.0.10", "2024-03-07 11:00:00", 40, *EVIL)  # Thursday: nobody at work
    tables = open_store(store_of(tmp_path, logs))
    assert _run(tables) == []
    found = _run(tables, OffHoursConfig(holidays=("2024-03-07",)))
    assert [(f.src, f.dst) for f in found] == [("10.0.0.10", "evil-example.net")]


def test_social_media_is_named_and_machine_traffic_is_lowered(tmp_path: Path) -> None:
    logs: Logs = {}
    for day in WEEK:
        _workday(logs, "10.0.0.10", day)
    night = "2024-03-06 01:00:00"
    _burst(logs, "10.0.0.10", night, 15, "157.240.0.35", "www.facebook.com")
    _burst(logs, "10.0.0.10", night, 15, "198.51.100.99", "news.example-paper.org")
    _burst(logs, "10.0.0.10", night, 15, "20.10.0.5", "wdcp.microsoft.com")  # Defender
    found = _by_dst(_run(open_store(store_of(tmp_path, logs))), "10.0.0.10")
    social, plain = found["facebook.com"], found["example-paper.org"]
    assert social.evidence["category"] == "social-media"
    assert "social-media" in social.summary
    assert plain.evidence["category"] is None
    assert social.score == pytest.approx(plain.score)
    machine = found.get("wdcp.microsoft.com")  # listed antivirus site: its own destination
    assert machine is None or machine.score < plain.score


def test_a_destination_much_of_the_fleet_reaches_at_night_is_damped(tmp_path: Path) -> None:
    logs: Logs = {}
    hosts = [f"10.0.1.{i}" for i in range(1, 13)]
    for src in hosts:
        for day in WEEK[:3]:
            _workday(logs, src, day)
        _burst(logs, src, "2024-03-05 02:00:00", 12, "198.51.100.77", "sync.example-cloud.com")
        _burst(logs, src, "2024-03-05 23:00:00", 12, "157.240.0.35", "www.facebook.com")
    _burst(logs, hosts[0], "2024-03-05 02:30:00", 12, *EVIL)
    found = _by_dst(_run(open_store(store_of(tmp_path, logs))), hosts[0])
    evil, social = found["evil-example.net"], found["facebook.com"]
    assert evil.score == max(f.score for f in found.values())
    # everyone on Facebook at night is still people at their keyboards: named, not damped
    assert "shared_destination_factor" not in social.evidence
    assert social.evidence["dst_hosts"] == len(hosts)
    shared = found.get("example-cloud.com")
    assert shared is None or shared.evidence["shared_destination_factor"] < 0.5


def test_contract_and_empty_window(tmp_path: Path) -> None:
    assert_contract(lambda t: _run(t), _office_week(tmp_path))


@pytest.mark.spark
def test_duckdb_and_spark_agree(tmp_path: Path, spark: object) -> None:
    logs: Logs = {}
    for day in ["2024-03-28", "2024-03-29", "2024-04-02"]:
        _workday(logs, "10.0.0.10", day, "07:00", "15:00")  # 08/09-16/17 in Berlin
    _burst(logs, "10.0.0.10", "2024-03-31 01:30:00", 12, *EVIL)  # Sunday, just after DST
    _burst(logs, "10.0.0.10", "2024-04-01 10:00:00", 12, "157.240.0.35", "www.facebook.com")
    cfg = OffHoursConfig(timezone="Europe/Berlin", holidays=("2024-04-01",))  # Easter Monday
    store = store_of(tmp_path, logs)
    assert_spark_agrees(lambda t: _run(t, cfg), store, spark)
    assert {f.dst for f in _run(open_store(store), cfg)} == {"evil-example.net", "facebook.com"}


# ---------------------------------------------------------------------------- real captures


def _sample(samples: Path, tmp_path: Path, name: str) -> Tables:
    store = Store(tmp_path / "store")
    import_paths([samples / name], store)
    return open_store(store)


def test_a_lab_host_that_beacons_around_the_clock_has_no_quiet_baseline(
    samples: Path, tmp_path: Path
) -> None:
    # rita-proxy-beacon (PROVENANCE.txt): 10.136.0.18 beacons day and night for 28 hours, and
    # its other traffic is as much out of hours as in: nothing is out of character for it
    assert _run(_sample(samples, tmp_path, "zeek-tsv/rita-proxy-beacon")) == []


@pytest.mark.parametrize(
    "sample",
    [
        "zeek-json/wrccdc2018-zed-sample",  # a Saturday: every contact is out of hours
        "zeek-json/slips-test9-mixed",  # timestamps of 1970-01-01 00:00, a night
        "zeek-tsv/stratosphere-security-datasets/005-zeek-scenario-malicious",  # 1970 again
    ],
)
def test_captures_without_a_working_day_give_nothing(
    samples: Path, tmp_path: Path, sample: str
) -> None:
    assert _run(_sample(samples, tmp_path, sample)) == []
