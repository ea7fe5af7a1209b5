"""The beacon benchmark grid: C2 series over every timing corner, and the irregular null.

Used by `benchmarks/beacon_grid.py` and the tests, so both judge the detector on the same
traffic. A series is one (internal host, destination) pair: connection start times and the
bytes each way. Check-in timing comes from `simulator.c2.schedule` (the frameworks' jitter rules).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from homecall.simulator.c2 import schedule

__all__ = [
    "CHANGES",
    "CONNS",
    "DAY_S",
    "JITTERS",
    "KINDS",
    "MISSED",
    "NULL_KINDS",
    "SLEEPS_S",
    "Cell",
    "Series",
    "beacon_series",
    "cells",
    "changing_series",
    "null_series",
    "window_for",
]

DAY_S = 86_400.0
SLEEPS_S = (10.0, 60.0, 300.0, 900.0, 3600.0, 21_600.0, 86_400.0)
JITTERS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.8)
KINDS = ("one-sided", "symmetric", "additive")
MISSED = (0.0, 0.1, 0.3)
CONNS = (1, 2, 3)
NULL_KINDS = ("poisson", "sessions", "lognormal")


@dataclass(frozen=True, slots=True)
class Cell:
    """One corner of the grid."""

    sleep_s: float
    jitter_ratio: float
    jitter_kind: str
    missed_fraction: float
    conns_per_checkin: int

    @property
    def window_s(self) -> float:
        """How long the series runs: 24 h, 7 days for 1-6 h sleeps, 30 days for a daily sleep."""
        return window_for(self.sleep_s)


@dataclass(frozen=True, slots=True)
class Series:
    """One pair's traffic: connection starts (seconds from the window start) and bytes."""

    ts_s: npt.NDArray[np.float64]
    bytes_out: npt.NDArray[np.int64]
    bytes_in: npt.NDArray[np.int64]
    window_s: float

    @property
    def ts_us(self) -> npt.NDArray[np.int64]:
        """Start times in microseconds, as the store keeps them."""
        return np.round(self.ts_s * 1e6).astype(np.int64)


def window_for(sleep_s: float) -> float:
    """The analysis window the benchmark gives a sleep (issue 3's grid)."""
    if sleep_s >= DAY_S:
        return 30 * DAY_S
    if sleep_s >= 3600:
        return 7 * DAY_S
    return DAY_S


def cells() -> Iterator[Cell]:
    """Every cell: 7 sleeps x 6 jitters x 3 jitter kinds x 3 missed fractions x 3 conns."""
    for sleep, jitter, kind, missed, conns in itertools.product(
        SLEEPS_S, JITTERS, KINDS, MISSED, CONNS
    ):
        yield Cell(sleep, jitter, kind, missed, conns)


def beacon_series(rng: np.random.Generator, cell: Cell) -> Series:
    """An implant with the cell's timing; small steady requests, replies with rare task output."""
    plan = schedule(
        rng,
        0.0,
        cell.window_s,
        sleep_s=cell.sleep_s,
        jitter_ratio=cell.jitter_ratio,
        jitter_kind=cell.jitter_kind,
        missed_fraction=cell.missed_fraction,
        conns_per_checkin=cell.conns_per_checkin,
    )
    n = plan.conns_s.size
    out = rng.normal(420, 12, n).astype(np.int64)  # headers + encrypted metadata
    back = rng.normal(310, 10, n).astype(np.int64)  # "no tasks" answer
    tasks = rng.random(n) < 0.02  # now and then a task and its output
    back[tasks] += rng.lognormal(9, 1.5, int(tasks.sum())).astype(np.int64)
    return Series(plan.conns_s, out, back, cell.window_s)


CHANGES = ((60.0, 300.0), (300.0, 60.0), (900.0, 60.0), (10.0, 60.0))  # sleep before, after


def changing_series(
    rng: np.random.Generator, before_s: float, after_s: float, jitter_ratio: float, kind: str
) -> Series:
    """An implant whose operator changes the sleep halfway through a 24 h window."""
    half = DAY_S / 2
    parts = [
        schedule(rng, start, start + half, sleep_s=sleep, jitter_ratio=jitter_ratio,
                 jitter_kind=kind).conns_s
        for start, sleep in ((0.0, before_s), (half, after_s))
    ]  # fmt: skip
    ts = np.concatenate(parts)
    n = ts.size
    out = rng.normal(420, 12, n).astype(np.int64)
    back = rng.normal(310, 10, n).astype(np.int64)
    return Series(ts, out, back, DAY_S)


def null_series(rng: np.random.Generator, kind: str, window_s: float) -> Series:
    """Irregular traffic of one pair: Poisson, human sessions (on/off) or lognormal bursts."""
    if kind == "poisson":
        rate = 10 ** rng.uniform(-4, -1.5)  # one connection every 30 s to every 3 h
        n = rng.poisson(rate * window_s)
        ts = np.sort(rng.uniform(0, window_s, n))
    elif kind == "sessions":
        ts = _sessions(rng, window_s)
    elif kind == "lognormal":
        ts = _lognormal_bursts(rng, window_s)
    else:
        raise ValueError(f"kind must be one of {NULL_KINDS}, got {kind!r}")
    n = ts.size
    out = rng.lognormal(6.5, 1.2, n).astype(np.int64)
    back = rng.lognormal(8.5, 2.0, n).astype(np.int64)
    return Series(ts, out, back, window_s)


def _lognormal_bursts(rng: np.random.Generator, window_s: float) -> npt.NDArray[np.float64]:
    """Bursts of connections (software updates, sync, chatty apps): lognormal gaps between
    bursts (sigma 1-2.5, so heavy-tailed) and lognormal burst sizes, seconds apart inside."""
    median = 10 ** rng.uniform(1.5, 3.5)
    sigma = rng.uniform(1.0, 2.5)
    gaps = rng.lognormal(np.log(median), sigma, int(window_s / median * 2) + 10)
    starts = np.cumsum(gaps)
    starts = starts[starts < window_s]
    sizes = np.maximum(1, rng.lognormal(0.7, 0.8, starts.size).astype(np.int64))
    times = (
        np.repeat(starts, sizes)
        + np.concatenate(
            [np.concatenate(([0.0], np.cumsum(rng.exponential(2.0, k - 1)))) for k in sizes]
        )
        if starts.size
        else np.zeros(0)
    )
    ts = np.sort(times)
    return ts[ts < window_s]


def _sessions(rng: np.random.Generator, window_s: float) -> npt.NDArray[np.float64]:
    """A person using a service: sessions on working days, bursts of requests inside each."""
    days = int(window_s // DAY_S) or 1
    starts = []
    for day in range(days):
        if (day % 7) >= 5 and rng.random() < 0.8:
            continue  # weekends are mostly quiet
        k = rng.poisson(rng.uniform(1, 12))
        starts.append(day * DAY_S + rng.uniform(8 * 3600, 18 * 3600, k))
    session_starts = np.concatenate(starts) if starts else np.zeros(0)
    if session_starts.size == 0:
        return np.zeros(0)
    times = []
    for start in session_starts:
        k = 1 + rng.poisson(rng.uniform(2, 40))
        times.append(start + np.cumsum(rng.exponential(rng.uniform(2, 60), k)))
    ts = np.sort(np.concatenate(times))
    return ts[ts < window_s]
