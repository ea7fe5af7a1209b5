from __future__ import annotations

import numpy as np
import pytest

from homecall.simulator.c2 import (
    IMPLANTS,
    c2_count,
    checkin_times,
    schedule,
    sleep_intervals,
)

DAY_S = 86_400.0


@pytest.mark.parametrize(
    ("sleep_s", "jitter_ratio", "jitter_kind", "low", "high"),
    [
        (60, 0.0, "one-sided", 60.0, 60.0),  # Cobalt Strike default: no jitter
        (60, 0.2, "one-sided", 48.0, 60.0),  # sleep * (1 - U*j): only ever shorter
        (60, 0.5, "one-sided", 30.0, 60.0),
        (60, 0.5, "additive", 60.0, 90.0),  # Sliver: 60 s + U[0, 30 s)
        (5, 0.2, "symmetric", 4.0, 6.0),  # Empire: 5 s * (1 + U(-0.2, 0.2))
    ],
)
def test_intervals_stay_within_the_framework_bounds(
    sleep_s: float, jitter_ratio: float, jitter_kind: str, low: float, high: float
) -> None:
    rng = np.random.default_rng(1)
    times = checkin_times(
        rng, 0.0, DAY_S, sleep_s=sleep_s, jitter_ratio=jitter_ratio, jitter_kind=jitter_kind
    )
    intervals = np.diff(times)
    assert intervals.min() >= low - 1e-9
    assert intervals.max() <= high + 1e-9
    if jitter_ratio:  # the jitter really spreads over most of its range
        assert intervals.max() - intervals.min() > 0.9 * (high - low)
    assert times.size == pytest.approx(DAY_S / ((low + high) / 2), rel=0.02)


@pytest.mark.parametrize(
    ("jitter_kind", "expected_mean_s"),
    [("one-sided", 54.0), ("additive", 66.0), ("symmetric", 60.0)],
)
def test_mean_sleep_follows_the_jitter_semantics(jitter_kind: str, expected_mean_s: float) -> None:
    intervals = sleep_intervals(np.random.default_rng(2), 50_000, 60.0, 0.2, jitter_kind)
    assert intervals.mean() == pytest.approx(expected_mean_s, rel=0.005)


@pytest.mark.parametrize("missed_fraction", [0.0, 0.2, 0.5])
def test_missed_fraction_is_close_to_the_requested_one(missed_fraction: float) -> None:
    rng = np.random.default_rng(3)
    kept = checkin_times(rng, 0.0, 7 * DAY_S, sleep_s=60, missed_fraction=missed_fraction)
    scheduled = 7 * DAY_S / 60  # jitter 0: one check-in per sleep
    observed = 1 - kept.size / scheduled
    assert observed == pytest.approx(missed_fraction, abs=0.01)
    # a missed check-in leaves a gap of a whole number of sleeps, never a shorter one
    gaps = np.diff(kept) / 60
    assert np.allclose(gaps, np.round(gaps))
    assert (gaps >= 1 - 1e-9).all()


@pytest.mark.parametrize("conns_per_checkin", [1, 2, 3])
def test_connections_of_a_checkin_open_within_one_second(conns_per_checkin: int) -> None:
    timing = schedule(
        np.random.default_rng(4),
        0.0,
        DAY_S,
        sleep_s=60,
        jitter_ratio=0.2,
        conns_per_checkin=conns_per_checkin,
    )
    assert timing.conns_s.size == conns_per_checkin * timing.checkins_s.size
    assert (np.diff(timing.conns_s) > 0).all()
    spread = timing.conns_s - timing.checkins_s[timing.checkin_of_conn]
    assert spread.min() == 0.0
    assert spread.max() < 1.0
    per_checkin = np.bincount(timing.checkin_of_conn)
    assert set(per_checkin.tolist()) == {conns_per_checkin}


def test_schedule_stays_inside_the_window_and_is_reproducible() -> None:
    def run(seed: int) -> np.ndarray:
        return schedule(np.random.default_rng(seed), 1000.0, 5000.0, sleep_s=60).conns_s

    first = run(5)
    assert first.min() >= 1000.0
    assert first.max() < 5000.0
    assert np.array_equal(first, run(5))
    assert not np.array_equal(first, run(6))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sleep_s": 0}, "sleep_s"),
        ({"sleep_s": 60, "jitter_ratio": 1.0}, "jitter_ratio"),
        ({"sleep_s": 60, "missed_fraction": 1.0}, "missed_fraction"),
        ({"sleep_s": 60, "jitter_kind": "gaussian"}, "jitter_kind"),
    ],
)
def test_bad_schedule_parameters_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        checkin_times(np.random.default_rng(0), 0.0, 600.0, **kwargs)  # type: ignore[arg-type]


def test_bad_conns_per_checkin_is_refused() -> None:
    with pytest.raises(ValueError, match="conns_per_checkin"):
        schedule(np.random.default_rng(0), 0.0, 600.0, sleep_s=60, conns_per_checkin=0)


@pytest.mark.parametrize(
    ("hosts", "expected"),
    [(1, 1), (20, 1), (40, 2), (100, 5), (200, 7), (1000, 12)],
)
def test_c2_count_scales_modestly_with_the_fleet(hosts: int, expected: int) -> None:
    assert c2_count(hosts) == expected
    assert c2_count(hosts) <= max(1, hosts // 20)  # never more than 5 % (one at least)


def test_the_default_run_covers_the_required_mix() -> None:
    default = IMPLANTS[: c2_count(200)]
    kinds = {implant.kind for implant in default}
    assert kinds == {"cobalt-strike", "sliver", "empire"}
    cs_jitters = {i.jitter_ratio for i in default if i.kind == "cobalt-strike"}
    assert {0.0, 0.2, 0.5} <= cs_jitters
    assert any(implant.missed_fraction > 0 for implant in default)
    assert any(implant.conns_per_checkin > 1 for implant in default)
    assert {i.jitter_kind for i in default if i.kind == "sliver"} == {"additive"}
    assert {(i.sleep_s, i.jitter_kind) for i in default if i.kind == "empire"} == {(5, "symmetric")}
