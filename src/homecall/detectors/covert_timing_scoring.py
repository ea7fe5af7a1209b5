"""Covert-timing scoring: the statistics of each flow and how they combine, pure NumPy on
many flows at once (docs/detection.md#covert-timing). The tests themselves are in
`ipd_statistics`; here are the settings, which flows are in scope, and the score.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from homecall.detectors import ipd_statistics as stats
from homecall.detectors import segments
from homecall.detectors.segments import Floats, Ints

__all__ = [
    "TESTS",
    "CovertTimingConfig",
    "Measures",
    "Scores",
    "in_scope",
    "measure",
    "near_timer",
    "score_flows",
]

MAD_SCALE = 1.4826  # MAD x this estimates a standard deviation (normal data)
TESTS = ("regularity", "ks", "cce", "lattice")


@dataclass(frozen=True, slots=True, kw_only=True)
class CovertTimingConfig:
    """Settings under [detectors.covert-timing] in homecall.toml."""

    min_delays: int = 50  # fewer delays give no usable statistic (the papers use 2,000)
    max_delays: int = 2000  # delays analysed per flow direction: the first 2,000 (the papers')
    bulk_median_s: float = 0.005  # median delay under 5 ms: clocked by the link, a transfer
    max_median_s: float = 5.0  # over 5 s, 50 bits take minutes: a beacon's business, not this
    min_spread_ratio: float = 0.1  # IQR under 10 % of the median: a timer (keep-alive, media)
    ignore_ports: tuple[int, ...] = (53, 853, 5353, 5355)  # DNS, DNS over TLS, mDNS, LLMNR
    min_baseline_flows: int = 10  # other flows of the service needed for a fleet baseline
    baseline_points: int = 100  # each flow enters the baseline as 100 order statistics
    regularity_window: int = 20  # delays per window of Cabuk et al.'s regularity
    regularity_min_windows: int = 6  # 15 pairs; with fewer the STDEV of the pairs is noise
    regularity_max_windows: int = 100  # 2,000 delays
    # Simulated legitimate flows: 5th percentile 0.16 at 120 delays; binary channels 0.05-0.06
    regularity_strong: float = 0.08  # regularity at or under this: full strength
    regularity_weak: float = 0.25  # over this: none
    ks_weak: float = 0.2  # KS distance to the fleet under this: none (simulated: median 0.14)
    ks_strong: float = 0.5  # full strength (simulated binary channels: 0.4-0.55)
    ks_alpha: float = 1e-3  # and only when significant at this level
    outlier_z_weak: float = 2.0  # ...and an outlier among the service's flows: robust z from 2
    outlier_z_strong: float = 4.0  # ...to 4 (a service's flows differ legitimately)
    cce_bins: int = 5  # equiprobable bins of the fleet's delays (Gianvecchio and Wang use 5)
    cce_max_pattern: int = 10  # pattern lengths tried; the minimum comes at 2-7
    cce_strong: float = 0.4  # CCE share of log2(bins) at or under this: full strength
    cce_weak: float = 0.65  # over this: none (simulated legitimate flows 0.64-0.97)
    own_cce_strong: float = 0.25  # on the flow's own bins (no fleet): only a repeated pattern
    own_cce_weak: float = 0.5  # ...counts (legitimate flows 0.6-0.97)
    lattice_min_step_s: float = 0.002  # finer steps are capture-clock and scheduler noise
    lattice_max_step_s: float = 0.1  # JitterBug's windows are a few to tens of ms
    lattice_quartile_factor: float = 4.0  # a step at most a quarter of the lower quartile
    lattice_max_delay_s: float = 2.0  # longer delays (pauses) are left out of the lattice test
    lattice_alpha: float = 1e-6  # false alarms per flow of the lattice search
    timer_steps_s: tuple[float, ...] = (0.015625,)  # Windows' 64 Hz timer: Sleep()-paced sends
    timer_damping: float = 0.5  # a lattice at a timer's step keeps half its strength
    test_weight: float = 0.5  # two kinds of evidence at full strength: 0.75 ("high"), three 0.88
    single_max: float = 0.45  # one kind of evidence alone: at most "low"
    min_score: float = 0.25  # below: not reported


@dataclass(frozen=True, slots=True)
class Measures:
    """Every statistic of every flow in scope (arrays, one value per flow). The fleet tests
    (KS, and CCE on the fleet's bins) are NaN / on the flow's own bins without a baseline."""

    delays: Ints
    median_s: Floats
    iqr_s: Floats
    regularity: Floats
    ks_distance: Floats
    ks_p_value: Floats
    cce_bits: Floats
    cce_pattern: Ints
    entropy_bits: Floats
    fleet_bins: npt.NDArray[np.bool_]
    lattice_step_s: Floats
    lattice_concentration: Floats
    lattice_z: Floats
    lattice_threshold_z: Floats

    @classmethod
    def concat(cls, parts: list[Measures]) -> Measures:
        """The flows of several batches, in order."""
        return cls(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)}
        )


def measure(
    delays: Ints, offsets: Ints, pool: stats.Baseline | None, cfg: CovertTimingConfig
) -> Measures:
    """The statistics of flows of one service (delays in us, in time order), against the
    service's fleet baseline when it has one."""
    flows = len(offsets) - 1
    ordered = segments.sort(delays.astype(np.float64), offsets).astype(np.int64)
    median, iqr, _ = _spread(ordered, offsets)
    regularity = stats.regularity_batch(
        delays,
        offsets,
        window=cfg.regularity_window,
        min_windows=cfg.regularity_min_windows,
        max_windows=cfg.regularity_max_windows,
    )
    n = segments.lengths(offsets)
    if pool is None:
        distance = np.full(flows, np.nan)
        p_value = np.full(flows, np.nan)
        edges = stats.own_edges(ordered, offsets, cfg.cce_bins)
    else:
        own, own_offsets = stats.subsample(ordered, offsets, cfg.baseline_points)
        distance = stats.ks_batch(ordered, offsets, pool, own, own_offsets)
        p_value = stats.ks_p_value(distance, n, pool.delays - n)
        edges = pool.edges_without(own, own_offsets, cfg.cce_bins)
    entropy = stats.conditional_entropy_batch(
        stats.symbols(delays, offsets, edges),
        offsets,
        bins=cfg.cce_bins,
        max_pattern=cfg.cce_max_pattern,
    )
    lattice = stats.lattice_batch(
        delays,
        offsets,
        min_spacing_s=cfg.lattice_min_step_s,
        max_spacing_s=cfg.lattice_max_step_s,
        quartile_factor=cfg.lattice_quartile_factor,
        max_delay_s=cfg.lattice_max_delay_s,
        alpha=cfg.lattice_alpha,
    )
    return Measures(
        delays=n,
        median_s=median,
        iqr_s=iqr,
        regularity=regularity,
        ks_distance=distance,
        ks_p_value=p_value,
        cce_bits=entropy.cce_bits,
        cce_pattern=entropy.pattern_length,
        entropy_bits=entropy.entropy_bits,
        fleet_bins=np.full(flows, pool is not None),
        lattice_step_s=lattice.spacing_s,
        lattice_concentration=lattice.concentration,
        lattice_z=lattice.z,
        lattice_threshold_z=lattice.threshold_z,
    )


def _spread(ordered: Ints, offsets: Ints) -> tuple[Floats, Floats, Floats]:
    """Median, IQR and lower quartile of each flow's (sorted) delays, in seconds."""
    values = ordered.astype(np.float64)
    q1 = segments.quantile(values, offsets, 0.25) / 1e6
    q3 = segments.quantile(values, offsets, 0.75) / 1e6
    return segments.quantile(values, offsets, 0.5) / 1e6, q3 - q1, q1


def in_scope(delays: Ints, offsets: Ints, cfg: CovertTimingConfig) -> npt.NDArray[np.bool_]:
    """Flows the tests apply to: enough delays, not bulk, not slow, not a timer."""
    ordered = segments.sort(delays.astype(np.float64), offsets).astype(np.int64)
    median, iqr, _ = _spread(ordered, offsets)
    return np.asarray(
        (segments.lengths(offsets) >= cfg.min_delays)
        & (median >= cfg.bulk_median_s)
        & (median <= cfg.max_median_s)
        & (iqr >= cfg.min_spread_ratio * median),
        dtype=bool,
    )


@dataclass(frozen=True, slots=True)
class Scores:
    """Each test's strength 0..1 per flow, the outlier z of the fleet tests, and the score."""

    strengths: dict[str, Floats]
    ks_z: Floats
    cce_z: Floats
    score: Floats


def score_flows(m: Measures, service: Ints, cfg: CovertTimingConfig) -> Scores:
    """Strength of each test, and the score: 1 - prod(1 - test_weight x s) over the kinds of
    evidence s (stationary delays, unlike the fleet: KS and CCE on the fleet's bins, which both
    see the delays' distribution, as one; patterned: CCE on the flow's own bins; lattice), at
    most single_max + (1 - single_max) x the second strongest kind: one kind alone stays "low".
    The fleet tests count only for a flow that stands out among its service's flows (robust z
    over `service`, the flows' service ids)."""
    ks_z = _robust_z(m.ks_distance, service, KS_MAD_FLOOR)
    cce_z = -_robust_z(np.where(m.fleet_bins, m.cce_bits, np.nan), service, CCE_MAD_FLOOR)
    outlier_ks = _ramp(ks_z, cfg.outlier_z_weak, cfg.outlier_z_strong)
    outlier_cce = _ramp(cce_z, cfg.outlier_z_weak, cfg.outlier_z_strong)
    ratio = m.cce_bits / np.log2(cfg.cce_bins)
    strengths = {
        "regularity": _ramp(
            -np.log(np.maximum(m.regularity, 1e-9)),
            -np.log(cfg.regularity_weak),
            -np.log(cfg.regularity_strong),
        ),
        "ks": _ramp(m.ks_distance, cfg.ks_weak, cfg.ks_strong)
        * outlier_ks
        * (np.nan_to_num(m.ks_p_value, nan=1.0) < cfg.ks_alpha),
        "cce": np.where(
            m.fleet_bins,
            _ramp(-ratio, -cfg.cce_weak, -cfg.cce_strong) * outlier_cce,
            _ramp(-ratio, -cfg.own_cce_weak, -cfg.own_cce_strong),
        ),
        "lattice": _ramp(m.lattice_z / m.lattice_threshold_z, 1.0, 2.0)
        * np.where(near_timer(m.lattice_step_s, cfg), cfg.timer_damping, 1.0),
    }
    fleet_cce = np.where(m.fleet_bins, strengths["cce"], 0.0)
    kinds = np.stack(
        [
            strengths["regularity"],
            1.0 - (1.0 - strengths["ks"]) * (1.0 - fleet_cce),
            strengths["cce"] - fleet_cce,
            strengths["lattice"],
        ]
    )
    combined = 1.0 - np.prod(1.0 - cfg.test_weight * kinds, axis=0)
    second = np.sort(kinds, axis=0)[-2]
    score = np.minimum(combined, cfg.single_max + (1.0 - cfg.single_max) * second)
    return Scores(strengths, ks_z, cce_z, score)


KS_MAD_FLOOR = 0.02  # KS distances of a service's flows closer than this are alike
CCE_MAD_FLOOR = 0.05  # bits


def _ramp(x: Floats, low: float, high: float) -> Floats:
    """0 at or under `low`, 1 at or over `high`, linear between; 0 for NaN."""
    out = np.clip((np.asarray(x, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    return np.nan_to_num(out, nan=0.0)


def _robust_z(values: Floats, service: Ints, mad_floor: float) -> Floats:
    """(x - median) / (1.4826 MAD) within each service, MAD at least mad_floor; NaN stays."""
    out = np.full(len(values), np.nan)
    for group in np.unique(service):
        pick = (service == group) & np.isfinite(values)
        if not pick.any():
            continue
        x = values[pick]
        centre = np.median(x)
        spread = max(float(np.median(np.abs(x - centre))), mad_floor)
        out[pick] = (x - centre) / (MAD_SCALE * spread)
    return out


def near_timer(step_s: Floats, cfg: CovertTimingConfig) -> npt.NDArray[np.bool_]:
    """Lattice steps within 1 % of a timer's step or one of its halves."""
    near = np.zeros(len(step_s), dtype=bool)
    for tick in cfg.timer_steps_s:
        for part in (tick, tick / 2):
            near |= np.abs(np.nan_to_num(step_s, nan=0.0) - part) <= 0.01 * part
    return near
