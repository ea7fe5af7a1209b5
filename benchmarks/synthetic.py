"""Helpers shared by the benchmarks that build synthetic stores."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["ips"]


def ips(first_octet: str, values: np.ndarray) -> pa.Array:
    """IPv4 addresses `first_octet`.a.b.c, a.b.c from the low 24 bits of `values`."""
    a, b, c = (values >> 16) & 255, (values >> 8) & 255, values & 255
    parts = [pa.array(x).cast(pa.string()) for x in (a, b, c)]
    return pc.binary_join_element_wise(pa.scalar(first_octet), *parts, ".")
