from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from homecall.config import Config
from homecall.detectors import beacon_null
from homecall.detectors.beacon import BeaconConfig, score_intervals, score_sizes
from homecall.detectors.beacon_scoring import null_z, score_intervals_batch, sleep_change
from homecall.pipeline import hunt
from homecall.store import Store

CFG = BeaconConfig()


def _ts(seconds: list[float] | np.ndarray) -> np.ndarray:
    return (np.asarray(seconds, dtype=np.float64) * 1e6).astype(np.int64)


def _every(period: float, n: int) -> list[float]:
    return [i * period for i in range(n)]


def _regularity(spread: float, intervals: int, mean_gap: float) -> float:
    """docs/detection.md: confidence(z) x (0.5 + 0.5 strength), z from the Poisson null table
    at the merge load x, where x e^-x = merge gap (2 s) / mean gap."""
    statistic = np.log(max(spread, 0.003))
    load = 2.0 / mean_gap
    for _ in range(20):  # fixed point of x = (2 / mean_gap) e^x
        load = 2.0 / mean_gap * np.exp(load)
    z = float(null_z(np.array([statistic]), np.array([load]), np.array([intervals]))[0])
    poisson = np.interp(load, beacon_null.LOADS, [row[-1] for row in beacon_null.CENTER])
    strength = 1 - np.exp(statistic - poisson)
    return min(1.0, max(0.0, (z - 1.5) / 8.5)) * (0.5 + 0.5 * strength)


@pytest.mark.parametrize(
    ("seconds", "regularity", "period_s", "missed", "checkins", "per_checkin"),
    [
        # 101 exact check-ins: log-interval spread 0 (read as the 0.003 floor), full confidence
        (_every(60, 101), _regularity(0.0, 100, 60), 60.0, 0.0, 101, 1.0),
        # every 4th of 101 check-ins dropped: 76 left, gaps 60, 60, 120 x 25. Log gaps over the
        # median: 0 (50 times) and ln 2 (25): spread ln 2 x sqrt(1/3 x 2/3) = 0.327; the
        # mixture fit folds the 120 s gaps: period 60, 25 of 100 sleeps missed
        (
            [t for i, t in enumerate(_every(60, 101)) if i % 4 != 3],
            _regularity(np.log(2) * np.sqrt(2) / 3, 75, 80),
            60.0,
            0.25,
            76,
            1.0,
        ),
        # two connections 0.4 s apart per check-in: merged, so 50 check-ins of 2
        (
            sorted(_every(60, 50) + [t + 0.4 for t in _every(60, 50)]),
            _regularity(0.0, 49, 60),
            60.0,
            0.0,
            50,
            2.0,
        ),
        # Empire's 5 s sleep is not mistaken for a multi-connection check-in
        (_every(5, 50), _regularity(0.0, 49, 60), 5.0, 0.0, 50, 1.0),
        # a slow beacon: 12 exact daily check-ins are as sure as a fast one
        (_every(86_400, 12), _regularity(0.0, 11, 86_400), 86_400.0, 0.0, 12, 1.0),
    ],
)
def test_score_intervals_hand_worked(
    seconds: list[float],
    regularity: float,
    period_s: float,
    missed: float,
    checkins: int,
    per_checkin: float,
) -> None:
    score = score_intervals(_ts(seconds), CFG)
    assert score is not None
    assert score.period_s == pytest.approx(period_s)
    assert score.missed_fraction == pytest.approx(missed)
    assert score.checkins == checkins
    assert score.conns_per_checkin == pytest.approx(per_checkin)
    assert score.regularity == pytest.approx(regularity, abs=0.005)
    assert score.regularity > 0.8


def test_null_table_lookup_is_exact_on_the_grid() -> None:
    j = beacon_null.INTERVALS.index(100)
    for i, load in enumerate(beacon_null.LOADS):
        center, spread = beacon_null.CENTER[i][j], beacon_null.SPREAD[i][j]
        z = null_z(np.array([center - 2 * spread]), np.array([load]), np.array([100]))
        assert z[0] == pytest.approx(2.0)


def test_poisson_null_is_calibrated() -> None:
    """About 1 in 1,000 Poisson series passes z > 3.09, whatever its rate or length."""
    rng = np.random.default_rng(3)
    for mean_gap, n in ((1000.0, 20), (60.0, 300), (8.0, 500), (3.0, 200)):
        ts = [np.cumsum(rng.exponential(mean_gap, size=n)) for _ in range(4000)]
        offsets = np.concatenate(([0], np.cumsum([len(t) for t in ts])))
        z = score_intervals_batch(_ts(np.concatenate(ts)), offsets, CFG).periodicity_z
        assert 0.0002 < (z > 3.09).mean() < 0.004, (mean_gap, n)


def test_too_few_checkins_give_no_score() -> None:
    assert score_intervals(_ts([0, 60, 120]), CFG) is None


def test_bursts_faster_than_a_second_are_not_beacons() -> None:
    assert score_intervals(_ts(_every(0.01, 50)), CFG) is None


def test_poisson_arrivals_are_not_regular() -> None:
    rng = np.random.default_rng(1)
    scores = [
        score_intervals(_ts(np.cumsum(rng.exponential(60, size=200))), CFG).regularity  # type: ignore[union-attr]
        for _ in range(50)
    ]
    assert max(scores) < 0.15


def test_cobalt_strike_half_jitter_stays_regular() -> None:
    rng = np.random.default_rng(2)
    gaps = 60 * (1 - rng.uniform(0, 0.5, size=1440))  # sleep * (1 - U * j), j = 50 %
    score = score_intervals(_ts(np.cumsum(gaps)), CFG)
    assert score is not None
    assert score.regularity > 0.6
    assert score.period_s == pytest.approx(45, rel=0.02)  # the mean sleep: 60 * (1 - 0.25)
    assert score.missed_fraction == 0.0  # a wide jitter is not mistaken for missed check-ins


@pytest.mark.parametrize(
    ("sizes", "regularity", "median"),
    [
        ([100, 100, 100, 5000], 1.0, 100.0),  # one large task output does not break it
        ([100, 200, 300], 0.5, 200.0),  # MAD 100 / median 200
        ([0, 0, 0, 0], 1.0, 0.0),  # failed connections: always nothing
    ],
)
def test_score_sizes(sizes: list[int], regularity: float, median: float) -> None:
    score = score_sizes(np.asarray(sizes, dtype=np.int64))
    assert score.regularity == pytest.approx(regularity)
    assert score.median_bytes == median


def test_njrat_pair_is_in_the_top_three_of_its_host(samples: Path, tmp_path: Path) -> None:
    folder = samples / "zeek-tsv/stratosphere-security-datasets/001-zeek-scenario-malicious"
    result = hunt([folder], Store(tmp_path / "store"), Config())
    # PROVENANCE.txt: njRAT C2 192.168.1.115 -> 41.108.179.197:1177 (237 flows labelled CC)
    of_host = [f for f in result.findings if f.src == "192.168.1.115"]
    assert ("41.108.179.197", 1177) in [(f.dst, f.dst_port) for f in of_host[:3]]
    beacon = next(f for f in result.findings if f.detector == "beacon")
    assert (beacon.src, beacon.dst) == ("192.168.1.115", "41.108.179.197")
    assert beacon.evidence["connections"] == 237
    assert len(beacon.evidence["uids"]) == 20


def test_proxy_beacon_is_the_top_beacon(samples: Path, tmp_path: Path) -> None:
    folder = samples / "zeek-tsv/rita-proxy-beacon"
    result = hunt([folder], Store(tmp_path / "store"), Config(), detectors=["beacon"])
    top = result.findings[0]
    # PROVENANCE.txt: 10.136.0.18 beacons through the proxy 10.136.0.16:3128 (HTTP CONNECT)
    # to www.honestimnotevil.com; www.google.com (6 connections) is the benign contrast
    assert (top.src, top.dst, top.dst_port) == ("10.136.0.18", "www.honestimnotevil.com", 443)
    assert top.evidence["grouping"] == "proxy"
    assert all(f.dst != "www.google.com" or f.score < top.score for f in result.findings)


def test_wrccdc_tsv_and_json_give_the_same_beacons(samples: Path, tmp_path: Path) -> None:
    # the same traffic logged twice (PROVENANCE.txt); ssl.log without conn.log: TLS records
    # stand in for their connections
    results = []
    for folder in ("zeek-tsv", "zeek-json"):
        logs = samples / folder / "wrccdc2018-zed-sample"
        store = Store(tmp_path / folder)
        found = hunt([logs], store, Config(), detectors=["beacon"]).findings
        results.append([(f.src, f.dst, f.dst_port, round(f.score, 6)) for f in found])
    assert results[0] == results[1]
    assert results[0]  # TLS-only data is analysed, not skipped


def test_a_sleep_that_changes_mid_run_is_found() -> None:
    rng = np.random.default_rng(4)
    before = np.cumsum(60 * (1 - rng.uniform(0, 0.2, size=300)))  # 60 s, 20 % jitter
    after = before[-1] + np.cumsum(300 * (1 - rng.uniform(0, 0.2, size=100)))  # then 5 min
    change = sleep_change(_ts(np.concatenate([before, after])), CFG)
    assert change is not None
    assert change[0] == pytest.approx(54, rel=0.05)  # medians: 60 x 0.9 and 300 x 0.9
    assert change[1] == pytest.approx(270, rel=0.05)
    assert change[2] == pytest.approx(before[-1], abs=1e-3)  # the first 5 min sleep starts here
    assert score_intervals(_ts(np.concatenate([before, after])), CFG).regularity > 0.5  # type: ignore[union-attr]


def test_a_steady_or_random_series_has_no_sleep_change() -> None:
    rng = np.random.default_rng(5)
    assert sleep_change(_ts(np.cumsum(60 * (1 - rng.uniform(0, 0.5, size=400)))), CFG) is None
    assert sleep_change(_ts(np.cumsum(rng.exponential(60, size=400))), CFG) is None


def test_same_period_hosts_are_counted_per_destination() -> None:
    from datetime import UTC, datetime

    from homecall.detectors.beacon import _same_period
    from homecall.findings import Finding

    now = datetime(2026, 1, 1, tzinfo=UTC)

    def beacon(src: str, dst: str, period: float) -> Finding:
        evidence = {"grouping": "domain", "period_s": period}
        return Finding(
            detector="beacon", src=src, dst=dst, dst_port=443, score=0.5, first_seen=now,
            last_seen=now, summary="a beacon", evidence=evidence,
        )  # fmt: skip

    found = _same_period(
        [
            beacon("10.0.0.1", "agent.example", 300.0),
            beacon("10.0.0.2", "agent.example", 310.0),  # within 10 %: the same timer
            beacon("10.0.0.3", "agent.example", 900.0),  # another period
            beacon("10.0.0.4", "other.example", 300.0),  # another destination
        ]
    )
    assert [f.evidence.get("same_period_hosts") for f in found] == [2, 2, None, None]
    assert found[0].evidence["context"] == "2 internal hosts call agent.example at this period"
    assert found[0].score == 0.5  # context only: the prevalence factor already lowered it
