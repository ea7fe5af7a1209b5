"""Many series at once must give what each series gives alone."""

from __future__ import annotations

import numpy as np
import pytest

from homecall.detectors import segments
from homecall.detectors.beacon_scoring import (
    BeaconConfig,
    score_intervals,
    score_intervals_batch,
    score_sizes,
    score_sizes_batch,
)


def _random_series(seed: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    series = [rng.uniform(0, 1000, rng.integers(0, 30)) for _ in range(60)]
    flat = np.concatenate(series)
    offsets = np.concatenate(([0], np.cumsum([len(s) for s in series])))
    return series, flat, offsets


@pytest.mark.parametrize("q", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_quantile_matches_numpy(q: float) -> None:
    series, flat, offsets = _random_series(1)
    got = segments.quantile(segments.sort(flat, offsets), offsets, q)
    for i, s in enumerate(series):
        if len(s):
            assert got[i] == pytest.approx(np.quantile(s, q))
        else:
            assert np.isnan(got[i])


def test_diff_and_sums_match_numpy() -> None:
    series, flat, offsets = _random_series(2)
    deltas, new_offsets = segments.diff(segments.sort(flat, offsets), offsets)
    sums = segments.sums(deltas, new_offsets)
    for i, s in enumerate(series):
        expected = np.diff(np.sort(s))
        assert np.allclose(deltas[new_offsets[i] : new_offsets[i + 1]], expected)
        assert sums[i] == pytest.approx(expected.sum())


def test_batch_scores_equal_one_by_one() -> None:
    rng = np.random.default_rng(3)
    cfg = BeaconConfig()
    series = []
    for k in range(80):
        n = int(rng.integers(0, 400))
        gaps = 60 * (1 - rng.uniform(0, 0.5, n)) if k % 2 else rng.exponential(60, n)
        series.append((np.cumsum(gaps) * 1e6).astype(np.int64))
    flat = np.concatenate(series)
    offsets = np.concatenate(([0], np.cumsum([len(s) for s in series])))
    rng.shuffle(flat[offsets[5] : offsets[6]])  # the batch sorts within each series itself
    batch = score_intervals_batch(flat, offsets, cfg)
    sizes = score_sizes_batch(flat % 1000, offsets)
    for i, s in enumerate(series):
        assert batch.one(i) == score_intervals(s, cfg)
        if len(s):
            assert sizes.one(i) == score_sizes(s % 1000)
