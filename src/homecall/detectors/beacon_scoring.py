"""Beacon scoring: the per-series maths, pure NumPy, on one series or many at once.

The batch functions take series laid end to end with offsets (`homecall.detectors.segments`)
and do the work of every candidate in a fixed number of NumPy passes; the one-series functions
call them, so there is one implementation. The maths is in docs/detection.md#beacon.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from homecall.detectors import beacon_null, segments
from homecall.detectors.segments import Floats, Ints

__all__ = [
    "BeaconConfig",
    "Checkins",
    "IntervalScore",
    "IntervalScores",
    "SizeScore",
    "SizeScores",
    "beacon_score",
    "checkins_batch",
    "combine",
    "dispersion_batch",
    "merge_load",
    "null_z",
    "period_batch",
    "score_intervals",
    "score_intervals_batch",
    "score_sizes",
    "score_sizes_batch",
    "shared_factor",
    "sleep_change",
]

LOW_CLIP = 0.1  # an interval under a tenth of the median counts as a tenth: bounded influence
SD_FLOOR = 0.003  # log-interval spread below this (clock resolution) reads as this
Z_FLOOR = 1.5  # confidence 0 here ...
Z_FULL = 10.0  # ... and 1 here: a handful of exact gaps (z 7-8) is not yet a sure beacon
EM_ROUNDS = 12
VAR_FLOOR = 0.001  # sleeps are known to 0.1 % at best (clock resolution, scheduling)
EM_MAX_MULTIPLE = 4  # a gap is 1..4 sleeps; longer gaps count as 4 (outages are not check-ins)


@dataclass(frozen=True, slots=True, kw_only=True)
class BeaconConfig:
    """Settings under [detectors.beacon] in homecall.toml."""

    min_checkins: int = 4  # fewer give 2 intervals: no usable dispersion statistic (RITA uses 4)
    # Connections this close are one check-in (multi-connection implants open theirs within
    # a second), and only if also under 20 % of the typical gap (keeps 5 s sleeps). The null
    # table (beacon_null.py) is calibrated for these two values.
    merge_gap_s: float = 2.0
    merge_ratio: float = 0.2
    min_period_s: float = 1.0  # faster "check-ins" are bursts of one session (C2 sleeps are >= 1 s)
    min_score: float = 0.3  # below this a pair is not reported; Poisson traffic scores < 0.1
    shared_ratio: float = 0.1  # a destination 10 % of the fleet talks to is shared infrastructure
    shared_damping: float = 0.9  # ...and its score is cut by up to 90 % (lowered, never hidden)
    min_fleet: int = 10  # prevalence means nothing in a fleet smaller than this
    service_damping: float = 0.5  # a known timer-driven service (NTP, OCSP, updates): score x0.5
    working_hours_utc: tuple[int, int] = (8, 18)  # for off_hours_ratio: weekdays, hours in UTC
    size_weight: float = 0.2  # share of the score from size regularity (RITA: 0.25)
    coverage_weight: float = 0.2  # share from how much of the window the pair spans


@dataclass(frozen=True, slots=True)
class IntervalScore:
    """Regularity of check-ins: `regularity` 0..1 with the estimates behind it."""

    regularity: float
    period_s: float
    jitter_ratio: float
    missed_fraction: float
    checkins: int
    conns_per_checkin: float
    periodicity_z: float

    @property
    def p_value(self) -> float:
        """One-sided p-value of the periodicity test against Poisson arrivals."""
        return 0.5 * math.erfc(self.periodicity_z / math.sqrt(2.0))


@dataclass(frozen=True, slots=True)
class SizeScore:
    """Regularity of per-connection sizes in one direction (median absolute deviation based)."""

    regularity: float
    median_bytes: float
    spread_ratio: float


@dataclass(frozen=True, slots=True)
class IntervalScores:
    """`IntervalScore` for many series; `valid` is False where a series cannot be scored."""

    valid: npt.NDArray[np.bool_]
    regularity: Floats
    period_s: Floats
    jitter_ratio: Floats
    missed_fraction: Floats
    checkins: Ints
    conns_per_checkin: Floats
    periodicity_z: Floats

    def one(self, i: int) -> IntervalScore | None:
        """Series i as an `IntervalScore`, or None when it cannot be scored."""
        if not self.valid[i]:
            return None
        return IntervalScore(
            regularity=float(self.regularity[i]),
            period_s=float(self.period_s[i]),
            jitter_ratio=float(self.jitter_ratio[i]),
            missed_fraction=float(self.missed_fraction[i]),
            checkins=int(self.checkins[i]),
            conns_per_checkin=float(self.conns_per_checkin[i]),
            periodicity_z=float(self.periodicity_z[i]),
        )


@dataclass(frozen=True, slots=True)
class SizeScores:
    """`SizeScore` for many series."""

    regularity: Floats
    median_bytes: Floats
    spread_ratio: Floats

    def one(self, i: int) -> SizeScore:
        """Series i as a `SizeScore`."""
        return SizeScore(
            regularity=float(self.regularity[i]),
            median_bytes=float(self.median_bytes[i]),
            spread_ratio=float(self.spread_ratio[i]),
        )


@dataclass(frozen=True, slots=True)
class Checkins:
    """Connections merged into check-ins: the intervals between check-in starts per series."""

    starts: Floats  # seconds: when each check-in began, series after series
    intervals: Floats  # seconds between successive starts
    offsets: Ints  # of `intervals`
    checkins: Ints  # per series
    gaps: Ints  # connection gaps per series (connections - 1)
    merge_below_s: Floats  # per series: gaps under this joined two connections


def checkins_batch(ts_s: Floats, offsets: Ints, cfg: BeaconConfig) -> Checkins:
    """A connection starts a check-in unless it follows the previous one within
    min(merge_gap_s, merge_ratio x the 90th percentile gap) of its series."""
    ts = segments.sort(ts_s, offsets)
    gaps, gap_offsets = segments.diff(ts, offsets)
    typical = segments.quantile(segments.sort(gaps, gap_offsets), gap_offsets, 0.9)
    merge_below = np.nan_to_num(np.minimum(cfg.merge_gap_s, cfg.merge_ratio * typical))
    gap_series = segments.ids(gap_offsets)
    later = np.arange(len(gaps)) - gap_offsets[gap_series] + offsets[gap_series] + 1
    is_start = np.ones(len(ts), dtype=bool)
    is_start[later] = gaps > merge_below[gap_series]
    per_series = np.bincount(segments.ids(offsets)[is_start], minlength=len(offsets) - 1)
    start_offsets = np.concatenate(([0], np.cumsum(per_series)))
    intervals, offsets_i = segments.diff(ts[is_start], start_offsets)
    return Checkins(
        ts[is_start], intervals, offsets_i, segments.lengths(start_offsets),
        segments.lengths(gap_offsets), merge_below,
    )  # fmt: skip


def dispersion_batch(intervals: Floats, offsets: Ints) -> tuple[Floats, Floats]:
    """The spread of each series' log intervals, as log(sd), and the median interval.

    Intervals are measured against their median and clipped below at LOW_CLIP of it, so one
    stray connection cannot dominate; long gaps (outages, missed check-ins) stay in. Poisson
    arrivals give sd 1.28 (the Gumbel spread of log-exponential gaps) before merging.
    """
    median = segments.quantile(segments.sort(intervals, offsets), offsets, 0.5)
    safe = np.where(np.nan_to_num(median) > 0, median, 1.0)[segments.ids(offsets)]
    logs = np.maximum(np.log(np.maximum(intervals, 1e-9) / safe), math.log(LOW_CLIP))
    spread = segments.std(logs, offsets)
    return np.log(np.maximum(spread, SD_FLOOR)), median


def merge_load(checkins: Checkins) -> Floats:
    """The Poisson-equivalent merge load x = rate x merge gap of each series.

    Merging makes random traffic look more regular the more of its gaps fall under the merge
    gap, so the null is indexed by x. Measured on check-ins, a Poisson process of rate r gives
    x e^-x with x = r g; this inverts it (x <= 1)."""
    span = segments.sums(checkins.intervals, checkins.offsets)
    n = segments.lengths(checkins.offsets)
    rate = np.divide(n, span, out=np.zeros(len(span)), where=span > 0)
    seen = np.clip(rate * checkins.merge_below_s, 0.0, math.exp(-1.0))
    return np.interp(seen, _LOAD_GRID * np.exp(-_LOAD_GRID), _LOAD_GRID)


_LOAD_GRID = np.linspace(0.0, 1.0, 2001)


def null_z(statistic: Floats, load: Floats, n_intervals: Ints) -> Floats:
    """How many null standard deviations below Poisson arrivals (same load, same number of
    intervals) a log-spread lies: the calibrated periodicity test (beacon_null.py)."""
    loads = np.asarray(beacon_null.LOADS)
    log_ns = np.log(np.asarray(beacon_null.INTERVALS, dtype=np.float64))
    center = np.asarray(beacon_null.CENTER)
    spread = np.asarray(beacon_null.SPREAD)
    x = np.clip(load, loads[0], loads[-1])
    log_n = np.log(np.maximum(n_intervals, 1).astype(np.float64))
    inside = np.clip(log_n, log_ns[0], log_ns[-1])
    mu = _bilinear(loads, log_ns, center, x, inside)
    sd = _bilinear(loads, log_ns, spread, x, inside)
    sd = sd * np.exp(0.5 * np.minimum(log_ns[-1] - log_n, 0.0))  # beyond the table: 1/sqrt(n)
    return np.asarray((mu - statistic) / sd, dtype=np.float64)


def _bilinear(xs: Floats, ys: Floats, table: Floats, x: Floats, y: Floats) -> Floats:
    i = np.clip(np.searchsorted(xs, x, side="right") - 1, 0, len(xs) - 2)
    j = np.clip(np.searchsorted(ys, y, side="right") - 1, 0, len(ys) - 2)
    tx = (x - xs[i]) / (xs[i + 1] - xs[i])
    ty = (y - ys[j]) / (ys[j + 1] - ys[j])
    low = table[i, j] * (1 - ty) + table[i, j + 1] * ty
    high = table[i + 1, j] * (1 - ty) + table[i + 1, j + 1] * ty
    return np.asarray(low * (1 - tx) + high * tx, dtype=np.float64)


def period_batch(intervals: Floats, offsets: Ints) -> tuple[Floats, Floats, Floats]:
    """Mean sleep, its standard deviation and the missed fraction of each series.

    A gap is k sleeps (k = 1..4, k - 1 check-ins missed, each with probability m); a sleep is
    ~N(mu, s^2), so a gap of k sleeps ~N(k mu, k s^2). EM fits (mu, s, m); the plain mean
    (no missed check-ins) is kept unless the mixture's log-likelihood beats it by more than
    log(n), the price of its extra parameter (BIC), so a widely jittered beacon is not folded.
    """
    n = segments.lengths(offsets)
    ids = segments.ids(offsets)
    count = np.maximum(n, 1).astype(np.float64)
    mean = segments.sums(intervals, offsets) / count
    var0 = np.maximum(segments.std(intervals, offsets) ** 2, (VAR_FLOOR * mean) ** 2 + 1e-12)
    plain = segments.sums(_normal_logpdf(intervals, mean[ids], var0[ids]), offsets)
    ks = np.arange(1, EM_MAX_MULTIPLE + 1, dtype=np.float64)
    median = segments.quantile(segments.sort(intervals, offsets), offsets, 0.5)
    mu = np.where(np.nan_to_num(median) > 0, median, 1.0)
    var = (0.1 * mu) ** 2
    missed = np.full(len(mu), 0.1)
    total = segments.sums(intervals, offsets)
    for _ in range(EM_ROUNDS):
        weights, log_like = _responsibilities(intervals, ids, ks, mu, var, missed)
        sleeps = weights @ ks  # expected sleeps in each gap
        expected = np.maximum(segments.sums(sleeps, offsets), 1e-12)
        mu = np.where(expected > 0, total / expected, mu)
        resid = (weights * (intervals[:, None] - ks * mu[ids][:, None]) ** 2 / ks).sum(axis=1)
        var = np.maximum(segments.sums(resid, offsets) / count, (VAR_FLOOR * mu) ** 2 + 1e-12)
        missed = np.clip(1.0 - n / expected, 0.0, 0.9)
    _, log_like = _responsibilities(intervals, ids, ks, mu, var, missed)
    mixture = segments.sums(log_like, offsets)
    folded = mixture - plain > np.log(np.maximum(n, 2))
    return (
        np.where(folded, mu, mean),
        np.sqrt(np.where(folded, var, var0)),
        np.where(folded, missed, 0.0),
    )


def _normal_logpdf(x: Floats, mean: Floats, var: Floats) -> Floats:
    return np.asarray(-0.5 * ((x - mean) ** 2 / var + np.log(2 * np.pi * var)), dtype=np.float64)


def _responsibilities(
    intervals: Floats, ids: Ints, ks: Floats, mu: Floats, var: Floats, missed: Floats
) -> tuple[npt.NDArray[np.float64], Floats]:
    """P(gap i is k sleeps) for every gap and k, and each gap's log-likelihood."""
    m = np.clip(missed, 1e-6, 0.9)[ids][:, None]
    logp = (
        _normal_logpdf(intervals[:, None], ks * mu[ids][:, None], ks * var[ids][:, None])
        + (ks - 1) * np.log(m)
        + np.log1p(-m)
    )
    top = logp.max(axis=1)
    weights = np.exp(logp - top[:, None])
    total = weights.sum(axis=1)
    return weights / total[:, None], top + np.log(total)


def score_intervals_batch(ts_us: Ints, offsets: Ints, cfg: BeaconConfig) -> IntervalScores:
    """Regularity of check-ins of every series, with period, jitter and missed check-ins."""
    found = checkins_batch(ts_us.astype(np.float64) / 1e6, offsets, cfg)
    n = segments.lengths(found.offsets)
    statistic, median = dispersion_batch(found.intervals, found.offsets)
    enough = (found.gaps >= cfg.min_checkins - 1) & (n >= cfg.min_checkins - 1)
    valid = enough & (np.nan_to_num(median) >= cfg.min_period_s)
    load = merge_load(found)
    z = np.where(valid, np.nan_to_num(null_z(statistic, load, n)), 0.0)
    # how sure (the calibrated test) times how periodic (the spread against Poisson's): a
    # long, loosely jittered beacon scores; a short, noisy one does not
    poisson = _bilinear(
        np.asarray(beacon_null.LOADS),
        np.log(np.asarray(beacon_null.INTERVALS, dtype=np.float64)),
        np.asarray(beacon_null.CENTER),
        np.clip(load, beacon_null.LOADS[0], beacon_null.LOADS[-1]),
        np.full(len(load), math.log(beacon_null.INTERVALS[-1])),
    )
    strength = np.clip(1.0 - np.exp(statistic - poisson), 0.0, 1.0)
    confidence = np.clip((z - Z_FLOOR) / (Z_FULL - Z_FLOOR), 0.0, 1.0)
    regularity = np.where(valid, confidence * (0.5 + 0.5 * strength), 0.0)
    period = np.where(np.isnan(median), 0.0, median)
    sd = np.zeros(len(period))
    missed = np.zeros(len(period))
    worth = valid & (z > Z_FLOOR)  # the mixture fit costs; only candidates get it
    if worth.any():
        sub, sub_offsets = segments.take(found.intervals, found.offsets, worth)
        fitted = period_batch(sub, sub_offsets)
        period[worth], sd[worth], missed[worth] = (
            fitted[0][worth],
            fitted[1][worth],
            fitted[2][worth],
        )
    jitter = np.divide(math.sqrt(3.0) * sd, period, out=np.zeros(len(period)), where=period > 0)
    return IntervalScores(
        valid=valid,
        regularity=np.nan_to_num(regularity),
        period_s=period,
        jitter_ratio=jitter,
        missed_fraction=missed,
        checkins=found.checkins,
        conns_per_checkin=(found.gaps + 1) / np.maximum(found.checkins, 1),
        periodicity_z=z,
    )


def sleep_change(ts_us: Ints, cfg: BeaconConfig) -> tuple[float, float, float] | None:
    """A sleep that changed once mid-run: (median interval before, after, and the time in
    seconds of the check-in that began the new sleep), or None. The split is the one that best
    explains the log intervals (least squares); it is reported when it explains more than half
    their variance and the two medians differ by half or more, each side with at least
    2 x min_checkins intervals."""
    found = checkins_batch(np.sort(ts_us).astype(np.float64) / 1e6, np.array([0, len(ts_us)]), cfg)
    intervals = found.intervals
    side = 2 * cfg.min_checkins
    n = len(intervals)
    if n < 2 * side:
        return None
    logs = np.log(np.maximum(intervals, 1e-9))
    sums = np.concatenate(([0.0], np.cumsum(logs)))
    squares = np.concatenate(([0.0], np.cumsum(logs * logs)))
    k = np.arange(side, n - side + 1)
    left = squares[k] - sums[k] ** 2 / k
    right = (squares[n] - squares[k]) - (sums[n] - sums[k]) ** 2 / (n - k)
    total = squares[n] - sums[n] ** 2 / n
    best = int(np.argmin(left + right))
    if total <= 0 or (left[best] + right[best]) > 0.5 * total:
        return None
    split = int(k[best])
    before, after = float(np.median(intervals[:split])), float(np.median(intervals[split:]))
    if max(before, after) < 1.5 * min(before, after):
        return None
    return before, after, float(found.starts[split])  # interval i begins at check-in i


def score_sizes_batch(sizes: Ints, offsets: Ints) -> SizeScores:
    """How alike each series' sizes are: 1 - MAD/median, robust to occasional large outputs."""
    values = segments.sort(sizes.astype(np.float64), offsets)
    median = segments.quantile(values, offsets, 0.5)
    deviations = np.abs(values - median[segments.ids(offsets)])
    mad = segments.quantile(segments.sort(deviations, offsets), offsets, 0.5)
    spread = np.where(
        median > 0, mad / np.where(median > 0, median, 1.0), np.where(mad == 0, 0.0, 1.0)
    )
    return SizeScores(np.maximum(0.0, 1.0 - spread), median, spread)


def score_intervals(ts_us: Ints, cfg: BeaconConfig) -> IntervalScore | None:
    """`score_intervals_batch` for one series."""
    return score_intervals_batch(ts_us, np.array([0, len(ts_us)]), cfg).one(0)


def score_sizes(sizes: Ints) -> SizeScore:
    """`score_sizes_batch` for one series."""
    return score_sizes_batch(sizes, np.array([0, len(sizes)])).one(0)


def combine(
    regularity: Floats,
    sizes_out: Floats,
    sizes_in: Floats,
    coverage_ratio: Floats,
    shared_factor: Floats | float,
    cfg: BeaconConfig,
) -> Floats:
    """The one combining function: timing gates everything, sizes and coverage add confidence."""
    rest = 1.0 - cfg.size_weight - cfg.coverage_weight
    sizes = (sizes_out + sizes_in) / 2.0
    support = rest + cfg.size_weight * sizes + cfg.coverage_weight * coverage_ratio
    return np.clip(regularity * support * shared_factor, 0.0, 1.0)


def beacon_score(
    intervals: IntervalScore,
    size_out: SizeScore,
    size_in: SizeScore,
    coverage_ratio: float,
    shared_factor: float,
    cfg: BeaconConfig,
) -> float:
    """`combine` for one series."""
    return float(
        combine(
            np.array([intervals.regularity]),
            np.array([size_out.regularity]),
            np.array([size_in.regularity]),
            np.array([coverage_ratio]),
            np.array([shared_factor]),
            cfg,
        )[0]
    )


def shared_factor(dst_hosts: Ints, fleet: int, cfg: BeaconConfig) -> Floats:
    """1 for a destination of one host; down to 1 - shared_damping when shared_ratio of the
    fleet talks to it. Not applied in a fleet smaller than min_fleet."""
    if fleet < cfg.min_fleet:
        return np.ones(len(dst_hosts))
    share = np.maximum(dst_hosts - 1, 0) / max(fleet - 1, 1)
    return 1.0 - cfg.shared_damping * np.minimum(1.0, share / cfg.shared_ratio)
