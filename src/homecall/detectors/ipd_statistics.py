"""Inter-packet delay (IPD) statistics of covert-timing, pure NumPy over many flows at once.

Flows are laid end to end with offsets (`homecall.detectors.segments`); delays are integer
microseconds (differences of capture times, so exact), and each function returns one value
per flow, the same wherever the flow sits in a batch. The tests and their sources are in
docs/detection.md#covert-timing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from homecall.detectors import segments
from homecall.detectors.segments import Floats, Ints

__all__ = [
    "Baseline",
    "conditional_entropy_batch",
    "ks_batch",
    "ks_p_value",
    "lattice_batch",
    "own_edges",
    "regularity_batch",
    "subsample",
    "symbols",
]

SIGMA_FLOOR_US = 1.0  # a window's standard deviation is known to the capture's 1 us at best
_KEY_SHIFT = 41  # values < 2^41 us (25 days) keyed by series: series << 41 | value
MAX_VALUE_US = (1 << _KEY_SHIFT) - 1
HISTOGRAM_BIN_US = 200  # lattice test: delays binned to 0.2 ms (a 2 ms step keeps 98 % of R)
FFT_CHUNK_FLOWS = 16  # flows transformed together (16 x 65,536 points: about 16 MB)
FFT_PADDING = 4  # zero padding (at least): frequency steps fine enough to keep ~90 % of a peak


def _keyed(values: Ints, series: Ints) -> Ints:
    """One sortable int64 per value: values of series i sort after those of series i - 1."""
    return (series.astype(np.int64) << _KEY_SHIFT) | np.clip(values, 0, MAX_VALUE_US)


def _search(sorted_values: Ints, offsets: Ints, x: Ints, series: Ints, side: str) -> Ints:
    """For each x, how many values of its series (`series`) are < x ('left') or <= x ('right')."""
    keys = _keyed(sorted_values, segments.ids(offsets))
    found = np.searchsorted(keys, _keyed(x, series), side=side)  # type: ignore[call-overload]
    return np.asarray(found, dtype=np.int64) - offsets[:-1][series]


def regularity_batch(
    ipd_us: Ints, offsets: Ints, *, window: int, min_windows: int, max_windows: int
) -> Floats:
    """Cabuk, Brodley and Shields' regularity (CCS 2004): the delays cut into non-overlapping
    windows of `window` delays (at most `max_windows`), sigma_i the standard deviation of window
    i, regularity = STDEV over i < j of |sigma_i - sigma_j| / sigma_i. Low is regular (a
    stationary process: a coding scheme); NaN under `min_windows` windows."""
    n = segments.lengths(offsets)
    windows = max_windows
    count = np.minimum(max_windows, n // window)
    series = segments.ids(offsets)
    slot = (np.arange(len(ipd_us)) - offsets[:-1][series]) // window
    inside = slot < count[series]
    key = series[inside] * windows + slot[inside]
    cells = len(n) * windows
    x = ipd_us[inside].astype(np.float64)
    size = np.bincount(key, minlength=cells).astype(np.float64)
    mean = np.bincount(key, weights=x, minlength=cells) / np.maximum(size, 1.0)
    centred = x - mean[key]
    var = np.bincount(key, weights=centred * centred, minlength=cells) / np.maximum(size - 1, 1)
    sigma = np.maximum(np.sqrt(var), SIGMA_FLOOR_US).reshape(len(n), windows)
    sigma[np.arange(windows)[None, :] >= count[:, None]] = np.nan
    ratios = np.abs(sigma[:, :, None] - sigma[:, None, :]) / sigma[:, :, None]
    upper = np.triu(np.ones((windows, windows), dtype=bool), k=1)
    pairs = ratios[:, upper]  # (flows, pairs); NaN where a window is missing
    out = np.full(len(n), np.nan)
    ok = count >= max(min_windows, 3)
    if ok.any():
        out[ok] = np.nanstd(pairs[ok], axis=1, ddof=1)
    return out


def own_edges(sorted_us: Ints, offsets: Ints, bins: int) -> Floats:
    """(flows, bins - 1) bin edges splitting each flow's own delays into equiprobable bins."""
    edges = [
        segments.quantile(sorted_us.astype(np.float64), offsets, k / bins) for k in range(1, bins)
    ]
    return np.stack(edges, axis=1) if edges else np.zeros((len(offsets) - 1, 0))


def symbols(ipd_us: Ints, offsets: Ints, edges: Floats) -> Ints:
    """Each delay as its bin, 0..bins-1: how many of its flow's edges lie below it."""
    series = segments.ids(offsets)
    below = ipd_us[:, None].astype(np.float64) > edges[series]
    return np.asarray(below.sum(axis=1), dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Entropies:
    """Corrected conditional entropy per flow: its minimum over pattern lengths (bits), the
    length where it is reached, and the first-order entropy EN(1) (bits)."""

    cce_bits: Floats
    pattern_length: Ints
    entropy_bits: Floats


def conditional_entropy_batch(
    codes: Ints, offsets: Ints, *, bins: int, max_pattern: int
) -> Entropies:
    """Gianvecchio and Wang's corrected conditional entropy (CCS 2007, after Porta et al.):
    EN(m) the entropy of the patterns of m successive symbols, CE(m) = EN(m) - EN(m - 1),
    CCE(m) = CE(m) + perc(m) x EN(1) with perc(m) the share of patterns of length m seen once;
    the minimum over m = 1..max_pattern estimates the entropy rate."""
    if bins**max_pattern >= 2**62:
        raise ValueError(f"bins**max_pattern must stay under 2**62, got {bins}**{max_pattern}")
    n = segments.lengths(offsets)
    flows = len(n)
    series = segments.ids(offsets)
    pos = np.arange(len(codes)) - offsets[:-1][series]
    left = n[series] - pos  # symbols from each position to its flow's end
    pattern = np.zeros(len(codes), dtype=np.int64)
    previous = np.zeros(flows)
    first = np.zeros(flows)
    best = np.full(flows, np.inf)
    best_m = np.zeros(flows, dtype=np.int64)
    for m in range(1, max_pattern + 1):
        valid = left >= m
        if not valid.any():
            break
        shifted = np.minimum(np.arange(len(codes)) + m - 1, len(codes) - 1)
        pattern = pattern * bins + codes[shifted]
        entropy, unique_share = _pattern_entropy(pattern[valid], series[valid], n - m + 1, flows)
        if m == 1:
            first = entropy
        cce = entropy - previous + unique_share * first
        has = n - m + 1 >= 1
        better = has & (cce < best)
        best[better] = cce[better]
        best_m[better] = m
        previous = entropy
    best[~np.isfinite(best)] = np.nan
    best = np.maximum(best, 0.0)  # finite samples: EN(m) over fewer patterns can dip below
    return Entropies(cce_bits=best, pattern_length=best_m, entropy_bits=first)


def _pattern_entropy(
    pattern: Ints, series: Ints, totals: Ints, flows: int
) -> tuple[Floats, Floats]:
    """Shannon entropy (bits) of each flow's patterns and the share of its patterns seen once."""
    order = np.lexsort((pattern, series))
    p_sorted, s_sorted = pattern[order], series[order]
    starts = np.flatnonzero(
        np.concatenate(([True], (p_sorted[1:] != p_sorted[:-1]) | (s_sorted[1:] != s_sorted[:-1])))
    )
    counts = np.diff(np.concatenate((starts, [len(p_sorted)])))
    owner = s_sorted[starts]
    total = np.maximum(totals[owner], 1).astype(np.float64)
    share = counts / total
    entropy = np.asarray(
        np.bincount(owner, weights=-share * np.log2(share), minlength=flows), dtype=np.float64
    )
    once = np.bincount(owner, weights=(counts == 1).astype(np.float64), minlength=flows)
    return entropy, once / np.maximum(totals, 1).astype(np.float64)


def subsample(sorted_us: Ints, offsets: Ints, points: int) -> tuple[Ints, Ints]:
    """Each flow's delays as at most `points` evenly spaced order statistics (sorted): how a
    flow enters the fleet baseline, one flow one vote."""
    n = segments.lengths(offsets)
    m = np.minimum(n, points)
    new_offsets = np.concatenate(([0], np.cumsum(m)))
    series = segments.ids(new_offsets)
    rank = np.arange(new_offsets[-1]) - new_offsets[:-1][series]
    index = ((rank + 0.5) * n[series] / m[series]).astype(np.int64)
    return sorted_us[offsets[:-1][series] + index], new_offsets


@dataclass(frozen=True, slots=True)
class Baseline:
    """The fleet's delays for one service: every flow's subsample pooled, each flow weighing
    the same. `without` removes one flow again, so a flow is never compared with itself."""

    values_us: Ints  # pooled subsamples, sorted
    cumulative: Floats  # share of the pool (flows weighing equally) at or below each value
    flows: int
    delays: int  # delays behind the pool, for the KS test's effective sample size

    @classmethod
    def of(cls, sample_us: Ints, sample_offsets: Ints, delays: int) -> Baseline:
        """The pool of the flows' subsamples (`subsample`)."""
        m = segments.lengths(sample_offsets)
        weight = np.repeat(1.0 / (len(m) * np.maximum(m, 1)), m)
        order = np.argsort(sample_us, kind="stable")
        return cls(sample_us[order], np.cumsum(weight[order]), len(m), delays)

    def cdf(self, x_us: Ints, side: str) -> Floats:
        """Pool share <= x ('right') or < x ('left')."""
        index = np.searchsorted(self.values_us, x_us, side=side)  # type: ignore[call-overload]
        padded = np.concatenate(([0.0], self.cumulative))
        return np.asarray(padded[index], dtype=np.float64)

    def cdf_without(
        self, x_us: Ints, series: Ints, own_us: Ints, own_offsets: Ints, side: str
    ) -> Floats:
        """The pool's CDF at x without the subsample of x's own flow (`own_*`, by series)."""
        own = _search(own_us, own_offsets, x_us, series, side)
        own_share = own / np.maximum(segments.lengths(own_offsets)[series], 1)
        k = self.flows
        return np.clip((k * self.cdf(x_us, side) - own_share) / max(k - 1, 1), 0.0, 1.0)

    def edges_without(self, own_us: Ints, own_offsets: Ints, bins: int) -> Floats:
        """(flows, bins - 1) edges of equiprobable bins of the pool without each flow: the
        smallest pooled value where the pool's CDF without the flow reaches k / bins."""
        flows = len(own_offsets) - 1
        targets = np.arange(1, bins) / bins
        series = np.repeat(np.arange(flows), bins - 1)
        goal = np.tile(targets, flows) - 1e-12
        lo = np.zeros(len(series), dtype=np.int64)
        hi = np.full(len(series), len(self.values_us) - 1, dtype=np.int64)
        while (lo < hi).any():
            mid = (lo + hi) // 2
            value = self.values_us[mid]
            reached = self.cdf_without(value, series, own_us, own_offsets, "right") >= goal
            hi = np.where(reached, mid, hi)
            lo = np.where(reached, lo, mid + 1)
        return self.values_us[lo].astype(np.float64).reshape(flows, bins - 1)


def ks_batch(
    sorted_us: Ints, offsets: Ints, baseline: Baseline, own_us: Ints, own_offsets: Ints
) -> Floats:
    """Two-sample Kolmogorov-Smirnov distance of each flow's delays to the baseline without the
    flow. Exact: between two of the flow's own values its CDF is flat and the baseline's rises,
    so the supremum is at the flow's values, taken from the left and from the right."""
    series = segments.ids(offsets)
    n = np.maximum(segments.lengths(offsets), 1)[series]
    own_right = _search(sorted_us, offsets, sorted_us, series, "right") / n
    own_left = _search(sorted_us, offsets, sorted_us, series, "left") / n
    base_right = baseline.cdf_without(sorted_us, series, own_us, own_offsets, "right")
    base_left = baseline.cdf_without(sorted_us, series, own_us, own_offsets, "left")
    gap = np.maximum(np.abs(own_right - base_right), np.abs(own_left - base_left))
    out = np.zeros(len(offsets) - 1)
    np.maximum.at(out, series, gap)
    return out


def ks_p_value(distance: Floats, n: Ints, m: Ints | int) -> Floats:
    """Asymptotic two-sample KS p-values (Kolmogorov's distribution at the effective size
    n m / (n + m)); 1 where a sample is empty."""
    n_f = np.asarray(n, dtype=np.float64)
    m_f = np.broadcast_to(np.asarray(m, dtype=np.float64), n_f.shape)
    size = np.where((n_f > 0) & (m_f > 0), n_f * m_f / np.maximum(n_f + m_f, 1.0), 0.0)
    lam = np.nan_to_num(np.asarray(distance, dtype=np.float64)) * np.sqrt(size)
    k = np.arange(1, 101, dtype=np.float64)[None, :]
    terms = (-1.0) ** (k - 1) * np.exp(-2.0 * k * k * lam[:, None] ** 2)
    p = np.clip(2.0 * terms.sum(axis=1), 0.0, 1.0)
    return np.where(lam < 0.2, 1.0, p)


@dataclass(frozen=True, slots=True)
class Lattice:
    """Per flow: the strongest lattice of delays (Rayleigh test on delay phases). `spacing_s`
    is the lattice step, `concentration` the mean resultant length R (0 uniform phases, 1 every
    delay on the lattice), `z` = n R^2 and `threshold_z` the bar for the flow's search."""

    spacing_s: Floats
    concentration: Floats
    z: Floats
    threshold_z: Floats
    delays: Ints


def lattice_batch(
    ipd_us: Ints,
    offsets: Ints,
    *,
    min_spacing_s: float,
    max_spacing_s: float,
    quartile_factor: float,
    max_delay_s: float,
    alpha: float,
) -> Lattice:
    """Do a flow's delays sit on a lattice k x d (+ a fixed offset)? JitterBug (Shah, Molina
    and Blaze, USENIX Security 2006) delays packets so that each delay modulo its timing window
    w is 0 or w / 2: a lattice of step w / 2. For each flow, the Rayleigh statistic of the
    phases 2 pi x / d over every step d from min_spacing_s up to max_spacing_s and to the
    delays' lower quartile / quartile_factor (at steps near the delays' own scale a smooth
    distribution gives phases far from uniform), computed at once as the Fourier transform of
    a 0.2 ms histogram of the delays <= max_delay_s; the bar is Rayleigh's tail
    P(n R^2 > z) = exp(-z) corrected for the steps searched (alpha)."""
    flows = len(offsets) - 1
    spacing = np.full(flows, np.nan)
    power = np.zeros(flows)
    threshold = np.full(flows, np.inf)
    sorted_us = segments.sort(ipd_us.astype(np.float64), offsets)
    lower_quartile = segments.quantile(sorted_us, offsets, 0.25)
    top_us = np.minimum(lower_quartile / quartile_factor, max_spacing_s * 1e6)
    max_bin = int(max_delay_s * 1e6) // HISTOGRAM_BIN_US + 1
    size = 1 << int(FFT_PADDING * max_bin - 1).bit_length()  # a power of two: a fast FFT
    step_us = HISTOGRAM_BIN_US * size / np.arange(1, size // 2 + 1)  # lattice step of rfft bin k
    series = segments.ids(offsets)
    short = ipd_us <= max_delay_s * 1e6
    used = np.bincount(series[short], minlength=flows)
    tested = np.flatnonzero((top_us >= min_spacing_s * 1e6) & (used >= 2))
    for chunk in np.array_split(tested, -(-len(tested) // FFT_CHUNK_FLOWS)):
        if not len(chunk):
            continue
        local = np.full(flows, -1)
        local[chunk] = np.arange(len(chunk))
        keep = short & (local[series] >= 0)
        cell = local[series[keep]] * max_bin + ipd_us[keep] // HISTOGRAM_BIN_US
        counts = np.bincount(cell, minlength=len(chunk) * max_bin).reshape(len(chunk), max_bin)
        spectrum = np.abs(np.fft.rfft(counts.astype(np.float64), n=size, axis=1))[:, 1:]
        searched = (step_us[None, :] >= min_spacing_s * 1e6) & (
            step_us[None, :] <= top_us[chunk, None]
        )
        best = np.argmax(np.where(searched, spectrum, -1.0), axis=1)
        independent = np.maximum(searched.sum(axis=1) * max_bin / size, 1.0)
        spacing[chunk] = step_us[best] / 1e6
        power[chunk] = spectrum[np.arange(len(chunk)), best] / used[chunk]
        threshold[chunk] = np.log(independent / alpha)
    return Lattice(spacing, power, used * power * power, threshold, used.astype(np.int64))
