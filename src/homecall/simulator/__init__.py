"""Simulated enterprise Zeek logs with injected C2, for demos, tests and benchmarks.

`simulate(out, hosts=200, days=1, seed=0)` writes one folder of Zeek TSV logs (conn, dns, http,
ssl) per simulated UTC day, `truth.json` and `nrd.txt` (a newly-registered-domain feed). The truth
lists the injected C2, the DGA-infected hosts, DNS tunnels, fast-flux names, DNS bypass, a DNS
burst, the young C2 domains in the feed, and the benign look-alikes (periodic services, DNS decoys).
"""

from __future__ import annotations

from homecall.simulator.simulation import DEFAULT_START, simulate
from homecall.simulator.truth import (
    BenignDns,
    BenignPeriodic,
    BypassTruth,
    C2Truth,
    DgaTruth,
    FluxTruth,
    SimulationResult,
    TunnelTruth,
    VolumeTruth,
    YoungTruth,
)

__all__ = [
    "DEFAULT_START",
    "BenignDns",
    "BenignPeriodic",
    "BypassTruth",
    "C2Truth",
    "DgaTruth",
    "FluxTruth",
    "SimulationResult",
    "TunnelTruth",
    "VolumeTruth",
    "YoungTruth",
    "simulate",
]
