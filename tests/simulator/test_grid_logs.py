"""The grid as Zeek logs, hunted end to end: readers, store, detector (truth in truth.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from homecall.config import Config
from homecall.pipeline import hunt
from homecall.simulator.grid_logs import write_grid
from homecall.store import Store


@pytest.mark.slow
def test_one_minute_grid_is_found_and_its_null_is_not(tmp_path: Path) -> None:
    write_grid(tmp_path / "logs", sleeps_s=(60.0,), nulls=150, seed=3)
    series = json.loads((tmp_path / "logs" / "truth.json").read_text())["series"]
    result = hunt([tmp_path / "logs"], Store(tmp_path / "store"), Config(), detectors=["beacon"])
    alerts = {(f.src, f.dst) for f in result.findings if f.severity != "info" and f.score >= 0.5}
    beacons = [(s["src"], s["dst"]) for s in series if s["kind"] == "beacon"]
    null = [(s["src"], s["dst"]) for s in series if s["kind"] != "beacon"]
    assert len(beacons) == 6 * 3 * 3 * 3  # every cell at a 1 min sleep, 80 % jitter included
    assert len(null) == 150
    found = sum(pair in alerts for pair in beacons)
    assert found / len(beacons) >= 0.95  # issue 3: TPR >= 0.95 for 1 min sleeps
    assert not [pair for pair in null if pair in alerts]
