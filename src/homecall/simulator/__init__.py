"""Simulated enterprise Zeek logs with injected C2, for demos, tests and benchmarks.

`simulate(out, hosts=200, days=1, seed=0)` writes one folder of Zeek TSV logs (conn, dns, http,
ssl) per simulated UTC day and `truth.json`, which lists the injected C2 and the benign periodic
services.
"""

from __future__ import annotations

from homecall.simulator.simulation import DEFAULT_START, simulate
from homecall.simulator.truth import BenignPeriodic, C2Truth, SimulationResult

__all__ = ["DEFAULT_START", "BenignPeriodic", "C2Truth", "SimulationResult", "simulate"]
