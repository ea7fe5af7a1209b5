"""The RITA v5 baseline, checked on hand-worked cases (activecm/rita analysis/beacons.go rules)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import rita_v5


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 2, 3, 4], (1.5, 2.5, 3.5)),  # even: halves of two
        ([1, 2, 3, 4, 5], (1.5, 3.0, 4.5)),  # odd: the median is in neither half
        ([1, 2, 3, 4, 5, 6, 7, 8], (2.5, 4.5, 6.5)),
    ],
)
def test_quartiles(values: list[float], expected: tuple[float, float, float]) -> None:
    assert rita_v5.quartiles(np.asarray(values, dtype=np.float64)) == expected


@pytest.mark.parametrize(
    ("values", "default", "expected"),
    [
        ([60, 60, 60, 60], 1.0, 1.0),  # exact: no skew, MAD 0
        # Q1 30, Q2 52.5, Q3 70: IQR 40 >= 10, Bowley (30 + 70 - 105) / 40 = -0.125 -> 0.875;
        # |x - 52.5| sorted 2.5 2.5 17.5 22.5 37.5 42.5, MAD 20 -> (52.5 - 20) / 52.5 = 0.619;
        # S = round3((0.875 + 0.619...) / 2) = 0.747
        ([10, 30, 50, 55, 70, 90], 1.0, 0.747),
        # IQR under the 10 s dead-band: skew ignored; MAD 1 -> (60 - 1) / 60
        ([58, 59, 60, 61, 62], 1.0, round((1 + 59 / 60) / 2, 3)),
        ([0, 0, 0], 0.0, 0.5),  # median < 1: MAD score is the default d
    ],
)
def test_statistical_score(values: list[float], default: float, expected: float) -> None:
    sample = np.sort(np.asarray(values, dtype=np.float64))
    assert rita_v5.statistical_score(sample, default) == pytest.approx(expected)


def test_histogram_and_duration_of_a_steady_day() -> None:
    hist = np.full(24, 60)
    assert rita_v5.histogram_score(hist) == 1.0
    assert rita_v5.duration_score(hist, 0.0, 86_340.0, 86_340.0) == 1.0
    assert rita_v5.duration_score(np.array([1] * 5 + [0] * 19), 0.0, 100.0, 86_400.0) == 0.0


def test_beacon_every_minute_scores_one_and_slow_beacons_are_unseen() -> None:
    ts = np.arange(0, 86_400, 60.0)
    assert rita_v5.beacon_score(ts, np.full(ts.size, 500)) == 1.0
    daily = np.arange(0, 30 * 86_400, 86_400.0)  # only the last 24 h count: 2 connections
    assert rita_v5.beacon_score(daily, np.full(daily.size, 500)) == 0.0
