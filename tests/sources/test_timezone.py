"""Local-time syslog logs: `[import] timezone` / `--timezone` converts their stamps to UTC."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from homecall.cli import app
from homecall.config import load_config
from homecall.errors import ConfigError
from homecall.sources import Problems, ReadOptions, bind, dnsmasq

runner = CliRunner()
BIND_LINES = (
    "19-Oct-2022 05:34:02.425 client 10.0.0.5#53211 (a.example): query: a.example IN A +\n"
    "Mar 26 02:30:00 ns1 named[7]: client 10.0.0.6#1 (b.example): query: b.example IN A +\n"
)
DNSMASQ_LINES = (
    "Jan  2 08:00:00 dnsmasq[830]: query[A] www.example.com from 192.168.4.3\n"
    "Jul  2 08:00:00 dnsmasq[830]: query[A] www.example.org from 192.168.4.3\n"
)


def _times(reader: object, path: Path, zone: str) -> list[datetime]:
    problems = Problems()
    rows = [
        row
        for _, batch in reader.read(path, problems, ReadOptions(timezone=zone))  # type: ignore[attr-defined]
        for row in batch.to_pylist()
    ]
    assert problems.bad_records == 0
    return [row["ts"] for row in rows]


def _log(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    mtime = datetime(2022, 12, 31, tzinfo=UTC).timestamp()  # the year of year-less stamps
    os.utime(path, (mtime, mtime))
    return path


def test_bind_stamps_are_read_in_the_configured_zone(tmp_path: Path) -> None:
    path = _log(tmp_path, "named.log", BIND_LINES)
    assert _times(bind, path, "UTC") == [
        datetime(2022, 10, 19, 5, 34, 2, 425000, tzinfo=UTC),
        datetime(2022, 3, 26, 2, 30, tzinfo=UTC),
    ]
    assert _times(bind, path, "Europe/Berlin") == [
        datetime(2022, 10, 19, 3, 34, 2, 425000, tzinfo=UTC),  # CEST, UTC+2
        datetime(2022, 3, 26, 1, 30, tzinfo=UTC),  # CET, UTC+1 (the change is on the 27th)
    ]


def test_dnsmasq_follows_daylight_saving(tmp_path: Path) -> None:
    path = _log(tmp_path, "dnsmasq.log", DNSMASQ_LINES)
    assert _times(dnsmasq, path, "America/New_York") == [
        datetime(2022, 1, 2, 13, 0, tzinfo=UTC),  # EST, UTC-5
        datetime(2022, 7, 2, 12, 0, tzinfo=UTC),  # EDT, UTC-4
    ]


def test_unknown_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus"):
        ReadOptions(timezone="Mars/Olympus")


def test_zone_from_the_configuration(tmp_path: Path) -> None:
    path = tmp_path / "homecall.toml"
    path.write_text('[import]\ntimezone = "Europe/Berlin"\n')
    assert load_config(path).read_options.timezone == "Europe/Berlin"
    path.write_text('[import]\ntimezone = "Nowhere/Land"\n')
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert error.value.key == "import.timezone"
    path.write_text('[import]\nzone = "UTC"\n')
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert error.value.key == "import.zone"


def test_cli_timezone_option(tmp_path: Path) -> None:
    log = _log(tmp_path, "dnsmasq.log", DNSMASQ_LINES)
    store = tmp_path / "store"
    bad = runner.invoke(app, ["import", str(log), "-s", str(store), "--timezone", "Nowhere/Land"])
    assert bad.exit_code == 2
    assert "Nowhere/Land" in bad.output
    good = runner.invoke(app, ["import", str(log), "-s", str(store), "--timezone", "Asia/Tokyo"])
    assert good.exit_code == 0, good.output
