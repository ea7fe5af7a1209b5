from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from homecall.cli import app
from homecall.findings import Finding
from homecall.pipeline import save_findings
from homecall.store import Store
from tests.pcap_captures import (
    MIDNIGHT_NS,
    indexed_store,
    of_hosts,
    scan_ip,
    write_pcap,
    written,
)

runner = CliRunner()


def test_search_writes_the_packets_and_names_their_capture(tmp_path: Path) -> None:
    capture = write_pcap(tmp_path / "a.pcap")
    store = indexed_store(tmp_path / "store", capture)
    out = tmp_path / "out.pcap"
    options = ["--host", "10.0.0.1", "--port", "8888", "--start", "2025-11-28T00:00:00Z"]
    result = runner.invoke(
        app, ["pcap", "search", "--store", str(store.root), *options, "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert f"Wrote 3 packets from 1 capture(s) to {out} (pcap, microsecond timestamps):" in (
        result.output.replace("\n", " ")
    )
    assert f"3  {capture.resolve()}" in result.output
    assert written(out) == [p for p in of_hosts(capture, "10.0.0.1") if p[0] >= MIDNIGHT_NS]


def test_search_needs_a_condition_and_valid_values(tmp_path: Path) -> None:
    store = indexed_store(tmp_path / "store", write_pcap(tmp_path / "a.pcap"))
    base = ["pcap", "search", "--store", str(store.root), "-o", str(tmp_path / "out.pcap")]
    nothing = runner.invoke(app, base)
    assert nothing.exit_code == 2
    assert "say which packets" in nothing.output
    bad_time = runner.invoke(app, [*base, "--start", "last tuesday"])
    assert bad_time.exit_code == 2
    assert "not a time: 'last tuesday'" in bad_time.output
    name = runner.invoke(app, [*base, "--host", "c2.example"])
    assert name.exit_code == 2
    assert "'c2.example' does not appear to be an IPv4 or IPv6 address" in name.output


def test_help_shows_how_a_finding_is_named() -> None:
    result = runner.invoke(app, ["pcap", "search", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "DETECTOR/SRC[/DST[/PORT]]" in result.output


def test_no_match_writes_nothing_and_exits_1(tmp_path: Path) -> None:
    store = indexed_store(tmp_path / "store", write_pcap(tmp_path / "a.pcap"))
    out = tmp_path / "out.pcap"
    args = ["pcap", "search", "--store", str(store.root), "--host", "10.9.9.9", "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "No packet matches; nothing written." in result.output
    assert not out.exists()


def test_a_moved_capture_is_an_input_error_with_a_hint(tmp_path: Path) -> None:
    capture = write_pcap(tmp_path / "a.pcap")
    store = indexed_store(tmp_path / "store", capture)
    moved = tmp_path / "moved"
    moved.mkdir()
    capture.rename(moved / capture.name)
    args = ["pcap", "search", "--store", str(store.root), "--port", "53"]
    args += ["-o", str(tmp_path / "out.pcap")]
    lost = runner.invoke(app, args)
    assert lost.exit_code == 2
    assert "indexed capture not found" in lost.output
    assert "--capture-dir" in lost.output
    found = runner.invoke(app, [*args, "--capture-dir", str(moved)])
    assert found.exit_code == 0, found.output
    assert "Wrote 3 packets" in found.output


def test_a_finding_is_picked_from_the_last_hunt(tmp_path: Path) -> None:
    capture = write_pcap(tmp_path / "a.pcap")
    store = indexed_store(tmp_path / "store", capture)
    moment = datetime(2025, 11, 28, 0, 0, 0, 1, tzinfo=UTC)  # the 8888 flow's first packet
    finding = Finding(
        detector="beacon",
        src="10.0.0.1",
        dst="192.0.2.9",
        dst_port=8888,
        score=0.9,
        first_seen=moment,
        last_seen=moment,
        summary="10.0.0.1 connected to 192.0.2.9:8888 about every 60 s.",
        evidence={"uids": []},
    )
    save_findings(store, [finding])
    out = tmp_path / "out.pcap"
    for ident in ("1", "beacon/10.0.0.1/192.0.2.9"):
        args = ["pcap", "search", "--store", str(store.root), "--finding", ident, "-o", str(out)]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "Wrote 3 packets" in result.output
    missing = runner.invoke(
        app, ["pcap", "search", "--store", str(store.root), "-f", "7", "-o", str(out)]
    )
    assert missing.exit_code == 2
    assert "no finding #7: the last hunt has 1" in missing.output


def test_index_refuses_a_file_that_is_not_a_capture(tmp_path: Path) -> None:
    log = tmp_path / "conn.log"
    log.write_text("#separator \\x09\n")
    result = runner.invoke(app, ["pcap", "index", str(log), "--store", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert f"{log}: not a pcap or pcapng capture" in result.output
    assert not (tmp_path / "s").exists()


def test_index_then_search_the_packets_of_a_finding(samples: Path, tmp_path: Path) -> None:
    caldera = samples / "pcap/corelight-caldera"
    store = tmp_path / "store"
    first = runner.invoke(app, ["pcap", "index", str(caldera), "--store", str(store)])
    assert first.exit_code == 0, first.output
    counted = {
        name: len(scan_ip(caldera / name))
        for name in ("manx-tcp.pcap", "manx-udp.pcap", "ragdoll.pcap", "sandcat.pcap")
    }
    for name, count in counted.items():
        assert f"{count:>10,} packets  {caldera / name}\n" in first.output
    assert f"Indexed 4 capture(s), {sum(counted.values()):,} packets; 0 already" in first.output
    again = runner.invoke(app, ["pcap", "index", str(caldera / "sandcat.pcap"), "-s", str(store)])
    assert again.exit_code == 0, again.output
    assert f"{counted['sandcat.pcap']:>10,} packets  {caldera / 'sandcat.pcap'} (already" in (
        again.output
    )
    assert "Indexed 0 capture(s), 0 packets; 1 already indexed." in again.output
    # the beacon PROVENANCE.txt describes, as a finding over the whole capture
    sandcat = scan_ip(caldera / "sandcat.pcap")
    span = [datetime.fromtimestamp(p[0] // 1_000_000, UTC) for p in (sandcat[0], sandcat[-1])]
    finding = Finding(
        detector="beacon",
        src="172.18.0.3",
        dst="172.18.0.2",
        dst_port=8888,
        score=0.9,
        first_seen=span[0],
        last_seen=span[1] + timedelta(seconds=1),
        summary="172.18.0.3 connected to 172.18.0.2:8888 about every 45 s.",
        evidence={"uids": []},
    )
    save_findings(Store(store), [finding])
    out = tmp_path / "beacon.pcap"
    args = ["pcap", "search", "-s", str(store), "-f", "beacon/172.18.0.3/172.18.0.2", "-o"]
    result = runner.invoke(app, [*args, str(out)])
    assert result.exit_code == 0, result.output
    pair = {"172.18.0.3", "172.18.0.2"}
    want = [p[5] for p in sandcat if {p[1], p[3]} == pair]
    assert [frame for _, _, frame in written(out)] == want
    assert f"Wrote {len(want)} packets from 1 capture(s)" in result.output
