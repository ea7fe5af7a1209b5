"""Detectors: one module per technique, all `run(tables, config) -> Iterator[Finding]`."""

from __future__ import annotations

from homecall.detectors import (
    beacon,
    covert_timing,
    dga,
    direct_ip,
    dns_bypass,
    dns_tunnel,
    dns_volume,
    domain_fronting,
    fast_flux,
    header_anomaly,
    http_anomaly,
    irc,
    long_connection,
    mail_from_endpoint,
    odd_port,
    off_hours,
    p2p_fanout,
    proxy_bypass,
    rare_destination,
    risky_tld,
    suspicious_domain,
    tls_anomaly,
    uri_command,
    user_agent,
    young_domain,
)
from homecall.detectors.base import Detector

__all__ = ["DETECTORS", "Detector", "by_name"]

DETECTORS: tuple[Detector, ...] = (
    beacon.DETECTOR,
    rare_destination.DETECTOR,
    dga.DETECTOR,
    dns_tunnel.DETECTOR,
    dns_volume.DETECTOR,
    fast_flux.DETECTOR,
    suspicious_domain.DETECTOR,
    young_domain.DETECTOR,
    direct_ip.DETECTOR,
    dns_bypass.DETECTOR,
    risky_tld.DETECTOR,
    odd_port.DETECTOR,
    off_hours.DETECTOR,
    uri_command.DETECTOR,
    user_agent.DETECTOR,
    http_anomaly.DETECTOR,
    long_connection.DETECTOR,
    domain_fronting.DETECTOR,
    tls_anomaly.DETECTOR,
    proxy_bypass.DETECTOR,
    irc.DETECTOR,
    p2p_fanout.DETECTOR,
    mail_from_endpoint.DETECTOR,
    covert_timing.DETECTOR,
    header_anomaly.DETECTOR,
)


def by_name(names: list[str] | None = None) -> tuple[Detector, ...]:
    """The registered detectors named (all when None); ValueError names an unknown one."""
    if names is None:
        return DETECTORS
    known = {d.name: d for d in DETECTORS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown detector(s) {unknown}; known: {sorted(known)}")
    return tuple(known[n] for n in names)
