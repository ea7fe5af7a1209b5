"""The DNS detectors against the simulator's injected techniques (ground truth in truth.json).

One simulated day of 200 hosts holds DGA hosts, DNS tunnels, fast-flux names, a host using an
outside resolver, DNS-over-HTTPS, a query-volume burst and young C2 domains, beside benign
look-alikes (CDN names with short TTLs, PTR sweeps, DNS blocklist and hash lookups, typos).
"""

from __future__ import annotations

import pytest

from homecall.config import Config
from homecall.findings import Finding
from homecall.pipeline import analyse
from homecall.simulator import SimulationResult
from tests.conftest import SimulatedDay

DETECTORS = [
    "dga",
    "dns-tunnel",
    "dns-volume",
    "fast-flux",
    "dns-bypass",
    "young-domain",
    "suspicious-domain",
    "direct-ip",
]
SERIOUS = {"medium", "high", "critical"}


@pytest.fixture(scope="module")
def simulated(simulated_day: SimulatedDay) -> tuple[SimulationResult, list[Finding]]:
    truth = simulated_day.truth
    assert truth.nrd_file is not None
    config = Config(detectors={"young-domain": {"nrd_file": str(truth.nrd_file)}})
    return truth, analyse(simulated_day.store, config, detectors=DETECTORS)


def _by(findings: list[Finding], detector: str) -> list[Finding]:
    return [f for f in findings if f.detector == detector]


def test_every_dga_host_is_flagged(simulated: tuple[SimulationResult, list[Finding]]) -> None:
    truth, findings = simulated
    assert truth.dga
    flagged = {f.src: f for f in _by(findings, "dga")}
    for dga in truth.dga:
        finding = flagged[dga.src]
        assert finding.severity in SERIOUS, dga
        assert finding.evidence["burst_nxdomains"] >= 10
        if dga.family != "wordlist":  # character families: the names themselves give them away
            assert finding.severity in {"high", "critical"}, dga
            assert finding.dst in set(dga.resolved_domains) | {None}
    infected = {d.src for d in truth.dga}
    assert all(f.src in infected for f in _by(findings, "dga") if f.severity in SERIOUS)


def test_tunnels_are_the_top_dns_tunnel_findings(
    simulated: tuple[SimulationResult, list[Finding]],
) -> None:
    truth, findings = simulated
    assert truth.dns_tunnel
    # data carried in names: the tunnels, and a volume burst when it is an exfiltration
    expected = {(t.src, t.domain) for t in truth.dns_tunnel} | {
        (v.src, domain)
        for v in truth.dns_volume
        if v.kind == "exfiltration"
        for domain in v.domains
    }
    tunnels = _by(findings, "dns-tunnel")
    assert {(f.src, f.dst) for f in tunnels[: len(expected)]} == expected
    for finding in tunnels[: len(truth.dns_tunnel)]:
        assert finding.severity in {"high", "critical"}
    # the decoys (DNS blocklists, hash reputation, PTR sweeps) stay below medium
    assert all(f.severity not in SERIOUS for f in tunnels[len(expected) :])


def test_fast_flux_names_are_found_and_cdns_are_not(
    simulated: tuple[SimulationResult, list[Finding]],
) -> None:
    truth, findings = simulated
    assert truth.fast_flux
    flux = {f.dst: f for f in _by(findings, "fast-flux")}
    for name in truth.fast_flux:
        assert flux[name.name].src == name.src
        assert flux[name.name].severity in {"high", "critical"}
    cdns = {d.domain for d in truth.benign_dns if d.kind == "cdn"}
    assert cdns
    assert all(flux[c].severity not in SERIOUS for c in cdns if c in flux)


def test_dns_bypass_finds_the_outside_resolvers(
    simulated: tuple[SimulationResult, list[Finding]],
) -> None:
    truth, findings = simulated
    assert truth.dns_bypass
    found = {(f.src, f.dst) for f in _by(findings, "dns-bypass")}
    for bypass in truth.dns_bypass:
        assert (bypass.src, bypass.resolver) in found, bypass


def test_dns_volume_finds_the_burst_and_nothing_else(
    simulated: tuple[SimulationResult, list[Finding]],
) -> None:
    truth, findings = simulated
    assert truth.dns_volume
    volume = _by(findings, "dns-volume")
    assert {f.src for f in volume} == {v.src for v in truth.dns_volume}
    for finding in volume:
        burst = next(v for v in truth.dns_volume if v.src == finding.src)
        assert finding.evidence["peak_bucket_start"].startswith(burst.hour_start[:13])


def test_young_c2_domains_are_found(simulated: tuple[SimulationResult, list[Finding]]) -> None:
    truth, findings = simulated
    assert truth.young_domains
    found = {f.dst for f in _by(findings, "young-domain")}
    assert {y.domain for y in truth.young_domains} <= found
