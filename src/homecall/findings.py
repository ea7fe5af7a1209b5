"""The finding: what every detector returns and every report reads (docs/findings.md)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "SEVERITIES",
    "Finding",
    "Severity",
    "rank",
    "severity_for",
]

Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "low", "medium", "high", "critical")
# Lower bounds of score for each severity above "info"; one table for every detector.
_SEVERITY_FLOORS: tuple[tuple[float, Severity], ...] = (
    (0.90, "critical"),
    (0.75, "high"),
    (0.50, "medium"),
    (0.25, "low"),
)
# evidence keys that tell apart findings of one detector about one (src, dst, dst_port)
DISTINGUISHING = ("kind", "path", "user_agent")
MAX_UIDS = 20  # evidence keeps at most this many record uids, enough to pivot to the raw logs


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def severity_for(score: float) -> Severity:
    """The severity of a score in 0..1; the only place severities are decided."""
    for floor, name in _SEVERITY_FLOORS:
        if score >= floor:
            return name
    return "info"


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One detection: which internal host, talking to what, why it looks like C2."""

    detector: str
    src: str
    dst: str | None
    dst_port: int | None
    score: float
    first_seen: datetime
    last_seen: datetime
    summary: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (0.0 <= self.score <= 1.0) or math.isnan(self.score):
            raise ValueError(f"score must be in 0..1, got {self.score!r}")
        for name in ("first_seen", "last_seen"):
            value = getattr(self, name)
            if value.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware (UTC)")
        if self.last_seen < self.first_seen:
            raise ValueError("last_seen is before first_seen")
        try:
            json.dumps(self.evidence, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"evidence must be JSON-safe: {exc}") from exc

    @property
    def severity(self) -> Severity:
        """Derived from the score by `severity_for`, never set by a detector."""
        return severity_for(self.score)

    @property
    def key(self) -> tuple[str | int | None, ...]:
        """Two findings with the same key are the same notice (Zeek's `identifier`): detector,
        src, dst, dst_port, and the evidence that tells apart one detector's findings about one
        pair (DISTINGUISHING: an anomaly's kind, a URI path, a user agent)."""
        told = tuple(_text(self.evidence.get(name)) for name in DISTINGUISHING)
        return (self.detector, self.src, self.dst, self.dst_port, *told)

    def to_dict(self) -> dict[str, Any]:
        """The JSON Lines record of docs/findings.md."""
        return {
            "detector": self.detector,
            "src": self.src,
            "dst": self.dst,
            "dst_port": self.dst_port,
            "score": round(self.score, 4),
            "severity": self.severity,
            "first_seen": _iso(self.first_seen),
            "last_seen": _iso(self.last_seen),
            "summary": self.summary,
            "evidence": dict(self.evidence),
        }

    def to_json(self) -> str:
        """One line of JSON, no trailing newline."""
        return json.dumps(
            self.to_dict(), separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Finding:
        """Inverse of `to_dict` (severity is recomputed from the score)."""
        return cls(
            detector=str(record["detector"]),
            src=str(record["src"]),
            dst=record.get("dst"),
            dst_port=record.get("dst_port"),
            score=float(record["score"]),
            first_seen=datetime.fromisoformat(record["first_seen"]),
            last_seen=datetime.fromisoformat(record["last_seen"]),
            summary=str(record["summary"]),
            evidence=dict(record.get("evidence") or {}),
        )


def rank(findings: Iterable[Finding]) -> list[Finding]:
    """Highest score first; ties broken by detector, src, dst so the order is stable."""
    return sorted(
        findings, key=lambda f: (-f.score, f.detector, f.src, f.dst or "", f.dst_port or 0)
    )


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
