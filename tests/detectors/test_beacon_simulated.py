"""Beacon v1 against the simulator's injected C2 (ground truth in truth.json)."""

from __future__ import annotations

from pathlib import Path

import pytest

from homecall.config import Config
from homecall.pipeline import hunt
from homecall.simulator import C2Truth, simulate
from homecall.store import Store


def _median_interval(c2: C2Truth) -> float:
    """The median sleep each framework's jitter rule gives (what `period_s` estimates)."""
    if c2.jitter_kind == "one-sided":  # sleep * (1 - U * j)
        return c2.sleep_s * (1 - c2.jitter_ratio / 2)
    if c2.jitter_kind == "additive":  # sleep + U[0, j * sleep]
        return c2.sleep_s * (1 + c2.jitter_ratio / 2)
    return c2.sleep_s  # symmetric: sleep * (1 + U[-j, j])


@pytest.mark.slow
@pytest.mark.parametrize("seed", [7, 11])
def test_every_injected_c2_pair_is_a_top_beacon(tmp_path: Path, seed: int) -> None:
    truth = simulate(tmp_path / "logs", hosts=200, days=1, seed=seed)
    assert len(truth.c2) >= 6
    result = hunt([tmp_path / "logs"], Store(tmp_path / "store"), Config(), detectors=["beacon"])
    # a channel with a name (TLS SNI, HTTP Host) is one series per name, else per IP
    injected = {(c.src, c.domain or c.dst): c for c in truth.c2}
    # the web C2 kinds are injected C2 too: seen from the client (the requested name) and, for
    # channels through the proxy, as the proxy's own connections to the server
    proxy = truth.proxy.address if truth.proxy else None
    web = [*truth.web_c2, *truth.user_agents, *truth.domain_fronting, *truth.tls_certs]
    also_c2 = {
        (w.src, getattr(w, "host", None) or getattr(w, "sni", None) or w.server) for w in web
    }
    also_c2 |= {(proxy, w.server) for w in web if w.via_proxy}
    also_c2 |= {(f.src, f.http_host) for f in truth.domain_fronting}
    also_c2 |= {(h.src, name) for h in truth.http_anomalies for name in (*h.hosts, *h.servers)}
    also_c2 |= {(u.src, u.host) for u in truth.uri_commands}
    also_c2 |= {(n.src, n.dst) for n in truth.network_c2 if n.dst}
    ranked = [(f.src, f.dst) for f in result.findings]
    benign = [i for i, pair in enumerate(ranked) if pair not in injected and pair not in also_c2]
    first_benign = benign[0] if benign else len(ranked)
    # every injected channel outranks every benign series
    assert set(injected) <= set(ranked[:first_benign]), ranked[: first_benign + 1]
    for finding in result.findings[:first_benign]:
        c2 = injected.get((finding.src, finding.dst))
        if c2 is None:
            continue
        assert finding.dst_port == c2.dst_port
        assert finding.severity in {"medium", "high", "critical"}
        expected = _median_interval(c2)
        assert finding.evidence["period_s"] == pytest.approx(expected, rel=0.1), c2.kind
        per_checkin = finding.evidence["conns_per_checkin"]
        assert per_checkin == pytest.approx(c2.conns_per_checkin, abs=0.15)
