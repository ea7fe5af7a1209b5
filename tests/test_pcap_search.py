from __future__ import annotations

import gzip
import struct
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from homecall.errors import InputError, StoreError
from homecall.findings import Finding
from homecall.pcap_search import (
    FlowScope,
    PacketQuery,
    parse_time,
    pick_finding,
    search,
    select,
)
from homecall.pipeline import import_paths
from homecall.store import Store, quick_fingerprint
from tests.pcap_captures import (
    MIDNIGHT_NS,
    RAW_IP,
    index,
    indexed_store,
    of_hosts,
    packets,
    scan_ip,
    write_pcap,
    write_pcapng,
    written,
)


@pytest.mark.parametrize(
    ("text", "us"),
    [
        ("2025-11-28T00:00:00Z", 1_764_288_000_000_000),
        ("2025-11-28T01:00:00+01:00", 1_764_288_000_000_000),
        ("2025-11-28T00:00:00", 1_764_288_000_000_000),  # no zone: UTC
        ("2025-11-28", 1_764_288_000_000_000),
        ("2025-11-28T00:00:00.000001Z", 1_764_288_000_000_001),
        ("1764288000", 1_764_288_000_000_000),
        ("1764288000.25", 1_764_288_000_250_000),
    ],
)
def test_times_are_iso_8601_or_epoch_seconds(text: str, us: int) -> None:
    assert parse_time(text) == us


def test_a_time_that_is_neither_is_refused() -> None:
    with pytest.raises(ValueError, match="not a time: 'yesterday'"):
        parse_time("yesterday")


def test_classic_pcap_packets_of_a_host_are_copied_byte_for_byte(tmp_path: Path) -> None:
    capture = write_pcap(tmp_path / "a.pcap")
    store = indexed_store(tmp_path / "store", capture)
    out = tmp_path / "out.pcap"
    result = search(store, PacketQuery(hosts=("10.0.0.1",)), out)
    assert result is not None
    assert result.packets == {capture.resolve(): 6}
    assert (result.format, result.is_nanosecond) == ("pcap", False)
    assert written(out) == of_hosts(capture, "10.0.0.1")
    assert out.read_bytes()[:4] == struct.pack("<I", 0xA1B2C3D4)
    assert not list(tmp_path.glob(".out.pcap.*"))


def test_host_port_uid_and_time_conditions_all_hold(tmp_path: Path) -> None:
    capture = write_pcap(tmp_path / "a.pcap")
    store = indexed_store(tmp_path / "store", capture)
    both = PacketQuery(hosts=("10.0.0.1",), ports=(8888,))
    assert select(store, both).total == 3
    either_port = PacketQuery(ports=(8888, 53))
    assert select(store, either_port).total == 6
    after_midnight = PacketQuery(start_us=MIDNIGHT_NS // 1000)
    assert select(store, after_midnight).total == 6
    first_second = PacketQuery(start_us=MIDNIGHT_NS // 1000, end_us=MIDNIGHT_NS // 1000 + 1_000_000)
    assert select(store, first_second).total == 1  # the flow's later packets are 1.000017 s on
    uid = index(capture).column("uid")[0].as_py()
    assert select(store, PacketQuery(uids=(uid,))).total == 3
    assert select(store, PacketQuery(hosts=("10.9.9.9",))).total == 0
    assert search(store, PacketQuery(hosts=("10.9.9.9",)), tmp_path / "none.pcap") is None
    assert not (tmp_path / "none.pcap").exists()


def test_days_outside_the_time_bounds_are_not_read(tmp_path: Path) -> None:
    capture = write_pcap(tmp_path / "a.pcap")
    store = indexed_store(tmp_path / "store", capture)
    for day in (store.root / "tables" / "packets").glob("day=2025-11-27"):
        for file in day.iterdir():
            file.write_bytes(b"not parquet")  # reading it would fail
    later = PacketQuery(hosts=("10.0.0.1",), start_us=MIDNIGHT_NS // 1000)
    assert select(store, later).total == 3


def test_nanosecond_pcap_gives_a_nanosecond_pcap(tmp_path: Path) -> None:
    capture = write_pcap(tmp_path / "ns.pcap", nano=True)
    store = indexed_store(tmp_path / "store", capture)
    out = tmp_path / "out.pcap"
    result = search(store, PacketQuery(hosts=("10.0.0.3",)), out)
    assert result is not None
    assert result.is_nanosecond
    assert out.read_bytes()[:4] == struct.pack("<I", 0xA1B23C4D)
    assert written(out) == of_hosts(capture, "10.0.0.3")
    assert written(out)[0][0] % 1000 == 999  # the nanoseconds survived


@pytest.mark.parametrize("tsresol", [6, 9])
def test_pcapng_packets_are_copied_with_their_interface_times(tmp_path: Path, tsresol: int) -> None:
    capture = write_pcapng(tmp_path / "a.pcapng", tsresol=tsresol)
    store = indexed_store(tmp_path / "store", capture)
    out = tmp_path / "out.pcap"
    result = search(store, PacketQuery(ports=(443, 53)), out)
    assert result is not None
    assert result.format == "pcap"
    assert result.is_nanosecond == (tsresol == 9)
    before_midnight = [p for p in of_hosts(capture, "192.0.2.9", "10.0.0.53") if p[0] < MIDNIGHT_NS]
    assert written(out) == before_midnight  # the 443 and 53 flows


def test_several_link_types_give_a_pcapng_with_one_interface_each(tmp_path: Path) -> None:
    ethernet = write_pcap(tmp_path / "eth.pcap")
    raw = write_pcap(tmp_path / "raw.pcap", link_type=RAW_IP)
    store = indexed_store(tmp_path / "store", ethernet, raw)
    out = tmp_path / "out.pcap"
    result = search(store, PacketQuery(hosts=("10.0.0.2",)), out)
    assert result is not None
    assert result.format == "pcapng"
    assert list(result.packets.values()) == [3, 3]
    copied = written(out)
    assert [link for _, link, _ in copied] == [1, 1, 1, RAW_IP, RAW_IP, RAW_IP]
    assert copied == of_hosts(ethernet, "10.0.0.2") + of_hosts(raw, "10.0.0.2")


def test_captures_come_out_earliest_first_and_each_in_file_order(tmp_path: Path) -> None:
    later = write_pcap(tmp_path / "a-later.pcap", shift_ns=86_400 * 10**9)
    earlier = write_pcap(tmp_path / "b-earlier.pcap")
    store = indexed_store(tmp_path / "store", later, earlier)
    out = tmp_path / "out.pcap"
    result = search(store, PacketQuery(hosts=("10.0.0.1",)), out)
    assert result is not None
    assert list(result.packets) == [earlier.resolve(), later.resolve()]
    assert written(out) == of_hosts(earlier, "10.0.0.1") + of_hosts(later, "10.0.0.1")


def test_a_second_pcapng_section_is_found_by_walking_the_file(tmp_path: Path) -> None:
    capture = write_pcapng(tmp_path / "two.pcapng", tsresol=6)
    write_pcapng(capture, tsresol=9, link_type=RAW_IP, append=True)
    store = indexed_store(tmp_path / "store", capture)
    out = tmp_path / "out.pcap"
    result = search(store, PacketQuery(hosts=("10.0.0.1",)), out)
    assert result is not None
    assert (result.format, result.is_nanosecond) == ("pcapng", True)
    copied = written(out)
    assert copied == of_hosts(capture, "10.0.0.1")
    assert [link for _, link, _ in copied] == [1] * 6 + [RAW_IP] * 6
    assert copied[6][0] % 1000 == 789  # the second section's nanoseconds


def test_a_moved_capture_is_named_and_found_again_with_capture_dir(tmp_path: Path) -> None:
    capture = write_pcap(tmp_path / "a.pcap")
    store = indexed_store(tmp_path / "store", capture)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    capture.rename(moved / "a.pcap")
    query = PacketQuery(hosts=("10.0.0.1",))
    with pytest.raises(InputError, match=r"a\.pcap: indexed capture not found.*--capture-dir"):
        search(store, query, tmp_path / "out.pcap")
    result = search(store, query, tmp_path / "out.pcap", capture_dir=moved)
    assert result is not None
    assert result.packets == {moved / "a.pcap": 6}
    # captures not in DIR are still looked for where they were indexed
    stayed = write_pcap(tmp_path / "b.pcap", shift_ns=1000)  # other bytes than a.pcap
    both = indexed_store(tmp_path / "store2", moved / "a.pcap", stayed)
    found = search(both, query, tmp_path / "out2.pcap", capture_dir=moved)
    assert found is not None
    assert found.packets == {moved / "a.pcap": 6, stayed.resolve(): 6}


def test_a_changed_capture_is_refused(tmp_path: Path) -> None:
    capture = write_pcap(tmp_path / "a.pcap")
    store = indexed_store(tmp_path / "store", capture)
    capture.write_bytes(capture.read_bytes()[:-1] + b"X")
    with pytest.raises(InputError, match="not the capture that was indexed"):
        search(store, PacketQuery(hosts=("10.0.0.1",)), tmp_path / "out.pcap")


def test_a_record_that_is_not_where_the_index_says_is_refused(tmp_path: Path) -> None:
    capture = write_pcap(tmp_path / "a.pcap")
    batch = index(capture)
    offsets = pc.add(batch.column("pcap_offset"), 4)
    shifted = batch.set_column(batch.schema.get_field_index("pcap_offset"), "pcap_offset", offsets)
    store = Store(tmp_path / "store")
    with store.importing() as job:
        job.add(
            capture, lambda: "x", "pcap", [("packets", shifted)], quick=quick_fingerprint(capture)
        )
    with pytest.raises(InputError, match="the record at byte 28 is not the packet indexed there"):
        search(store, PacketQuery(hosts=("10.0.0.1",)), tmp_path / "out.pcap")


def _finding(
    dst: str | None, uids: list[str], first_ns: int, last_ns: int, **kw: object
) -> Finding:
    return Finding(
        detector=str(kw.get("detector", "beacon")),
        src="10.0.0.1",
        dst=dst,
        dst_port=8888,
        score=0.9,
        first_seen=datetime.fromtimestamp(first_ns / 1e9, UTC),
        last_seen=datetime.fromtimestamp(last_ns / 1e9, UTC),
        summary="s",
        evidence={"uids": uids},
    )


def test_a_finding_selects_every_packet_of_its_flows(tmp_path: Path) -> None:
    capture = write_pcap(tmp_path / "a.pcap")
    store = indexed_store(tmp_path / "store", capture)
    # the pair's flows with a packet in the span: only the 8888 flow, all three packets
    # although its last two are after last_seen
    finding = _finding("192.0.2.9", [], MIDNIGHT_NS, MIDNIGHT_NS + 2_000)
    assert select(store, PacketQuery(flows=FlowScope.of(finding))).total == 3
    # a name as dst: the uids alone
    uid = index(capture).column("uid")[3].as_py()  # the DNS flow
    named = _finding("c2.example", [uid], MIDNIGHT_NS, MIDNIGHT_NS)
    selected = select(store, PacketQuery(flows=FlowScope.of(named)))
    assert selected.total == 3
    assert set(selected.captures[0][1].column("ts_us").to_pylist()) <= {
        ts // 1000 for ts, _ in packets() if ts < MIDNIGHT_NS
    }
    with pytest.raises(InputError, match="no uids and no IP destination"):
        FlowScope.of(_finding("c2.example", [], MIDNIGHT_NS, MIDNIGHT_NS))


def test_findings_are_picked_by_number_or_key() -> None:
    found = [
        _finding("192.0.2.9", [], MIDNIGHT_NS, MIDNIGHT_NS),
        _finding("c2.example", [], MIDNIGHT_NS, MIDNIGHT_NS, detector="dga"),
        _finding("192.0.2.9", [], MIDNIGHT_NS, MIDNIGHT_NS, detector="rare-destination"),
    ]
    assert pick_finding(found, "2") is found[1]
    assert pick_finding(found, "dga/10.0.0.1") is found[1]
    assert pick_finding(found, "beacon/10.0.0.1/192.0.2.9/8888") is found[0]
    with pytest.raises(InputError, match="no finding #4: the last hunt has 3"):
        pick_finding(found, "4")
    with pytest.raises(InputError, match="no finding of the last hunt matches"):
        pick_finding(found, "beacon/10.0.0.9")
    twice = [*found, _finding("192.0.2.10", [], MIDNIGHT_NS, MIDNIGHT_NS)]
    with pytest.raises(InputError, match=r"2 findings match .*#1 beacon.*#4 beacon"):
        pick_finding(twice, "beacon/10.0.0.1")


def test_queries_refuse_names_bad_ports_and_inverted_times() -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        PacketQuery(hosts=("c2.example",))
    with pytest.raises(ValueError, match="port 70000"):
        PacketQuery(ports=(70000,))
    with pytest.raises(ValueError, match="the start is after the end"):
        PacketQuery(start_us=2, end_us=1)
    assert PacketQuery().is_empty


def test_gzip_captures_are_read_forward(tmp_path: Path) -> None:
    capture = write_pcap(tmp_path / "a.pcap")
    packed = tmp_path / "a.pcap.gz"
    packed.write_bytes(gzip.compress(capture.read_bytes()))
    batch = index(capture)
    store = Store(tmp_path / "store")
    with store.importing() as job:
        column = batch.schema.get_field_index("source_file")
        named = batch.set_column(column, "source_file", pa.array([str(packed)] * batch.num_rows))
        job.add(packed, lambda: "gz", "pcap", [("packets", named)], quick=quick_fingerprint(packed))
    out = tmp_path / "out.pcap"
    result = search(store, PacketQuery(hosts=("10.0.0.1", "10.0.0.3")), out)
    assert result is not None
    assert written(out) == of_hosts(capture, "10.0.0.1", "10.0.0.3")


SANDCAT = "pcap/corelight-caldera/sandcat.pcap"


def test_sandcat_c2_packets_are_those_a_full_scan_selects(samples: Path, tmp_path: Path) -> None:
    capture = samples / SANDCAT
    store = Store(tmp_path / "store")
    import_paths([capture], store)
    out = tmp_path / "c2.pcap"
    # PROVENANCE.txt: the Sandcat agent 172.18.0.3 calls its C2 at 172.18.0.2:8888
    result = search(store, PacketQuery(hosts=("172.18.0.3",), ports=(8888,)), out)
    assert result is not None
    want = [p for p in scan_ip(capture) if "172.18.0.3" in (p[1], p[3]) and 8888 in (p[2], p[4])]
    assert result.packets == {capture.resolve(): len(want)}
    assert [(ts // 1000, frame) for ts, _, frame in written(out)] == [(p[0], p[5]) for p in want]
    assert out.read_bytes()[20:24] == capture.read_bytes()[20:24]  # the link type


def test_a_time_window_of_a_periodic_capture(samples: Path, tmp_path: Path) -> None:
    capture = samples / "pcap/slips-test-cc/test-cc-capture-1.pcap"
    store = Store(tmp_path / "store")
    import_paths([capture], store)
    packets_in = scan_ip(capture)
    start_us = packets_in[len(packets_in) // 3][0]
    end_us = start_us + 30_000_000
    out = tmp_path / "window.pcap"
    result = search(store, PacketQuery(start_us=start_us, end_us=end_us), out)
    assert result is not None
    want = [(p[0], p[5]) for p in packets_in if start_us <= p[0] <= end_us]
    assert [(ts // 1000, frame) for ts, _, frame in written(out)] == want


def test_a_store_without_packets_says_so(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no packets indexed here; run `homecall pcap index`"):
        select(Store(tmp_path / "nothing"), PacketQuery(ports=(53,)))
