from __future__ import annotations

from collections import Counter
from pathlib import Path

import dpkt
from benchmarks.synthetic_pcap import BEACONS, write_capture


def test_the_capture_is_valid_time_ordered_and_reproducible(tmp_path: Path) -> None:
    first, second = tmp_path / "a.pcap", tmp_path / "b.pcap"
    count = write_capture(first, 3_000_000, seed=4)
    write_capture(second, 3_000_000, seed=4)
    assert first.read_bytes() == second.read_bytes()
    assert 3_000_000 <= first.stat().st_size < 3_000_000 + 70_000
    services: Counter[str] = Counter()
    last = 0.0
    with first.open("rb") as stream:
        packets = list(dpkt.pcap.Reader(stream))
    assert len(packets) == count
    for ts, frame in packets:
        assert ts >= last
        last = ts
        ip = dpkt.ethernet.Ethernet(frame).data
        wire = bytes(ip)
        assert len(wire) == ip.len
        again = dpkt.ip.IP(wire)
        again.sum = 0
        if isinstance(again.data, dpkt.tcp.TCP | dpkt.udp.UDP):
            again.data.sum = 0
            transport = type(again.data).__name__
            services[f"{transport}/{min(again.data.sport, again.data.dport)}"] += 1
        else:
            services["ICMP"] += 1
        recomputed = dpkt.ip.IP(bytes(again))  # dpkt fills in both checksums on packing
        assert (recomputed.sum, getattr(recomputed.data, "sum", None)) == (
            ip.sum,
            getattr(ip.data, "sum", None),
        )
    assert {"TCP/443", "TCP/80", "UDP/53", "ICMP"} <= set(services)
    assert services[f"TCP/{BEACONS[0][2]}"] > 0


def test_https_sessions_open_with_a_client_hello_naming_the_server(tmp_path: Path) -> None:
    capture = tmp_path / "a.pcap"
    write_capture(capture, 1_000_000, seed=1)
    names = []
    with capture.open("rb") as stream:
        for _, frame in dpkt.pcap.Reader(stream):
            tcp = dpkt.ethernet.Ethernet(frame).data.data
            if isinstance(tcp, dpkt.tcp.TCP) and tcp.dport == 443 and tcp.data[:1] == b"\x16":
                hello = dpkt.ssl.TLSRecord(tcp.data)
                handshake = dpkt.ssl.TLSHandshake(hello.data)
                if isinstance(handshake.data, dpkt.ssl.TLSClientHello):
                    extensions = dict(handshake.data.extensions)
                    names.append(extensions[0][5:].decode())
    assert names
    assert all("." in name for name in names)
