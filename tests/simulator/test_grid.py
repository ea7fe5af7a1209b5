from __future__ import annotations

import numpy as np
import pytest

from homecall.simulator.grid import (
    DAY_S,
    NULL_KINDS,
    Cell,
    beacon_series,
    cells,
    null_series,
    window_for,
)


def test_grid_has_every_cell_of_issue_3() -> None:
    grid = list(cells())
    assert len(grid) == 7 * 6 * 3 * 3 * 3
    assert {c.window_s for c in grid} == {DAY_S, 7 * DAY_S, 30 * DAY_S}
    assert window_for(3600) == 7 * DAY_S
    assert window_for(86_400) == 30 * DAY_S


@pytest.mark.parametrize("kind", ["one-sided", "symmetric", "additive"])
def test_beacon_series_follows_its_cell(kind: str) -> None:
    cell = Cell(60.0, 0.2, kind, 0.1, 2)
    series = beacon_series(np.random.default_rng(3), cell)
    assert series.window_s == DAY_S
    assert np.all(np.diff(series.ts_s) >= 0)
    assert series.ts_s[0] >= 0
    assert series.ts_s[-1] < DAY_S
    checkins = series.ts_s[::2]
    gaps = np.diff(checkins)
    low, high = {"one-sided": (48, 60), "symmetric": (48, 72), "additive": (60, 72)}[kind]
    single = gaps[gaps < 1.5 * low]  # gaps without a missed check-in in between
    assert single.min() >= low - 1
    assert single.max() <= high + 1
    assert 0.05 < 1 - len(checkins) / (DAY_S / np.mean(single)) < 0.15  # about 10 % missed


@pytest.mark.parametrize("kind", NULL_KINDS)
def test_null_series_are_sorted_and_inside_the_window(kind: str) -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        series = null_series(rng, kind, DAY_S)
        assert np.all(np.diff(series.ts_s) >= 0)
        assert series.ts_s.size == series.bytes_out.size == series.bytes_in.size
        if series.ts_s.size:
            assert series.ts_s[0] >= 0
            assert series.ts_s[-1] < DAY_S
