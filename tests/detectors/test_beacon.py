from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from homecall.config import Config
from homecall.detectors.beacon import BeaconConfig, score_intervals, score_sizes
from homecall.pipeline import hunt
from homecall.store import Store

CFG = BeaconConfig()


def _ts(seconds: list[float] | np.ndarray) -> np.ndarray:
    return (np.asarray(seconds, dtype=np.float64) * 1e6).astype(np.int64)


def _every(period: float, n: int) -> list[float]:
    return [i * period for i in range(n)]


def _calibrated(statistic: float, intervals: int) -> float:
    """docs/detection.md: max(confidence x (0.5 + 0.5 strength), strength x (1 - 1/sqrt(n)))."""
    z = (statistic - 0.27) * np.sqrt(intervals) / 0.56
    strength = (statistic - 0.25) / 0.75
    confidence = min(1.0, max(0.0, (z - 3.0) / 5.0))
    return max(confidence * (0.5 + 0.5 * strength), strength * (1 - 1 / np.sqrt(intervals)))


@pytest.mark.parametrize(
    ("seconds", "regularity", "period_s", "missed", "checkins", "per_checkin"),
    [
        # 101 exact check-ins: 100 intervals, dispersion 0, statistic 1: z = 0.73 x 10 / 0.56
        # = 13 (full confidence), strength 1
        (_every(60, 101), 1.0, 60.0, 0.0, 101, 1.0),
        # every 4th of 101 check-ins dropped: 76 left, gaps 60, 60, 120 x 25, so 25 of 100 missed;
        # folded gaps are exact: statistic 1 - 0.25 = 0.75 over 75 intervals: z = 7.42,
        # confidence 0.884, strength 0.667: 0.884 x 0.833 = 0.737 (> 0.667 x (1 - 1/sqrt(75)))
        (
            [t for i, t in enumerate(_every(60, 101)) if i % 4 != 3],
            _calibrated(0.75, 75),
            60.0,
            0.25,
            76,
            1.0,
        ),
        # two connections 0.4 s apart per check-in: merged, so 50 check-ins of 2
        (sorted(_every(60, 50) + [t + 0.4 for t in _every(60, 50)]), 1.0, 60.0, 0.0, 50, 2.0),
        # Empire's 5 s sleep is not mistaken for a multi-connection check-in
        (_every(5, 50), 1.0, 5.0, 0.0, 50, 1.0),
        # a slow beacon: 12 exact daily check-ins: z = 0.73 x sqrt(11) / 0.56 = 4.32, so
        # confidence 0.26; the strength path wins: 1 x (1 - 1/sqrt(11)) = 0.70
        (_every(86_400, 12), 1 - 1 / np.sqrt(11), 86_400.0, 0.0, 12, 1.0),
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
    assert 40 < score.period_s < 50  # the median interval: 60 * (1 - 0.25)


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
