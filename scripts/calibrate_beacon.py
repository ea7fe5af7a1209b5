"""Calibrate the beacon periodicity test: writes src/homecall/detectors/beacon_null.py.

The null is Poisson arrivals. For every merge load x (rate x merge gap) and number of
intervals n in the table, thousands of Poisson series go through the detector's own check-in
merging and dispersion statistic; the table keeps the mean of the statistic and its spread:
the standard deviation, widened where the lower tail is heavier than a normal one so that
z = 3.09 is the 1e-3 quantile (few intervals). Fixed seed: the same table on every run.

    python scripts/calibrate_beacon.py
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from homecall.detectors import segments
from homecall.detectors.beacon_scoring import BeaconConfig, checkins_batch, dispersion_batch

LOADS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.45)  # x > 0.46 cannot occur (merge ratio)
INTERVALS = (3, 4, 5, 6, 8, 10, 12, 16, 20, 25, 30, 40, 50, 70, 100, 150, 200, 300, 500, 1000, 2000)
SAMPLES = 1_500_000  # intervals drawn per cell: 2,000 to 50,000 series
TAIL = 1e-3  # the spread is set so that this share of the null lies beyond z = 3.09
TAIL_Z = 3.0902
TAIL_SERIES = 10_000  # enough series to read the 1e-3 quantile (else the normal spread)
SEED = 20261128
OUT = Path(__file__).resolve().parent.parent / "src/homecall/detectors/beacon_null.py"


def statistics(rng: np.random.Generator, load: float, n: int, cfg: BeaconConfig) -> np.ndarray:
    """The dispersion statistic of Poisson series with exactly n check-in intervals."""
    series = max(2000, min(50_000, SAMPLES // n))
    mean_gap = cfg.merge_gap_s / load if load > 0 else 1000.0
    raw = int((n + 1) * (1 + 3 * load) + 20)  # merging eats about x of the arrivals
    ts = np.cumsum(rng.exponential(mean_gap, size=(series, raw)), axis=1).ravel()
    offsets = np.arange(series + 1, dtype=np.int64) * raw
    found = checkins_batch(ts, offsets, cfg)
    keep = np.arange(len(found.intervals)) - found.offsets[segments.ids(found.offsets)] < n
    counts = np.minimum(segments.lengths(found.offsets), n)
    assert (counts == n).all(), "draw more arrivals per series"
    offsets_n = np.concatenate(([0], np.cumsum(counts)))
    statistic, _ = dispersion_batch(found.intervals[keep], offsets_n)
    return statistic


def _spread(values: np.ndarray) -> float:
    """The standard deviation, or wider where the lower tail is heavier than a normal one
    (few intervals): z = 3.09 then still means p = 1e-3."""
    sd = float(values.std())
    if values.size < TAIL_SERIES:
        return sd
    tail = float(np.quantile(values, TAIL))
    return max(sd, (float(values.mean()) - tail) / TAIL_Z)


def _rows(name: str, table: list[list[float]]) -> list[str]:
    lines = [f"{name} = ("]
    for row in table:
        values = [f"{v!r}," for v in row]
        lines.append("    (")
        for start in range(0, len(values), 10):
            lines.append("        " + " ".join(values[start : start + 10]))
        lines.append("    ),")
    return [*lines, ")"]


def write(center: list[list[float]], spread: list[list[float]], cfg: BeaconConfig) -> None:
    """The table as a Python module, in the layout ruff leaves alone."""
    lines = [
        '"""Null table of the beacon periodicity test (Poisson arrivals), made by',
        "scripts/calibrate_beacon.py: do not edit. CENTER[i][j] and SPREAD[i][j] are the mean and",
        "spread (sd, widened to put the 1e-3 quantile at z = 3.09) of `dispersion_batch`'s",
        "statistic at merge load LOADS[i] over INTERVALS[j] intervals;",
        f"merge_gap_s {cfg.merge_gap_s}, merge_ratio {cfg.merge_ratio}, seed {SEED}.",
        '"""',
        "",
        f"LOADS = {LOADS!r}",
        f"INTERVALS = {INTERVALS!r}",
        "# fmt: off",
        *_rows("CENTER", center),
        *_rows("SPREAD", spread),
        "# fmt: on",
    ]
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    cfg = BeaconConfig()
    rng = np.random.default_rng(SEED)
    started = time.perf_counter()
    center = []
    spread = []
    for load in LOADS:
        values = [statistics(rng, load, n, cfg) for n in INTERVALS]
        center.append([round(float(v.mean()), 4) for v in values])
        spread.append([round(_spread(v), 4) for v in values])
    write(center, spread, cfg)
    print(f"wrote {OUT} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
