from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from homecall.simulator import SimulationResult, simulate


@dataclass(frozen=True)
class ZeekLog:
    """A Zeek TSV file split into its parts, read independently of the simulator's writer."""

    header: list[str]
    fields: list[str]
    rows: list[list[str]]
    footer: str

    def column(self, name: str) -> list[str]:
        i = self.fields.index(name)
        return [row[i] for row in self.rows]


def parse_log(path: Path) -> ZeekLog:
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "", f"{path} does not end with a newline"
    lines = lines[:-1]
    header = lines[:8]
    fields = header[6].split("\t")[1:]
    rows = [line.split("\t") for line in lines[8:-1]]
    return ZeekLog(header=header, fields=fields, rows=rows, footer=lines[-1])


@pytest.fixture(scope="session")
def read_log() -> Callable[[Path], ZeekLog]:
    """parse_log, cached: several tests read the same session-wide logs."""
    return functools.cache(parse_log)


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    """The demo's run: 200 hosts, one day."""
    return simulate(tmp_path_factory.mktemp("default"), hosts=200, days=1, seed=7)


@pytest.fixture(scope="session")
def week_run(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    """A small fleet over three days, Saturday to Monday: weekends and day boundaries."""
    import datetime as dt

    return simulate(
        tmp_path_factory.mktemp("week"), hosts=40, days=3, seed=3, start=dt.date(2026, 11, 28)
    )
