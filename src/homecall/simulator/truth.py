"""Ground truth of a simulation: what was injected, what is benign but periodic, and truth.json."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["BenignPeriodic", "C2Truth", "SimulationResult", "iso_utc", "write_truth"]


@dataclass(frozen=True, slots=True)
class C2Truth:
    """One injected C2 channel, as a detector should report it."""

    src: str  # the infected internal host
    dst: str  # the C2 server
    domain: str | None  # the name in DNS, SNI and Host; None when the implant calls the IP
    dst_port: int
    kind: str  # cobalt-strike, sliver, empire
    protocol: str  # https or http
    sleep_s: float
    jitter_ratio: float  # 0..1, meaning per jitter_kind
    jitter_kind: (
        str  # one-sided (sleep*(1-U*j)), additive (sleep*(1+U*j)), symmetric (sleep*(1+U(-j,j)))
    )
    missed_fraction: float  # share of check-ins dropped before reaching the wire
    conns_per_checkin: int
    first_seen: str  # ISO-8601 UTC of the first check-in connection
    last_seen: str
    checkins: int  # check-ins emitted over the whole simulation


@dataclass(frozen=True, slots=True)
class BenignPeriodic:
    """A benign service that many hosts call at a regular interval (a beacon detector's decoy)."""

    dst: str
    domain: str
    period_s: float
    hosts: int  # distinct hosts that called dst
    kind: str  # ntp, os-update, telemetry, antivirus, ocsp


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """What simulate() wrote."""

    out: Path
    files: tuple[Path, ...]  # the day logs, then truth.json
    rows: dict[str, int]  # rows written per log type, over all days
    c2: tuple[C2Truth, ...]


def iso_utc(ts_us: int) -> str:
    """Microseconds since the epoch -> ISO-8601 UTC, e.g. 2026-11-23T00:00:41.123456Z."""
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(ts_us))
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_truth(
    path: Path,
    *,
    seed: int,
    hosts: int,
    days: int,
    start: dt.date,
    internal_networks: tuple[str, ...],
    c2: tuple[C2Truth, ...],
    benign_periodic: tuple[BenignPeriodic, ...],
) -> None:
    """Write truth.json (stable key order, so equal runs give equal bytes)."""
    document = {
        "seed": seed,
        "hosts": hosts,
        "days": days,
        "start": start.isoformat(),
        "internal_networks": list(internal_networks),
        "c2": [asdict(item) for item in c2],
        "benign_periodic": [asdict(item) for item in benign_periodic],
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
