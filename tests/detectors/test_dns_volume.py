from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from homecall.detectors import dns_volume
from homecall.detectors.dns_volume import DnsVolumeConfig, HostRates, host_rates, volume_score
from homecall.findings import Finding
from homecall.store.tables import Tables
from tests.detectors.zeek_dns import T0, Lookup, tables_of, write_log

CFG = DnsVolumeConfig()
HOUR = 3600.0
DAY0 = T0 - T0 % HOUR  # 2023-11-14 22:00 UTC, so that buckets and the test's hours agree


def _hunt(tables: Tables, cfg: DnsVolumeConfig = CFG) -> list[Finding]:
    return list(dns_volume.DETECTOR.run(tables, cfg))


def test_host_rates_hand_worked() -> None:
    rates = host_rates(np.array([10, 12, 100, 11]), np.array([20, 20, 20, 20, 20]), CFG)
    # others 10, 12, 11: median 11, MAD 1; the spread is max(1.48, 0.5 x 11, sqrt 11, 1) = 5.5
    assert (rates.peak, rates.peak_index, rates.active_buckets) == (100, 2, 4)
    assert rates.baseline_median == 11.0
    assert rates.baseline_mad == 1.0
    assert rates.host_z == pytest.approx(89 / 5.5)
    # fleet peaks all 20: MAD 0, spread max(0, 10, sqrt 20, 1) = 10
    assert rates.fleet_z == pytest.approx(8.0)


def test_host_rates_without_baselines() -> None:
    few = host_rates(np.array([5, 100]), np.array([20] * 5), CFG)
    assert few.host_z is None  # one other bucket: no baseline of its own
    small = host_rates(np.array([10, 11, 12, 100]), np.array([20] * 4), CFG)
    assert small.fleet_z is None  # four other hosts: no fleet


def _rates(peak: int, host_z: float | None, fleet_z: float | None) -> HostRates:
    return HostRates(peak, 0, 10, 50.0, 5.0, host_z, 60.0, 10.0, fleet_z)


@pytest.mark.parametrize(
    ("rates", "expected"),
    [
        (_rates(20_000, 20.0, 20.0), 0.7),  # both z full, 20x the floor: max_score
        (_rates(900, 20.0, 20.0), 0.0),  # under the floor of 1,000 an hour
        (_rates(5_000, None, 20.0), 0.0),  # no baseline of its own
        (_rates(5_000, 20.0, None), 0.0),  # no fleet
        (_rates(5_000, 20.0, 3.0), 0.0),  # ordinary for the fleet (a busy server class)
        # host z halfway (11.75 of 3.5..20), fleet z full: 0.7 x sqrt(0.5) x (0.6 + 0.4 w),
        # w = log10(2000 / 1000) / log10(20)
        (_rates(2_000, 11.75, 20.0), 0.7 * math.sqrt(0.5) * (0.6 + 0.4 * math.log10(2) / 1.30103)),
    ],
)
def test_volume_score(rates: HostRates, expected: float) -> None:
    assert volume_score(rates, CFG) == pytest.approx(expected, abs=1e-4)


def _fleet() -> list[Lookup]:
    """A day of 10 workstations (30-69 lookups an hour each) through the resolver 10.0.0.53,
    which forwards cache misses to 8.8.8.8; a server at a steady 1,100 an hour; and at 14:00
    10.2.0.19 sends 3,000 lookups of distinct hex names under exfil-data.net."""
    out: list[Lookup] = []
    for i in range(10):
        host = f"10.2.0.{10 + i}"
        for hour in range(24):
            for k in range(30 + (7 * i + 13 * hour) % 40):
                name = f"site{k % 25}.example{(i + k) % 7}.com"
                out.append(Lookup(DAY0 + hour * HOUR + k * 50 + i, host, name))
    for hour in range(24):
        for k in range(1100):
            ts = DAY0 + hour * HOUR + k * 3
            out.append(Lookup(ts, "10.2.0.200", f"api{k % 40}.vendor.example.net"))
            if k % 10 == 0:
                out.append(
                    Lookup(
                        ts + 0.01,
                        "10.0.0.53",
                        f"api{k % 40}.vendor.example.net",
                        resolver="8.8.8.8",
                    )
                )
    for k in range(3000):
        name = f"{k * 2654435761 % 16**12:012x}.exfil-data.net"
        ts = DAY0 + 14 * HOUR + k
        out.append(Lookup(ts, "10.2.0.19", name, "TXT"))
        out.append(Lookup(ts + 0.01, "10.0.0.53", name, "TXT", resolver="8.8.8.8"))
    return out


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Tables:
    root = tmp_path_factory.mktemp("fleet")
    return tables_of([write_log(root / "logs" / "dns.log", _fleet())], root)


def test_burst_host_is_the_only_finding(fleet: Tables) -> None:
    findings = _hunt(fleet)
    assert [f.src for f in findings] == ["10.2.0.19"]  # not the resolver, not the busy server
    f = findings[0]
    assert f.severity == "medium"  # volume alone stays at most medium (max_score 0.7)
    assert f.dst is None
    evidence = f.evidence
    assert evidence["peak_bucket_start"] == "2023-11-15T12:00:00Z"  # DAY0 + 14 h
    assert evidence["peak_top_domains"][0] == "exfil-data.net"
    assert evidence["peak_top_domain_queries"][0] == 3000
    assert evidence["peak_distinct_names"] >= 3000
    assert evidence["host_z"] > 20
    assert evidence["fleet_z"] > 20
    assert len(evidence["uids"]) == 20
    assert "exfil-data.net" in f.summary


def test_repeated_runs_give_equal_findings(fleet: Tables) -> None:
    assert [f.to_dict() for f in _hunt(fleet)] == [f.to_dict() for f in _hunt(fleet)]


@pytest.mark.parametrize("bucket_s", [3600, 300, 60])
def test_benign_samples_have_no_volume_findings(
    samples: Path, tmp_path: Path, bucket_s: int
) -> None:
    """WRCCDC (21 minutes, 191 hosts; the busiest client makes 2,600 lookups in 5 minutes,
    every 5 minutes) and the dnsmasq hotspot (a laptop probing a captive portal hundreds of
    times): busy, but steadily so. With hourly buckets no host has a baseline at all."""
    cfg = DnsVolumeConfig(bucket_s=bucket_s)
    for i, sample in enumerate(("zeek-tsv/wrccdc2018-zed-sample", "dns-server-dnsmasq")):
        tables = tables_of([samples / sample], tmp_path / str(i))
        assert _hunt(tables, cfg) == [], sample
