"""Beacon v1 against the simulator's injected C2 (ground truth in truth.json)."""

from __future__ import annotations

from pathlib import Path

import pytest

from homecall.config import Config
from homecall.pipeline import hunt
from homecall.simulator import C2Truth, simulate
from homecall.store import Store


def _median_interval(c2: C2Truth) -> float:
    """The median sleep each framework's jitter rule gives (what `period_s` estimates)."""
    if c2.jitter_kind == "one-sided":  # sleep * (1 - U * j)
        return c2.sleep_s * (1 - c2.jitter_ratio / 2)
    if c2.jitter_kind == "additive":  # sleep + U[0, j * sleep]
        return c2.sleep_s * (1 + c2.jitter_ratio / 2)
    return c2.sleep_s  # symmetric: sleep * (1 + U[-j, j])


@pytest.mark.slow
@pytest.mark.parametrize("seed", [7, 11])
def test_every_injected_c2_pair_is_a_top_beacon(tmp_path: Path, seed: int) -> None:
    truth = simulate(tmp_path / "logs", hosts=200, days=1, seed=seed)
    assert len(truth.c2) >= 6
    result = hunt([tmp_path / "logs"], Store(tmp_path / "store"), Config(), detectors=["beacon"])
    # a channel with a name (TLS SNI, HTTP Host) is one series per name, else per IP
    injected = {(c.src, c.domain or c.dst): c for c in truth.c2}
    top = [(f.src, f.dst) for f in result.findings[: len(injected)]]
    assert set(top) == set(injected)  # the injected channels are the top-ranked beacons
    for finding in result.findings[: len(injected)]:
        c2 = injected[(finding.src, finding.dst)]
        assert finding.dst_port == c2.dst_port
        assert finding.severity in {"medium", "high", "critical"}
        expected = _median_interval(c2)
        assert finding.evidence["period_s"] == pytest.approx(expected, rel=0.1), c2.kind
        per_checkin = finding.evidence["conns_per_checkin"]
        assert per_checkin == pytest.approx(c2.conns_per_checkin, abs=0.15)
