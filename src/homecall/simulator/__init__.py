"""Simulated enterprise Zeek logs with injected C2, for demos, tests and benchmarks.

`simulate(out, hosts=200, days=1, seed=0)` writes one folder of Zeek TSV logs (conn, dns, http,
ssl, x509, smtp) per simulated UTC day, with the web proxy's Squid `squid/access.log` (from 20
hosts up) and the gateway's netfilter log `firewall/kern.log`, `truth.json` and `nrd.txt` (a
newly-registered-domain feed). The truth lists the injected C2,
the DGA-infected hosts, DNS tunnels, fast-flux names, DNS bypass, a DNS burst, the young C2 domains
in the feed, the web techniques (a beacon through the proxy, a web shell and URI tasking, domain
fronting, tool and malformed user agents, certificate, HTTP, timing and port anomalies), the
network techniques (a direct C2 the firewall denies, IRC bots, a P2P bot, a spam bot), and the
benign look-alikes (periodic services, DNS decoys, web decoys, network look-alikes).
"""

from __future__ import annotations

from homecall.simulator.simulation import DEFAULT_START, simulate
from homecall.simulator.truth import (
    AgentTruth,
    BenignDns,
    BenignNetwork,
    BenignPeriodic,
    BenignWeb,
    BypassTruth,
    C2Truth,
    CertTruth,
    DgaTruth,
    FirewallTruth,
    FluxTruth,
    FrontingTruth,
    HttpAnomalyTruth,
    NetworkC2Truth,
    ProxyTruth,
    SimulationResult,
    TunnelTruth,
    UriCommand,
    UriCommandTruth,
    VolumeTruth,
    WebC2Truth,
    YoungTruth,
)

__all__ = [
    "DEFAULT_START",
    "AgentTruth",
    "BenignDns",
    "BenignNetwork",
    "BenignPeriodic",
    "BenignWeb",
    "BypassTruth",
    "C2Truth",
    "CertTruth",
    "DgaTruth",
    "FirewallTruth",
    "FluxTruth",
    "FrontingTruth",
    "HttpAnomalyTruth",
    "NetworkC2Truth",
    "ProxyTruth",
    "SimulationResult",
    "TunnelTruth",
    "UriCommand",
    "UriCommandTruth",
    "VolumeTruth",
    "WebC2Truth",
    "YoungTruth",
    "simulate",
]
