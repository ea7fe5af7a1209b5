"""The dga detector on real captures: Simda (stratosphere 005) and benign DNS server logs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from homecall.config import Config
from homecall.detectors import dga
from homecall.findings import Finding
from homecall.intel.dga import dga_domain
from homecall.pipeline import import_paths
from homecall.store import Store
from homecall.store.tables import WHOLE_STORE, connect, open_tables

SIMDA = "zeek-tsv/stratosphere-security-datasets/005-zeek-scenario-malicious"
SIMDA_HOST = "fd77:48a1:c0bb:0:b96c:506d:6c7f:e8be"  # README: the Simda-infected machine


def _findings(samples: Path, tmp_path: Path, sample: str) -> list[Finding]:
    store = Store(tmp_path / "store")
    import_paths([samples / sample], store)
    tables = open_tables(store, Config().internal, connect(), WHOLE_STORE)
    return list(dga.DETECTOR.run(tables, dga.DgaConfig()))


def _failed_domains(dns_log: Path, host: str) -> set[str]:
    """Registered domains of the host's NXDOMAIN answers, read straight from the Zeek log."""
    with dns_log.open() as f:
        lines = [line for line in f if not line.startswith("#") or line.startswith("#fields")]
    rows = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(rows)[1:]
    failed = set()
    for row in rows:
        record = dict(zip(header, row, strict=True))
        if record["id.orig_h"] == host and record["rcode_name"] == "NXDOMAIN":
            domain = dga_domain(record["query"])
            if domain and not domain.endswith((".lan", ".local")):
                failed.add(domain)
    return failed


def test_simda_host_is_flagged_with_its_nxdomain_evidence(samples: Path, tmp_path: Path) -> None:
    found = _findings(samples, tmp_path, SIMDA)
    assert found
    assert found[0].src == SIMDA_HOST
    top = found[0]
    assert top.severity in {"high", "critical"}
    failed = _failed_domains(samples / SIMDA / "dns.log", SIMDA_HOST)
    assert top.evidence["nxdomain_domains"] == len(failed)
    assert top.evidence["dga_nxdomains"] >= 1
    assert top.evidence["burst_nxdomains"] >= 10  # the failures come within minutes
    assert "NXDOMAIN" in top.summary
    assert set(top.evidence["examples"]) <= {dga_domain(e) for e in top.evidence["examples"]}
    assert top.evidence["uids"]


@pytest.mark.parametrize("sample", ["dns-server-dnsmasq", "dns-server-bind"])
def test_benign_dns_servers_raise_nothing_serious(
    samples: Path, tmp_path: Path, sample: str
) -> None:
    """A laptop on a hotspot and public-resolver scan logs (PROVENANCE: no malware)."""
    found = _findings(samples, tmp_path, sample)
    assert all(f.score < 0.5 for f in found), [f.summary for f in found]


def test_poisson_tail_matches_the_distribution() -> None:
    assert dga.poisson_tail(0, 3.0) == 1.0
    assert dga.poisson_tail(1, 0.5) == pytest.approx(1 - 2.718281828**-0.5)
    tiny = dga.poisson_tail(40, 0.5)
    assert 0 < tiny < 1e-50
