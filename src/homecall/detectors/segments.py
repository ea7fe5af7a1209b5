"""NumPy on many series at once: values laid end to end, `offsets` marking where each starts.

Series i is `values[offsets[i]:offsets[i + 1]]`, as in an Arrow list array. Every function
here works on all series in one pass, so per-candidate maths costs no Python loop per candidate.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "Floats",
    "Ints",
    "diff",
    "ids",
    "lengths",
    "quantile",
    "sort",
    "std",
    "sums",
    "take",
]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def lengths(offsets: Ints) -> Ints:
    """How many values each series has."""
    return np.diff(offsets)


def ids(offsets: Ints) -> Ints:
    """For every value, the index of its series."""
    return np.repeat(np.arange(len(offsets) - 1), lengths(offsets))


def sort(values: Floats, offsets: Ints) -> Floats:
    """Each series sorted, in place of the original order."""
    order = np.lexsort((values, ids(offsets)))
    return values[order]


def diff(values: Floats, offsets: Ints) -> tuple[Floats, Ints]:
    """Differences within each series (n - 1 per series of n), and their offsets."""
    n = lengths(offsets)
    keep = np.ones(len(values), dtype=bool)
    keep[offsets[:-1][n > 0]] = False  # the first value of a series has no predecessor
    deltas = np.diff(values, prepend=values[:1] if len(values) else values)[keep]
    new_offsets = np.concatenate(([0], np.cumsum(np.maximum(n - 1, 0))))
    return deltas, new_offsets


def quantile(sorted_values: Floats, offsets: Ints, q: float) -> Floats:
    """The q-quantile of each (already sorted) series, interpolated as numpy's default; NaN
    for an empty series."""
    n = lengths(offsets)
    out = np.full(len(n), np.nan)
    has = n > 0
    pos = q * (n[has] - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n[has] - 1)
    start = offsets[:-1][has]
    low_value = sorted_values[start + lo]
    out[has] = low_value + (pos - lo) * (sorted_values[start + hi] - low_value)
    return out


def sums(values: Floats, offsets: Ints) -> Floats:
    """The sum of each series (0 for an empty one), each summed on its own: a series gets the
    same result wherever it sits in the batch."""
    n = lengths(offsets)
    out = np.zeros(len(n), dtype=np.float64)
    has = n > 0
    if has.any():
        out[has] = np.add.reduceat(values.astype(np.float64, copy=False), offsets[:-1][has])
    return out


def take(values: Floats, offsets: Ints, keep: npt.NDArray[np.bool_]) -> tuple[Floats, Ints]:
    """Only the series where `keep` is True, laid end to end with their new offsets."""
    n = lengths(offsets)
    mask = np.repeat(keep, n)
    return values[mask], np.concatenate(([0], np.cumsum(np.where(keep, n, 0))))


def std(values: Floats, offsets: Ints) -> Floats:
    """The population standard deviation of each series (0 for an empty one)."""
    n = np.maximum(lengths(offsets), 1)
    mean = sums(values, offsets) / n
    centred = values - mean[ids(offsets)]
    return np.sqrt(sums(centred * centred, offsets) / n)
