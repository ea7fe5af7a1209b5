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

from homecall.detectors import segments
from homecall.detectors.segments import Floats, Ints

__all__ = [
    "POISSON_FLOOR",
    "POISSON_QCD",
    "BeaconConfig",
    "IntervalScore",
    "IntervalScores",
    "SizeScore",
    "SizeScores",
    "beacon_score",
    "combine",
    "score_intervals",
    "score_intervals_batch",
    "score_sizes",
    "score_sizes_batch",
    "shared_factor",
]

# Quartile coefficient of dispersion (Q3-Q1)/(Q3+Q1) of exponential (Poisson-arrival) gaps:
# (ln 4 - ln 4/3)/(ln 4 + ln 4/3) = 0.6563. Regularity is measured against this null.
POISSON_QCD = float((np.log(4) - np.log(4 / 3)) / (np.log(4) + np.log(4 / 3)))
# Folding gaps for missed check-ins makes even Poisson traffic look somewhat regular. Measured
# over 3,000 Poisson series for each n from 5 to 3,000 intervals, the regularity statistic
# `max(raw, folded * (1 - missed))` is centred on 0.27 and its upper quantiles follow
# 0.27 + z * 0.56 / sqrt(n) (z = 2.33 at the 99th, 3.09 at the 99.9th percentile, within 0.02):
# z is the periodicity test, calibrated on the irregular null whatever the number of intervals.
POISSON_CENTER = 0.27
POISSON_SPREAD = 0.56
POISSON_FLOOR = 0.25  # strength of regularity reads 0 here
Z_FLOOR = 3.0  # below this a series is not more regular than Poisson at about p = 1e-3
Z_FULL = 8.0  # at this (p = 6e-16) confidence is full, even over millions of tested pairs


@dataclass(frozen=True, slots=True, kw_only=True)
class BeaconConfig:
    """Settings under [detectors.beacon] in homecall.toml."""

    min_checkins: int = 4  # fewer give 2 intervals: no usable dispersion statistic (RITA uses 4)
    merge_gap_s: float = 5.0  # connections this close are one check-in (multi-connection implants)
    merge_ratio: float = 0.3  # ...and only if also under 30 % of the typical gap (keeps 5 s sleeps)
    min_period_s: float = 1.0  # faster "check-ins" are bursts of one session (C2 sleeps are >= 1 s)
    min_score: float = 0.3  # below this a pair is not reported; Poisson traffic scores < 0.1
    shared_ratio: float = 0.1  # a destination 10 % of the fleet talks to is shared infrastructure
    shared_damping: float = 0.8  # ...and its score is cut by up to 80 % (lowered, never hidden)
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


def score_intervals_batch(ts_us: Ints, offsets: Ints, cfg: BeaconConfig) -> IntervalScores:
    """Regularity of check-ins of every series, with period, jitter and missed check-ins."""
    ts = segments.sort(ts_us.astype(np.float64) / 1e6, offsets)
    gaps, gap_offsets = segments.diff(ts, offsets)
    typical = segments.quantile(segments.sort(gaps, gap_offsets), gap_offsets, 0.9)
    merge_below = np.minimum(cfg.merge_gap_s, cfg.merge_ratio * typical)
    # A connection starts a check-in unless it follows the previous one within merge_below.
    gap_series = segments.ids(gap_offsets)
    later = np.arange(len(gaps)) - gap_offsets[gap_series] + offsets[gap_series] + 1
    is_start = np.ones(len(ts), dtype=bool)
    is_start[later] = gaps > merge_below[gap_series]
    series_count = len(offsets) - 1
    per_series = np.bincount(segments.ids(offsets)[is_start], minlength=series_count)
    start_offsets = np.concatenate(([0], np.cumsum(per_series)))
    intervals, offsets_i = segments.diff(ts[is_start], start_offsets)
    sorted_intervals = segments.sort(intervals, offsets_i)
    period = segments.quantile(sorted_intervals, offsets_i, 0.5)
    n_intervals = segments.lengths(offsets_i)
    n_gaps = segments.lengths(gap_offsets)
    enough = (n_gaps >= cfg.min_checkins - 1) & (n_intervals >= cfg.min_checkins - 1)
    valid = enough & (np.nan_to_num(period) >= cfg.min_period_s) & (np.nan_to_num(period) > 0)
    # Missed check-ins: each interval divided by its nearest multiple of the median interval.
    safe_period = np.where(valid, period, 1.0)[segments.ids(offsets_i)]
    multiples = np.maximum(1.0, np.round(intervals / safe_period))
    folded = intervals / multiples
    expected = segments.sums(multiples, offsets_i)
    missed = np.divide(
        segments.sums(multiples - 1, offsets_i),
        expected,
        out=np.zeros(series_count),
        where=expected > 0,
    )
    sorted_folded = segments.sort(folded, offsets_i)
    raw_qcd = _qcd(sorted_intervals, offsets_i)
    folded_qcd = _qcd(sorted_folded, offsets_i)
    regular_raw = np.maximum(0.0, 1.0 - raw_qcd / POISSON_QCD)
    regular_folded = np.maximum(0.0, 1.0 - folded_qcd / POISSON_QCD) * (1.0 - missed)
    statistic = np.maximum(regular_raw, regular_folded)
    z = (statistic - POISSON_CENTER) * np.sqrt(n_intervals) / POISSON_SPREAD
    strength = np.clip((statistic - POISSON_FLOOR) / (1 - POISSON_FLOOR), 0.0, 1.0)
    confidence = np.clip((z - Z_FLOOR) / (Z_FULL - Z_FLOOR), 0.0, 1.0)
    # How sure (the calibrated test) times how periodic (the dispersion statistic): a long,
    # loosely jittered beacon scores; short noise does not.
    calibrated = confidence * (0.5 + 0.5 * strength)
    # The z-test needs many intervals; a slow beacon (a few dozen check-ins in a week) is
    # better served by the strength itself, discounted for its few intervals. The better of
    # the two wins: measured on the grid, this keeps 1-15 min sleeps at 80 % jitter and
    # raises 6-24 h sleeps (docs/detection.md).
    weight = 1.0 - 1.0 / np.sqrt(np.maximum(n_intervals, 1))
    regularity = np.where(valid, np.maximum(calibrated, strength * weight), 0.0)
    checkins = segments.lengths(start_offsets)
    return IntervalScores(
        valid=valid,
        regularity=np.nan_to_num(regularity),
        period_s=segments.quantile(sorted_folded, offsets_i, 0.5),
        jitter_ratio=np.minimum(raw_qcd, folded_qcd) * 2.0,
        missed_fraction=missed,
        checkins=checkins,
        conns_per_checkin=segments.lengths(offsets) / np.maximum(checkins, 1),
        periodicity_z=np.where(valid, np.nan_to_num(z), 0.0),
    )


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


def _qcd(sorted_values: Floats, offsets: Ints) -> Floats:
    q1 = segments.quantile(sorted_values, offsets, 0.25)
    q3 = segments.quantile(sorted_values, offsets, 0.75)
    total = q1 + q3
    return np.divide(q3 - q1, total, out=np.zeros(len(q1)), where=np.nan_to_num(total) > 0)
