"""Shared fixtures: the real samples in ../shared/c2-samples (or $HOMECALL_SAMPLES)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from homecall.pipeline import import_paths
from homecall.simulator import SimulationResult, simulate
from homecall.store import Store

ROOT = Path(__file__).resolve().parent.parent


def _samples_dir() -> Path | None:
    configured = os.environ.get("HOMECALL_SAMPLES")
    candidates = [Path(configured)] if configured else []
    candidates += [ROOT.parent / "shared" / "c2-samples", ROOT / "shared" / "c2-samples"]
    return next((c for c in candidates if c.is_dir()), None)


@pytest.fixture(scope="session")
def samples() -> Path:
    """The c2-samples folder; tests that need it skip cleanly when it is absent."""
    found = _samples_dir()
    if found is None:
        pytest.skip("../shared/c2-samples not found (set HOMECALL_SAMPLES)")
    return found


HAS_SPARK = importlib.util.find_spec("pyspark") is not None and shutil.which("java") is not None


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """One local Spark session for the whole run; tests that need it skip without Java."""
    if not HAS_SPARK:
        pytest.skip("pyspark or Java is not installed (pip install homecall[spark])")
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@dataclass(frozen=True)
class SimulatedDay:
    """One simulated day of 200 hosts (seed 7, as `make demo`), imported once per test run."""

    truth: SimulationResult
    logs: Path
    store: Store


@pytest.fixture(scope="session")
def simulated_day(tmp_path_factory: pytest.TempPathFactory) -> SimulatedDay:
    """The demo's day: every injected technique with its truth, and the store it imports into."""
    root = tmp_path_factory.mktemp("simulated-day")
    truth = simulate(root / "logs", hosts=200, days=1, seed=7)
    store = Store(root / "store")
    import_paths([root / "logs"], store)
    return SimulatedDay(truth=truth, logs=root / "logs", store=store)
