from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from homecall.findings import Finding, rank, severity_for
from tests.findings_contract import check_record

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def _finding(score: float, **changes: object) -> Finding:
    fields: dict[str, object] = {
        "detector": "beacon",
        "src": "10.0.0.5",
        "dst": "203.0.113.9",
        "dst_port": 443,
        "score": score,
        "first_seen": T0,
        "last_seen": T1,
        "summary": "10.0.0.5 calls 203.0.113.9 every minute.",
        "evidence": {"period_s": 60.0, "uids": ["Cabc"]},
    }
    fields.update(changes)
    return Finding(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("score", "severity"),
    [
        (0.0, "info"),
        (0.24, "info"),
        (0.25, "low"),
        (0.5, "medium"),
        (0.75, "high"),
        (0.9, "critical"),
    ],
)
def test_severity_table(score: float, severity: str) -> None:
    assert severity_for(score) == severity


def test_json_round_trip_follows_the_documented_contract() -> None:
    finding = _finding(0.8)
    record = json.loads(finding.to_json())
    check_record(record)
    assert record["first_seen"] == "2026-11-27T08:00:00Z"
    assert record["severity"] == "high"
    assert Finding.from_dict(record) == finding


@pytest.mark.parametrize(
    "changes",
    [
        {"score": 1.5},
        {"score": float("nan")},
        {"first_seen": datetime(2026, 11, 27)},  # naive
        {"first_seen": T1, "last_seen": T0},
        {"evidence": {"period_s": float("inf")}},
        {"evidence": {"when": T0}},  # not JSON-safe
    ],
)
def test_invalid_findings_are_rejected(changes: dict[str, object]) -> None:
    score = changes.pop("score", 0.5)
    with pytest.raises(ValueError):  # noqa: PT011 (the message varies by field)
        _finding(score, **changes)  # type: ignore[arg-type]


def test_rank_is_stable() -> None:
    a, b = _finding(0.5, dst="b.example"), _finding(0.5, dst="a.example")
    assert rank([a, b, _finding(0.9)]) == [_finding(0.9), b, a]
