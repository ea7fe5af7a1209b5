"""Shared fixtures: the real samples in ../shared/c2-samples (or $HOMECALL_SAMPLES)."""

from __future__ import annotations

import os
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
