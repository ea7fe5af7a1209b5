"""Shared fixtures: the real samples in ../shared/c2-samples (or $HOMECALL_SAMPLES)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

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
