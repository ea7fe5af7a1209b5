"""Beacon detection grid: TPR at a per-pair FPR of 1e-3, homecall against RITA v5's score.

Every cell of `homecall.simulator.grid` (sleep x jitter x jitter kind x missed x connections per
check-in) gets `--replicates` implant series; the threshold of each scorer is the 99.9th
percentile of its scores on `--nulls` irregular pairs (Poisson, human sessions, lognormal gaps)
and benign periodic services shared by much of the fleet, drawn for the same window length.
Writes docs/beacon-grid.md (every cell) and prints the summary for docs/detection.md.

    python benchmarks/beacon_grid.py [--replicates 10] [--nulls 3000] [--seed 1]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks import rita_v5
from homecall.detectors.beacon_scoring import (
    BeaconConfig,
    IntervalScore,
    beacon_score,
    score_intervals,
    score_sizes,
    shared_factor,
    sleep_change,
)
from homecall.simulator.grid import (
    CHANGES,
    DAY_S,
    NULL_KINDS,
    SLEEPS_S,
    Cell,
    Series,
    beacon_series,
    cells,
    changing_series,
    null_series,
    window_for,
)

FPR = 1e-3
CFG = BeaconConfig()
OUT = Path(__file__).resolve().parent.parent / "docs" / "beacon-grid.md"
# Benign periodic services of a fleet (period s, jitter, share of hosts that use them)
BENIGN = ((1024.0, 0.01, 0.5), (3600.0, 0.05, 0.6), (900.0, 0.02, 0.4), (14_400.0, 0.05, 0.3))
FLEET = 1000

Scorer = Callable[[Series, int], float]


def homecall_timing(series: Series) -> IntervalScore | None:
    """The detector's interval scoring of one pair (None: too few check-ins to score)."""
    if series.ts_s.size < CFG.min_checkins:
        return None
    return score_intervals(series.ts_us, CFG)


def homecall_score(series: Series, dst_hosts: int, timing: IntervalScore | None = None) -> float:
    """The detector's own pure functions on one pair (context: hosts sharing the destination)."""
    timing = timing or homecall_timing(series)
    if timing is None:
        return 0.0
    coverage = min(1.0, float(series.ts_s[-1] - series.ts_s[0]) / series.window_s)
    shared = float(shared_factor(np.array([dst_hosts]), FLEET, CFG)[0])
    return beacon_score(
        timing, score_sizes(series.bytes_out), score_sizes(series.bytes_in), coverage, shared, CFG
    )


def rita_score(series: Series, dst_hosts: int) -> float:
    """RITA v5's beacon score, with its prevalence modifier (-0.15 at >= 50 % of hosts)."""
    score = rita_v5.beacon_score(series.ts_s, series.bytes_out)
    return score - 0.15 if dst_hosts / FLEET >= 0.5 else score


SCORERS: dict[str, Scorer] = {"homecall": homecall_score, "rita": rita_score}
COLUMNS = ("homecall", "rita", "homecall (irregular null)", "rita (irregular null)")


def null_scores(
    rng: np.random.Generator, window_s: float, count: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Scores of irregular pairs and shared benign services over one window length, and a mask
    of which null pairs are the irregular ones."""
    pairs: list[tuple[Series, int]] = []
    for i in range(count):
        pairs.append((null_series(rng, NULL_KINDS[i % len(NULL_KINDS)], window_s), 1))
    for period, jitter, share in BENIGN:
        for _ in range(max(count // 50, 5)):
            n = int(window_s / period) + 1
            ts = rng.uniform(0, period) + np.arange(n) * period
            ts = np.sort(ts + rng.normal(0, jitter * period, n))
            ts = ts[(ts >= 0) & (ts < window_s)]
            sizes = rng.normal(90, 2, ts.size).astype(np.int64)
            pairs.append((Series(ts, sizes, sizes, window_s), int(share * FLEET)))
    scores = {
        name: np.array([scorer(s, hosts) for s, hosts in pairs]) for name, scorer in SCORERS.items()
    }
    irregular = np.arange(len(pairs)) < count
    return scores, irregular


def threshold(scores: np.ndarray) -> float:
    """The score a pair must exceed so that at most FPR of the null does."""
    return float(np.quantile(scores, 1 - FPR, method="higher"))


def period_ok(timing: IntervalScore, cell: Cell) -> bool:
    """Is the estimated period within 5 % of the mean sleep between check-ins?"""
    expected = {
        "one-sided": cell.sleep_s * (1 - cell.jitter_ratio / 2),
        "additive": cell.sleep_s * (1 + cell.jitter_ratio / 2),
        "symmetric": cell.sleep_s,
    }[cell.jitter_kind]
    return abs(timing.period_s - expected) <= 0.05 * expected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicates", type=int, default=10)
    parser.add_argument("--nulls", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    thresholds: dict[float, dict[str, float]] = {}
    for window in sorted({window_for(s) for s in SLEEPS_S}):
        nulls, irregular = null_scores(rng, window, args.nulls)
        thresholds[window] = {name: threshold(v) for name, v in nulls.items()}
        # the same scorers judged against irregular traffic only (no shared periodic services)
        thresholds[window] |= {
            f"{n} (irregular null)": threshold(v[irregular]) for n, v in nulls.items()
        }
    rows = []
    period_hits: dict[float, int] = defaultdict(int)
    period_total: dict[float, int] = defaultdict(int)
    for cell in cells():
        hits: dict[str, int] = defaultdict(int)
        limits = thresholds[cell.window_s]
        for _ in range(args.replicates):
            series = beacon_series(rng, cell)
            timing = homecall_timing(series)  # scored once: for the score and the period
            scores = {"homecall": homecall_score(series, 1, timing), "rita": rita_score(series, 1)}
            for name, score in scores.items():
                hits[name] += score > limits[name]
                hits[f"{name} (irregular null)"] += score > limits[f"{name} (irregular null)"]
                if name == "homecall" and score > limits[name] and timing is not None:
                    period_total[cell.jitter_ratio] += 1
                    period_hits[cell.jitter_ratio] += period_ok(timing, cell)
        rows.append((cell, {k: hits[k] / args.replicates for k in COLUMNS}))
    changes = _changes(rng, args.replicates, thresholds[DAY_S])
    elapsed = time.perf_counter() - started
    _write(rows, thresholds, args, elapsed, period_hits, period_total, changes)
    print(_summary(rows, period_hits, period_total))
    print()
    print(changes)


def _changes(rng: np.random.Generator, replicates: int, limits: dict[str, float]) -> str:
    """TPR of implants whose sleep changes halfway through a day, and how often the change
    itself is found (before and after within 10 % of the two sleeps' means)."""
    lines = [
        "| sleep before -> after | jitter | homecall TPR | change found | RITA v5 TPR |",
        "|---|---|---|---|---|",
    ]
    for before, after in CHANGES:
        for jitter, kind in ((0.0, "one-sided"), (0.2, "one-sided"), (0.5, "symmetric")):
            hits = found = rita = 0
            for _ in range(replicates * 3):
                series = changing_series(rng, before, after, jitter, kind)
                hits += homecall_score(series, 1) > limits["homecall"]
                rita += rita_score(series, 1) > limits["rita"]
                change = sleep_change(series.ts_us, CFG)
                mean = 1 - jitter / 2 if kind == "one-sided" else 1.0
                found += change is not None and all(
                    abs(seen - sleep * mean) <= 0.1 * sleep * mean
                    for seen, sleep in ((change[0], before), (change[1], after))
                )
            total = replicates * 3
            lines.append(
                f"| {_sleep(before)} -> {_sleep(after)} | {jitter:.0%} {kind} |"
                f" {hits / total:.2f} | {found / total:.2f} | {rita / total:.2f} |"
            )
    return "\n".join(lines)


def _summary(
    rows: list[tuple[Cell, dict[str, float]]],
    period_hits: dict[float, int],
    period_total: dict[float, int],
) -> str:
    lines = [
        "| sleep | jitter | homecall TPR min / mean | RITA v5 TPR min / mean"
        " | cells homecall < RITA | irregular null only: homecall / RITA mean |",
        "|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[float, float], list[dict[str, float]]] = defaultdict(list)
    for cell, tpr in rows:
        groups[(cell.sleep_s, cell.jitter_ratio)].append(tpr)
    for (sleep, jitter), tprs in sorted(groups.items()):
        ours = np.array([t["homecall"] for t in tprs])
        theirs = np.array([t["rita"] for t in tprs])
        ours_irr = np.mean([t["homecall (irregular null)"] for t in tprs])
        theirs_irr = np.mean([t["rita (irregular null)"] for t in tprs])
        worse = int((ours < theirs).sum())
        lines.append(
            f"| {_sleep(sleep)} | {jitter:.0%} | {ours.min():.2f} / {ours.mean():.2f} |"
            f" {theirs.min():.2f} / {theirs.mean():.2f} | {worse} of {len(tprs)} |"
            f" {ours_irr:.2f} / {theirs_irr:.2f} |"
        )
    hits, total = sum(period_hits.values()), sum(period_total.values())
    by_jitter = ", ".join(
        f"{j:.0%} jitter {period_hits[j] / period_total[j]:.1%}" for j in sorted(period_total)
    )
    lines.append("")
    lines.append(
        f"Period within 5 % of the mean sleep: {hits / max(total, 1):.1%} of {total} detections"
        f" ({by_jitter})."
    )
    return "\n".join(lines)


def _write(
    rows: list[tuple[Cell, dict[str, float]]],
    thresholds: dict[float, dict[str, float]],
    args: argparse.Namespace,
    elapsed: float,
    period_hits: dict[float, int],
    period_total: dict[float, int],
    changes: str,
) -> None:
    head = [
        "# Beacon grid: every cell",
        "",
        "Generated by `benchmarks/beacon_grid.py` (see docs/detection.md for the summary).",
        f"Replicates per cell {args.replicates}, null pairs per window {args.nulls}, seed "
        f"{args.seed}, {elapsed:.0f} s. TPR at a per-pair FPR of {FPR:g}; thresholds:",
        "",
        "| window | homecall | RITA v5 | homecall, irregular null | RITA v5, irregular null |",
        "|---|---|---|---|---|",
    ]
    for window, t in thresholds.items():
        head.append(
            f"| {window / DAY_S:.0f} d | {t['homecall']:.3f} | {t['rita']:.3f} |"
            f" {t['homecall (irregular null)']:.3f} | {t['rita (irregular null)']:.3f} |"
        )
    head += ["", _summary(rows, period_hits, period_total), "", "## A sleep that changes", ""]
    head += [changes, "", "## Cells", ""]
    head.append(
        "| sleep | jitter | kind | missed | conns | homecall | RITA"
        " | homecall (irr.) | RITA (irr.) |"
    )
    head.append("|---|---|---|---|---|---|---|---|---|")
    for cell, tpr in rows:
        head.append(
            f"| {_sleep(cell.sleep_s)} | {cell.jitter_ratio:.0%} | {cell.jitter_kind} |"
            f" {cell.missed_fraction:.0%} | {cell.conns_per_checkin} |"
            f" {tpr['homecall']:.2f} | {tpr['rita']:.2f} |"
            f" {tpr['homecall (irregular null)']:.2f} | {tpr['rita (irregular null)']:.2f} |"
        )
    OUT.write_text("\n".join(head) + "\n", encoding="utf-8")


def _sleep(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


if __name__ == "__main__":
    main()
