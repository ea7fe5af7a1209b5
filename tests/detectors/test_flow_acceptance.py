"""Issue 6 acceptance: beacons found in packet captures and flow records.

Ground truth from the PROVENANCE.txt files of ../shared/c2-samples:
- pcap/slips-test-cc: `curl https://testing.com` every 2 s (capture 1) and every 2-3.6 s
  (capture 2) from 147.32.80.37, on CTU's network (147.32.0.0/16), to 141.193.213.21:443.
- pcap/corelight-caldera/sandcat.pcap: the Sandcat agent 172.18.0.3 posting /beacon to the
  CALDERA server 172.18.0.2:8888 with a 30-60 s sleep, over reused HTTP connections.
- netflow-argus/slips-test5-labeled: flows labelled Malware-TCP from 10.0.2.15, most of them to
  23.253.126.58:80 (Simda).

The networks are configured as an analyst would for each capture: CTU's public network is
internal; in the CALDERA lab only the agent's host is ours (the server plays the Internet).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from homecall.config import Config
from homecall.detectors import beacon
from homecall.findings import Finding
from homecall.networks import InternalNetworks
from homecall.pipeline import analyse, import_paths
from homecall.store import Store
from homecall.store.tables import WHOLE_STORE, connect, open_tables


def _beacons(path: Path, store: Path, internal: InternalNetworks) -> tuple[list[Finding], Store]:
    s = Store(store)
    import_paths([path], s)
    tables = open_tables(s, internal, connect(), WHOLE_STORE)
    return list(beacon.DETECTOR.run(tables, beacon.BeaconConfig())), s


def _resp_ips(store: Store, uids: list[str]) -> set[str]:
    rows = duckdb.sql(
        f"SELECT DISTINCT resp_ip FROM read_parquet('{store.root}/tables/conn/**/*.parquet')"
        " WHERE list_contains($uids, uid)",
        params={"uids": uids},
    ).fetchall()
    return {r[0] for r in rows}


@pytest.mark.parametrize("capture", ["test-cc-capture-1.pcap", "test-cc-capture-2.pcap"])
def test_slips_test_cc_top_beacon_is_the_curl_loop(
    samples: Path, tmp_path: Path, capture: str
) -> None:
    ctu = InternalNetworks.from_cidrs(["147.32.0.0/16"])
    found, store = _beacons(samples / "pcap/slips-test-cc" / capture, tmp_path / "s", ctu)
    top = found[0]
    assert top.src == "147.32.80.37"
    assert top.dst == "testing.com"  # keyed by the TLS SNI
    assert top.dst_port == 443
    # testing.com's addresses: capture 1 reached .21 (297 sessions) and .20 (2); capture 2, whose
    # DNS lookups are in the capture, was answered .20
    assert _resp_ips(store, top.evidence["uids"]) <= {"141.193.213.20", "141.193.213.21"}
    assert top.score >= 0.5


def test_sandcat_top_beacon_is_the_caldera_agent(samples: Path, tmp_path: Path) -> None:
    lab = InternalNetworks.from_cidrs(["172.18.0.3/32"], defaults=False)
    capture = samples / "pcap/corelight-caldera/sandcat.pcap"
    found, _ = _beacons(capture, tmp_path / "s", lab)
    top = found[0]
    assert (top.src, top.dst, top.dst_port) == ("172.18.0.3", "172.18.0.2", 8888)
    # Sandcat sleeps 30-60 s between check-ins (its default), over reused connections
    assert 30 <= top.evidence["period_s"] <= 60
    assert top.score >= 0.5


def _labelled_pairs(path: Path) -> dict[tuple[str, str, int], int]:
    """(src, dst, dport) -> flows labelled Malware-TCP, read from the file's Label column."""
    pairs: dict[tuple[str, str, int], int] = {}
    with path.open(encoding="utf-8") as lines:
        header = next(lines).rstrip("\n").split("\t")
        at = {name: i for i, name in enumerate(header)}
        for line in lines:
            f = line.rstrip("\n").split("\t")
            if "Malware-TCP" in f[at["Label"]]:
                key = (f[at["SrcAddr"]], f[at["DstAddr"]], int(f[at["Dport"]], 0))
                pairs[key] = pairs.get(key, 0) + 1
    return pairs


def test_argus_slips_test5_labelled_c2_pair_is_among_its_hosts_top_findings(
    samples: Path, tmp_path: Path
) -> None:
    path = samples / "netflow-argus/slips-test5-labeled/test5.binetflow"
    labelled = _labelled_pairs(path)
    (src, dst, port), _ = max(labelled.items(), key=lambda kv: kv[1])
    store = Store(tmp_path / "s")
    import_paths([path], store)
    found = [f for f in analyse(store, Config()) if f.src == src]
    top = [(f.dst, f.dst_port) for f in found[:5]]
    assert (dst, port) in top, [f.summary for f in found[:5]]
