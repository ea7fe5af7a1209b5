"""RITA v5's published beacon score, re-implemented as the benchmark's baseline.

From activecm/rita `analysis/beacons.go` as summarised in ../shared/notes/beaconing.md
(section 2): four sub-scores (timestamps, data sizes, a 24-bin histogram, duration) averaged,
over the last 24 h of the pair's connections, on timestamps truncated to whole seconds.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["beacon_score", "duration_score", "histogram_score", "quartiles", "statistical_score"]

WINDOW_S = 86_400  # RITA analyses the trailing 24 h
MAX_CONNS = 86_400  # at or above this a pair is a "strobe", not scored as a beacon
BIMODAL_MIN_HOURS = 11
MODE_SENSITIVITY = 0.05
OUTLIER_BINS = 1
DURATION_MIN_HOURS = 6
CONSISTENCY_IDEAL_HOURS = 12


def quartiles(x: npt.NDArray[np.float64]) -> tuple[float, float, float]:
    """montanaflynn/stats Quartile: medians of the lower half, the whole, the upper half
    (the median itself left out of both halves when n is odd)."""
    n = len(x)
    half = n // 2
    lower, upper = x[:half], x[half + (n % 2) :]
    return float(np.median(lower)), float(np.median(x)), float(np.median(upper))


def statistical_score(x: npt.NDArray[np.float64], default_mad: float) -> float:
    """S(x, d) = round3((1 - |Bowley skew| + MAD score) / 2) on a sorted sample."""
    q1, q2, q3 = quartiles(x)
    iqr = q3 - q1
    skew = 0.0 if iqr < 10 or q2 in (q1, q3) else (q1 + q3 - 2 * q2) / iqr
    mad = float(np.median(np.abs(x - q2)))
    mad_score = (q2 - mad) / q2 if q2 >= 1 else default_mad
    if math.isnan(mad_score):
        mad_score = 0.0
    mad_score = max(mad_score, 0.0)
    return round((1 - abs(skew) + mad_score) / 2, 3)


def histogram_score(hist: npt.NDArray[np.int64]) -> float:
    """max(1 - CV of the 24 bins, bimodal fit of the non-empty bars)."""
    mean = float(hist.mean())
    cv = float(hist.std()) / mean if mean > 0 else math.inf
    cv_score = 0.0 if cv > 1 else round(1 - cv, 3)
    bars = hist[hist > 0]
    fit = 0.0
    if len(bars) >= BIMODAL_MIN_HOURS:
        width = max(1, math.ceil(float(bars.max()) * MODE_SENSITIVITY))
        _, counts = np.unique((bars // width) * width, return_counts=True)
        top = np.sort(counts)[::-1]
        fit = min(1.0, float(top[:2].sum()) / max(len(bars) - OUTLIER_BINS, 1))
    return max(cv_score, fit)


def duration_score(
    hist: npt.NDArray[np.int64], first_s: float, last_s: float, span_s: float
) -> float:
    """max(coverage of the window, longest run of non-empty hours / 12), if >= 6 hours seen."""
    seen = hist > 0
    if seen.sum() < DURATION_MIN_HOURS:
        return 0.0
    coverage = min(1.0, math.ceil((last_s - first_s) / span_s * 1000) / 1000) if span_s else 0.0
    doubled = np.concatenate([seen, seen])  # runs wrap from the end of the window to its start
    longest = run = 0
    for flag in doubled:
        run = run + 1 if flag else 0
        longest = max(longest, run)
    longest = min(longest, len(seen))
    consistency = min(1.0, math.ceil(longest / CONSISTENCY_IDEAL_HOURS * 1000) / 1000)
    return max(coverage, consistency)


def beacon_score(ts_s: npt.NDArray[np.float64], bytes_out: npt.NDArray[np.int64]) -> float:
    """RITA v5's beacon score in 0..1 (0 when the pair is not scored at all)."""
    order = np.argsort(ts_s)
    ts = np.floor(ts_s[order])  # ClickHouse DateTime: whole seconds
    sizes = bytes_out[order].astype(np.float64)
    if len(ts) == 0:
        return 0.0
    keep = ts >= max(ts[0], ts[-1] - WINDOW_S)
    ts, sizes = ts[keep], sizes[keep]
    if len(np.unique(ts)) < 4 or len(ts) >= MAX_CONNS:
        return 0.0
    gaps = np.diff(ts)
    gaps = np.sort(gaps[gaps > 0])
    ts_score = statistical_score(gaps, 1.0) if len(gaps) >= 3 else 0.0
    ds_score = statistical_score(np.sort(sizes), 0.0) if len(sizes) >= 3 else 0.0
    start, end = max(ts[0], ts[-1] - WINDOW_S), ts[-1]
    span = end - start
    width = span / 24 if span > 0 else 1.0
    bins = np.minimum(((ts - start) / width).astype(np.int64), 23)
    hist = np.bincount(bins, minlength=24)
    hist_score = histogram_score(hist)
    dur_score = duration_score(hist, float(ts[0]), float(ts[-1]), float(span))
    return round(0.25 * (ts_score + ds_score + hist_score + dur_score), 3)
